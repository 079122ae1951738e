import pytest
import torch
from safetensors import safe_open

from dreamactor_core.model import weights
from dreamactor_core.model.bundle import DreamActorModel
from dreamactor_core.train import export as export_cli
from dreamactor_core.train.trainer import build_modules, load_init


def test_export_a_component_and_the_whole_model(stage1_run, tmp_path, tiny_config):
    vae_file = export_cli.export(stage1_run, tmp_path / "vae.safetensors", ["vae"], dtype="fp16")
    with safe_open(str(vae_file), "pt") as f:
        keys = list(f.keys())
        assert keys and all(k.startswith("vae.") for k in keys)
        assert all(f.get_tensor(k).dtype in (torch.float16, torch.int64, torch.bool) for k in keys)
    # A later run starts from it: the VAE equals the run's VAE to fp16 precision.
    modules = build_modules(tiny_config())
    assert load_init(modules, vae_file) == ["vae"]
    reference = build_modules(tiny_config())
    weights.load_component(stage1_run / "checkpoints" / "step_00000003" / "model.safetensors", "vae", reference.vae)
    for (name, a), (_, b) in zip(modules.vae.state_dict().items(), reference.vae.state_dict().items()):
        assert torch.allclose(a, b, atol=1e-3, rtol=1e-3), name

    whole = export_cli.export(stage1_run, tmp_path / "model.safetensors", which="ema", dtype=None)
    model = DreamActorModel.load(whole)
    assert model.config.frame_height == 32


def test_export_errors(tmp_path):
    with pytest.raises(ValueError, match="no complete checkpoint"):
        export_cli.export(tmp_path, tmp_path / "x.safetensors")
    assert export_cli.main(["--run", str(tmp_path), "--out", str(tmp_path / "x.safetensors")]) == 2
