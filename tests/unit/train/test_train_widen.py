import pytest
import torch

from dreamactor_core.model.bundle import DreamActorModel
from dreamactor_core.train import export as export_cli
from dreamactor_core.train import widen as widen_cli
from dreamactor_core.train.trainer import build_modules, load_init


@pytest.fixture(scope="module")
def model_file(stage1_run, tmp_path_factory):
    return export_cli.export(stage1_run, tmp_path_factory.mktemp("w") / "m.safetensors",
                             which="model", dtype=None)


def _wide_config(tiny_config, width):
    config = tiny_config()
    vae = dict(config.model_overrides["vae"], decoder_base_channels=width)
    return tiny_config(model_overrides=dict(config.model_overrides, vae=vae))


@torch.no_grad()
def test_widened_file_decodes_the_same_and_keeps_the_rest(model_file, tmp_path, capsys):
    out = tmp_path / "wide.safetensors"
    assert widen_cli.main(["--model", str(model_file), "--out", str(out),
                           "--decoder-base-channels", "16"]) == 0
    assert "wrote" in capsys.readouterr().out
    narrow, wide = DreamActorModel.load(model_file), DreamActorModel.load(out)
    assert wide.config.vae.decoder_base_channels == 16
    z = torch.randn(1, 4, 2, 8, 8, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(wide.vae.decode(z), narrow.vae.decode(z), atol=1e-5, rtol=1e-5)
    for name in ("pose_encoder", "dit", "face_encoder", "audio_encoder"):
        for (key, a), b in zip(getattr(narrow, name).state_dict().items(),
                               getattr(wide, name).state_dict().values()):
            assert torch.equal(a, b), f"{name}.{key}"


def test_a_decoder_run_starts_from_the_widened_file(model_file, tmp_path, tiny_config):
    out = widen_cli.widen(model_file, tmp_path / "wide.safetensors", 16)
    modules = build_modules(_wide_config(tiny_config, 16))
    assert "vae" in load_init(modules, out)
    with pytest.raises(ValueError, match="vae.decoder"):  # the run config must say the width
        load_init(build_modules(tiny_config()), out)


def test_bad_width_is_a_clear_error(model_file, tmp_path, capsys):
    assert widen_cli.main(["--model", str(model_file), "--out", str(tmp_path / "x.safetensors"),
                           "--decoder-base-channels", "12"]) == 2
    assert "multiple of the current decoder width 8" in capsys.readouterr().err
    assert not (tmp_path / "x.safetensors").exists()
    assert widen_cli.main(["--model", str(tmp_path / "none.safetensors"), "--out",
                           str(tmp_path / "x.safetensors"), "--decoder-base-channels", "16"]) == 2
    assert "does not exist" in capsys.readouterr().err


def _frame_stack_config(tiny_config, mix=0, refine=0):
    config = tiny_config()
    vae = {"architecture": "frame_stack", "latent_channels": 4, "base_channels": 8,
           "channel_mults": [1, 2], "num_res_blocks": 1, "spatial_factor": 4,
           "temporal_factor": 4, "patch_size": 2, "decoder_temporal_mix": mix,
           "decoder_refine_channels": refine}
    return tiny_config(model_overrides=dict(config.model_overrides, vae=vae))


@torch.no_grad()
def test_a_frame_stack_decoder_gets_a_temporal_mix(model_file, tmp_path, tiny_config, capsys):
    config = _frame_stack_config(tiny_config)
    plain = DreamActorModel.from_config(config.model_config(), config.face_motion_config(),
                                        config.audio_motion_config())
    source, out = plain.save(tmp_path / "fs.safetensors"), tmp_path / "mix.safetensors"
    assert widen_cli.main(["--model", str(source), "--out", str(out),
                           "--decoder-temporal-mix", "2"]) == 0
    mixed = DreamActorModel.load(out)
    assert mixed.config.vae.decoder_temporal_mix == 2
    z = torch.randn(1, 4, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(mixed.vae.decode(z), plain.vae.decode(z), atol=1e-6, rtol=0)
    assert "vae" in load_init(build_modules(_frame_stack_config(tiny_config, 2)), out)
    with pytest.raises(ValueError, match="temporal_mix"):  # the run config must say the reach
        load_init(build_modules(config), out)
    capsys.readouterr()
    assert widen_cli.main(["--model", str(model_file), "--out", str(tmp_path / "x.safetensors"),
                           "--decoder-temporal-mix", "2"]) == 2
    assert "needs a frame_stack VAE" in capsys.readouterr().err
    assert widen_cli.main(["--model", str(source), "--out", str(tmp_path / "x.safetensors")]) == 2
    assert "nothing to widen" in capsys.readouterr().err
    assert not (tmp_path / "x.safetensors").exists()


@torch.no_grad()
def test_a_frame_stack_decoder_gets_a_refiner_and_a_mix_in_one_call(tmp_path, tiny_config, capsys):
    config = _frame_stack_config(tiny_config)
    plain = DreamActorModel.from_config(config.model_config(), config.face_motion_config(),
                                        config.audio_motion_config())
    source, out = plain.save(tmp_path / "fs.safetensors"), tmp_path / "refine.safetensors"
    assert widen_cli.main(["--model", str(source), "--out", str(out), "--decoder-temporal-mix", "2",
                           "--decoder-refine", "4"]) == 0
    grown = DreamActorModel.load(out)
    assert (grown.config.vae.decoder_temporal_mix, grown.config.vae.decoder_refine_channels) == (2, 4)
    z = torch.randn(1, 4, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(grown.vae.decode(z), plain.vae.decode(z), atol=1e-6, rtol=0)
    assert "vae" in load_init(build_modules(_frame_stack_config(tiny_config, 2, 4)), out)
    with pytest.raises(ValueError, match="refine"):  # the run config must say the width
        load_init(build_modules(_frame_stack_config(tiny_config, 2)), out)
    capsys.readouterr()
    assert widen_cli.main(["--model", str(out), "--out", str(tmp_path / "x.safetensors"),
                           "--decoder-refine", "4"]) == 2
    assert "decoder_refine_channels: this decoder has width 4" in capsys.readouterr().err
    assert not (tmp_path / "x.safetensors").exists()
