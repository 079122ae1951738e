import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from dreamactor_core.model import weights
from dreamactor_core.model.config import tiny
from dreamactor_core.model.dit import DreamActorDiT
from dreamactor_core.model.pose_encoder import PoseEncoder
from dreamactor_core.model.vae import CausalVAE
from dreamactor_core.model.weights import (FORMAT, load_bundle, load_component, load_into,
                                           read_config, save_bundle, save_component)

torch.set_num_threads(1)


def _modules(seed=0):
    torch.manual_seed(seed)
    config = tiny()
    mods = {"vae": CausalVAE(config.vae), "pose_encoder": PoseEncoder.from_config(config),
            "dit": DreamActorDiT(config.dit)}
    with torch.no_grad():  # make zero-initialised and buffer tensors non-trivial
        for m in mods.values():
            for t in list(m.parameters()) + list(m.buffers()):
                t.add_(torch.rand(t.shape) * 0.1)
    return config, mods


def _states_equal(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def _rewrite(src, dst, edit):
    with safe_open(str(src), "pt") as f:
        meta = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    edit(tensors)
    save_file(tensors, str(dst), metadata=meta)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    config, mods = _modules()
    extra = nn.Linear(4, 3)
    path = tmp_path_factory.mktemp("bundle") / "model.safetensors"
    save_bundle(path, {**mods, "face_motion": extra}, config)
    return path, config, mods, extra


def test_round_trip_is_bit_exact(bundle):
    path, config, mods, extra = bundle
    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
        assert all(k.split(".")[0] in {"vae", "pose_encoder", "dit", "face_motion"} for k in f.keys())
    assert meta["format"] == FORMAT
    assert json.loads(meta["dreamactor_config"]) == config.to_dict()
    assert read_config(path) == config

    fresh_extra = nn.Linear(4, 3)
    loaded_config, loaded = load_bundle(path, extra_modules={"face_motion": fresh_extra})
    assert loaded_config == config
    for name, module in mods.items():
        assert _states_equal(loaded[name], module), name
    assert loaded["face_motion"] is fresh_extra and _states_equal(fresh_extra, extra)
    assert not list(path.parent.glob("*.tmp"))  # the atomic write left nothing behind


def test_half_precision_storage_loads_back_to_float32(tmp_path, bundle):
    _, config, mods, _ = bundle
    full = (tmp_path / "full.safetensors")
    save_bundle(full, {"dit": mods["dit"]}, config)
    for dtype, tol in (("fp16", 2e-3), (torch.bfloat16, 1e-2)):
        path = tmp_path / f"{dtype}.safetensors"
        save_bundle(path, {"dit": mods["dit"]}, config, dtype=dtype)
        assert path.stat().st_size < 0.6 * full.stat().st_size
        dit = DreamActorDiT(config.dit)
        load_into(path, {"dit": dit})
        for key, value in dit.state_dict().items():
            assert value.dtype == torch.float32
            assert torch.allclose(value, mods["dit"].state_dict()[key], rtol=tol, atol=tol), key
    with pytest.raises(ValueError, match="storage dtype"):
        save_bundle(tmp_path / "x.safetensors", {"dit": mods["dit"]}, dtype="int8")


def test_single_component_files(tmp_path, bundle):
    path, config, mods, _ = bundle
    single = save_component(tmp_path / "vae.safetensors", "vae", mods["vae"], config)
    vae = load_component(single, "vae", CausalVAE(config.vae))
    assert _states_equal(vae, mods["vae"])
    dit = load_component(path, "dit", DreamActorDiT(config.dit))  # one component of a bundle
    assert _states_equal(dit, mods["dit"])
    bare = tmp_path / "bare.safetensors"  # a plain state dict without the bundle format
    save_file({k: v.contiguous() for k, v in mods["pose_encoder"].state_dict().items()}, str(bare))
    pose = load_component(bare, "pose_encoder", PoseEncoder.from_config(config))
    assert _states_equal(pose, mods["pose_encoder"])


def test_missing_unexpected_and_misshaped_tensors_are_named(tmp_path, bundle):
    path, config, _, _ = bundle
    extra = {"face_motion": nn.Linear(4, 3)}
    name = "dit.blocks.1.attn.qkv.weight"

    missing = tmp_path / "missing.safetensors"
    _rewrite(path, missing, lambda t: t.pop(name))
    with pytest.raises(ValueError, match=rf"missing\.safetensors.*'{name}'.*\[576, 192\].*missing"):
        load_bundle(missing, extra_modules=extra)

    shaped = tmp_path / "shaped.safetensors"
    _rewrite(path, shaped, lambda t: t.__setitem__(name, torch.zeros(576, 96)))
    with pytest.raises(ValueError, match=rf"shaped\.safetensors.*'{name}' has shape \[576, 96\], "
                                         r"expected \[576, 192\]"):
        load_bundle(shaped, extra_modules=extra)

    unexpected = tmp_path / "unexpected.safetensors"
    _rewrite(path, unexpected, lambda t: t.__setitem__("dit.blocks.9.extra", torch.zeros(2)))
    with pytest.raises(ValueError, match=r"unexpected tensor 'dit\.blocks\.9\.extra'"):
        load_bundle(unexpected, extra_modules=extra)
    with pytest.raises(ValueError, match=r"unexpected tensor 'face_motion\..*face_motion"):
        load_bundle(path)  # the face_motion component was not given a module


def test_corrupt_missing_and_foreign_files(tmp_path, bundle):
    path, config, _, _ = bundle
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"definitely not a model" * 10)
    with pytest.raises(ValueError, match="garbage.safetensors is not a valid safetensors file"):
        load_bundle(garbage)
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(path.read_bytes()[:-1000])
    with pytest.raises(ValueError, match="is not a valid safetensors file"):
        load_component(truncated, "vae", CausalVAE(config.vae))
    with pytest.raises(ValueError, match="does not exist"):
        read_config(tmp_path / "nope.safetensors")
    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, str(foreign))
    with pytest.raises(ValueError, match="no 'dreamactor_config' metadata"):
        read_config(foreign)
    bad_config = tmp_path / "bad_config.safetensors"
    data = config.to_dict()
    data["dit"]["future_knob"] = 1
    save_file({"w": torch.zeros(2)}, str(bad_config), metadata={"dreamactor_config": json.dumps(data)})
    with pytest.raises(ValueError, match="future_knob"):
        read_config(bad_config)


def test_failed_write_keeps_the_old_file(tmp_path, monkeypatch, bundle):
    _, config, mods, _ = bundle
    path = tmp_path / "model.safetensors"
    save_bundle(path, {"pose_encoder": mods["pose_encoder"]}, config)
    before = path.read_bytes()

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(weights, "save_file", boom)
    with pytest.raises(OSError, match="disk full"):
        save_bundle(path, {"dit": mods["dit"]}, config)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["model.safetensors"]
