"""--init with component selection (PATH:comp,...) and --init-partial (warm start across a
changed latent size)."""

import pytest
import torch

from dreamactor_core.model import weights
from dreamactor_core.train import export as export_cli
from dreamactor_core.train.__main__ import main as train_main
from dreamactor_core.train.trainer import build_modules, load_inits, parse_init


def _wider_latent(tiny_config, channels=8):
    config = tiny_config()
    overrides = config.model_overrides
    overrides["vae"]["latent_channels"] = channels
    overrides["dit"]["latent_channels"] = channels
    return tiny_config(model_overrides=overrides)


def test_parse_init_specs(tmp_path):
    assert parse_init(tmp_path) == (tmp_path, None)
    assert parse_init(f"{tmp_path}:dit,pose_encoder") == (tmp_path, ["dit", "pose_encoder"])
    with pytest.raises(ValueError, match="not a list of components.*pose_encoder"):
        parse_init(f"{tmp_path}:ditt")


def test_partial_init_keeps_fresh_tensors_only_where_shapes_differ(stage1_run, tiny_config):
    run_file = stage1_run / "checkpoints" / "step_00000003" / "model.safetensors"
    modules = build_modules(_wider_latent(tiny_config))
    fresh = {k: v.clone() for k, v in modules.state_dict().items()}
    with pytest.raises(ValueError, match="has shape"):  # strict by default
        load_inits(build_modules(_wider_latent(tiny_config)), [f"{run_file}:dit"])

    assert load_inits(modules, [f"{run_file}:dit,pose_encoder"], partial=True) == [
        "pose_encoder", "dit"]
    stored = build_modules(tiny_config())
    weights.load_component(run_file, "dit", stored.dit)
    weights.load_component(run_file, "pose_encoder", stored.pose_encoder)
    kept = []
    for part in ("dit", "pose_encoder"):
        theirs = getattr(stored, part).state_dict()
        for key, value in getattr(modules, part).state_dict().items():
            if theirs[key].shape == value.shape:
                assert torch.equal(value, theirs[key]), key  # loaded
            else:
                kept.append(key)
                assert torch.equal(value, fresh[f"{part}.{key}"]), key  # fresh init kept
    assert kept  # the latent in/out layers
    assert len(kept) < len(stored.dit.state_dict()) // 4  # ... and nothing else
    for key, value in modules.vae.state_dict().items():  # not selected: untouched
        assert torch.equal(value, fresh[f"vae.{key}"]), key


def test_later_inits_override_earlier_ones(stage1_run, tmp_path, tiny_config):
    vae_only = export_cli.export(stage1_run, tmp_path / "vae.safetensors", ["vae"], dtype=None)
    with pytest.raises(ValueError, match="holds no 'dit'"):
        load_inits(build_modules(tiny_config()), [f"{vae_only}:dit"])
    modules = build_modules(tiny_config())
    assert load_inits(modules, [stage1_run, f"{vae_only}:vae"]) == [
        "vae", "pose_encoder", "dit", "face_encoder", "audio_encoder", "vae"]


def test_cli_warm_starts_a_wider_latent_model(stage1_run, tmp_path, tiny_config, capsys):
    config_file = tmp_path / "wide.json"
    config_file.write_text(_wider_latent(tiny_config).to_json())
    args = ["--config", str(config_file), "--stage", "1", "--steps", "1", "--device", "cpu",
            "--init", f"{stage1_run}:dit,pose_encoder"]
    assert train_main(args + ["--out", str(tmp_path / "strict")]) == 2
    assert "has shape" in capsys.readouterr().err
    assert train_main(args + ["--out", str(tmp_path / "wide"), "--init-partial"]) == 0
    assert "keep their fresh initialisation" in capsys.readouterr().out


def test_loading_a_clean_context_dit_into_a_run_without_it_warns(tmp_path, tiny_config):
    import warnings

    from dreamactor_core.train.trainer import Trainer

    Trainer(tiny_config(p_clean_first=1.0), "1", tmp_path / "clean", 1, device="cpu").run()
    for config, expected in [(tiny_config(), 1), (tiny_config(p_clean_first=0.3), 0)]:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            load_inits(build_modules(config), tmp_path / "clean")
        dropped = [w for w in caught if "clean context" in str(w.message)]
        assert len(dropped) == expected and all("clean_context" in str(w.message) for w in dropped)
    with warnings.catch_warnings(record=True) as caught:  # only the DiT carries the flag
        warnings.simplefilter("always")
        load_inits(build_modules(tiny_config()), f"{tmp_path / 'clean'}:vae")
    assert not [w for w in caught if "clean context" in str(w.message)]
