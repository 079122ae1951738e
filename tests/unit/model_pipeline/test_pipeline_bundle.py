import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from dreamactor_core.model import weights
from dreamactor_core.model.audio_motion import AudioMotionConfig
from dreamactor_core.model.bundle import MOTION_CONFIG_KEY, DreamActorModel
from dreamactor_core.model.face_motion import FaceMotionConfig
from dreamactor_core.model.pipeline import generate

torch.set_num_threads(1)


def _rewrite(src, dst, edit_tensors=None, edit_meta=None):
    with safe_open(str(src), "pt") as f:
        meta = dict(f.metadata())
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    if edit_tensors:
        edit_tensors(tensors)
    if edit_meta:
        edit_meta(meta)
    save_file(tensors, str(dst), metadata=meta)
    return dst


@pytest.fixture(scope="module")
def saved(tmp_path_factory, make_model):
    model = make_model(seed=2)
    path = model.save(tmp_path_factory.mktemp("bundle") / "model.safetensors")
    return model, path


def test_round_trip_is_exact_and_carries_all_configs(saved):
    model, path = saved
    loaded = DreamActorModel.load(path)
    assert loaded.config == model.config
    assert loaded.face_config == model.face_config and loaded.audio_config == model.audio_config
    a, b = model.state_dict(), loaded.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not loaded.training
    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
        prefixes = {k.split(".")[0] for k in f.keys()}
    assert prefixes == {"vae", "pose_encoder", "dit", "face_encoder", "audio_encoder"}
    assert json.loads(meta[MOTION_CONFIG_KEY])["face"]["channels"] == [8, 16]
    assert weights.read_config(path) == model.config  # still a weights.py bundle
    ref, maps = torch.rand(32, 32, 3), torch.rand(9, 32, 32, 6)
    torch.testing.assert_close(generate(loaded, ref, maps, steps=1).frames,
                               generate(model, ref, maps, steps=1).frames, atol=0, rtol=0)


def test_half_precision_file_loads_into_float32(saved, tmp_path):
    model, _ = saved
    path = model.save(tmp_path / "half.safetensors", dtype="fp16")
    with safe_open(str(path), "pt") as f:
        assert f.get_tensor("dit.patch_embed.weight").dtype == torch.float16
    loaded = DreamActorModel.load(path)
    assert loaded.dtype == torch.float32
    torch.testing.assert_close(loaded.dit.patch_embed.weight, model.dit.patch_embed.weight,
                               atol=1e-3, rtol=1e-2)


def test_save_is_atomic_and_leaves_no_temp_files(saved, tmp_path):
    model, _ = saved
    model.save(tmp_path / "m.safetensors")
    model.save(tmp_path / "m.safetensors")  # overwrite in place
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]


def test_wrong_shape_tensor_is_refused_by_name(saved, tmp_path):
    _, path = saved

    def shrink(tensors):
        tensors["dit.blocks.1.mlp.fc1.weight"] = tensors["dit.blocks.1.mlp.fc1.weight"][:-1]

    bad = _rewrite(path, tmp_path / "bad.safetensors", shrink)
    with pytest.raises(ValueError, match=r"'dit\.blocks\.1\.mlp\.fc1\.weight' has shape"):
        DreamActorModel.load(bad)


def test_missing_and_unexpected_tensors_are_refused_by_name(saved, tmp_path):
    _, path = saved
    bad = _rewrite(path, tmp_path / "missing.safetensors",
                   lambda t: t.pop("face_encoder.head.0.weight"))
    with pytest.raises(ValueError, match=r"'face_encoder\.head\.0\.weight'.*is missing"):
        DreamActorModel.load(bad)
    extra = _rewrite(path, tmp_path / "extra.safetensors",
                     lambda t: t.update({"audio_encoder.bonus": torch.zeros(2)}))
    with pytest.raises(ValueError, match=r"unexpected tensor 'audio_encoder\.bonus'"):
        DreamActorModel.load(extra)


def test_corrupt_file_is_refused_clearly(saved, tmp_path):
    _, path = saved
    data = path.read_bytes()
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated or corrupt"):
        DreamActorModel.load(truncated)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x00" * 64)
    with pytest.raises(ValueError, match="not a valid safetensors file"):
        DreamActorModel.load(garbage)
    with pytest.raises(ValueError, match="does not exist"):
        DreamActorModel.load(tmp_path / "nowhere.safetensors")


def test_backbone_only_or_bad_motion_metadata_is_refused(saved, tmp_path):
    model, path = saved
    backbone = weights.save_bundle(tmp_path / "backbone.safetensors",
                                   {"vae": model.vae, "pose_encoder": model.pose_encoder,
                                    "dit": model.dit}, model.config)
    with pytest.raises(ValueError, match="only the backbone"):
        DreamActorModel.load(backbone)

    def mismatch(meta):
        motion = json.loads(meta[MOTION_CONFIG_KEY])
        motion["audio"]["token_dim"] = 16
        meta[MOTION_CONFIG_KEY] = json.dumps(motion)

    bad = _rewrite(path, tmp_path / "mismatch.safetensors", edit_meta=mismatch)
    with pytest.raises(ValueError, match="audio motion encoder emits 2 tokens of width 16"):
        DreamActorModel.load(bad)

    def unknown(meta):
        motion = json.loads(meta[MOTION_CONFIG_KEY])
        motion["face"]["layers"] = 3
        meta[MOTION_CONFIG_KEY] = json.dumps(motion)

    bad = _rewrite(path, tmp_path / "unknown.safetensors", edit_meta=unknown)
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['layers'\]"):
        DreamActorModel.load(bad)


def test_motion_token_shapes_must_match_the_dit(config):
    with pytest.raises(ValueError, match="face motion encoder emits 32 tokens of width 512"):
        DreamActorModel.from_config(config, face_config=FaceMotionConfig())
    with pytest.raises(ValueError, match="audio motion encoder"):
        DreamActorModel.from_config(config, audio_config=AudioMotionConfig(token_dim=32))
    model = DreamActorModel.from_config(config)  # defaults follow the DiT's token sizes
    assert (model.face_config.tokens_per_frame, model.face_config.token_dim) == (2, 32)
    assert (model.audio_config.tokens_per_frame, model.audio_config.token_dim) == (2, 32)
