"""The training-step benchmark (fp32 beside bf16 autocast) and the CLI's --mixed-precision."""

import json

import pytest

from dreamactor_core.bench.__main__ import main as bench_main
from dreamactor_core.train.__main__ import main as train_main


@pytest.fixture
def config_file(tmp_path, tiny_config):
    path = tmp_path / "tiny.json"
    path.write_text(tiny_config().to_json())
    return path


def test_bench_times_both_precisions_on_the_same_step(config_file, capsys):
    code = bench_main(["train", "--config", str(config_file), "--init", "", "--stages", "vae", "3",
                       "--repeats", "1", "--threads", "1"])
    out = capsys.readouterr().out.strip().splitlines()
    assert code == 0
    assert out[1].split() == ["stage", "batch", "fp32", "ms", "bf16", "ms", "speed-up", "fp32",
                              "loss", "bf16", "loss", "rel.", "diff"]
    result = json.loads(out[-1])
    assert set(result["stages"]) == {"vae", "3"}
    for stage in result["stages"].values():
        assert stage["batch"] == "2x5"
        assert stage["no"]["ms"] > 0 and stage["bf16"]["ms"] > 0
        assert stage["speedup"] == pytest.approx(stage["no"]["ms"] / stage["bf16"]["ms"])
        # same weights, same batch, same draws: bf16 moves the loss by rounding only
        assert stage["no"]["first_loss"] > 0
        assert stage["loss_rel_diff"] < 0.05
    assert isinstance(result["cpu"]["amx_tile"], bool)


@pytest.mark.parametrize("args, message", [
    (["--repeats", "0"], "--repeats must be >= 1"),
    (["--stages", "7"], "stage must be one of"),
    (["--stages", "audio", "--init", ""], "stage audio needs trained weights"),
    (["--init", "/nonexistent.safetensors"], "--init /nonexistent.safetensors does not exist"),
])
def test_bench_bad_options_are_clear_errors(config_file, capsys, args, message):
    assert bench_main(["train", "--config", str(config_file), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_cli_mixed_precision_overrides_the_config(config_file, tmp_path):
    out = tmp_path / "run"
    assert train_main(["--config", str(config_file), "--stage", "vae", "--steps", "1",
                       "--out", str(out), "--device", "cpu", "--mixed-precision", "bf16"]) == 0
    assert json.loads((out / "train_config.json").read_text())["mixed_precision"] == "bf16"


@pytest.mark.parametrize("native", [False, True])
@pytest.mark.parametrize("mode", ["bf16", "auto"])
def test_cpu_bf16_follows_native_support_and_forcing_it_warns_with_the_fix(
        tmp_path, tiny_config, monkeypatch, mode, native):
    import warnings

    from dreamactor_core.train import trainer as trainer_module

    monkeypatch.setattr(trainer_module, "cpu_has_native_bf16", lambda: native)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer = trainer_module.Trainer(tiny_config(mixed_precision=mode), "vae", tmp_path, 1,
                                         device="cpu")
    slow = [w for w in caught if "--mixed-precision no" in str(w.message)]
    if mode == "bf16":  # the choice is the user's; the warning names its cost and the fix
        assert trainer.use_bf16
        assert [w.category for w in slow] == ([] if native else [RuntimeWarning])
    else:  # auto picks bf16 only where it is native, so it never emulates it
        assert trainer.use_bf16 == native
        assert slow == []
    assert trainer_module.resolve_bf16("auto", "cuda")
    assert not trainer_module.resolve_bf16("no", "cuda")


def test_the_default_recipe_is_fitted_to_the_default_model():
    """`python -m dreamactor_core.bench train` with no options must load the embedded model: its
    recipe gets the file's widened decoder parts and DiT depth (it failed on them before)."""
    from dreamactor_core.bench.train_step import DEFAULT_CONFIG, DEFAULT_MODEL, fitted_config
    from dreamactor_core.train.config import TrainConfig
    from dreamactor_core.train.modules import build_modules
    from dreamactor_core.train.trainer import load_init

    plain = TrainConfig.load(DEFAULT_CONFIG)
    with pytest.raises(ValueError, match="decoder parts or a DiT depth"):
        load_init(build_modules(plain), DEFAULT_MODEL)
    fitted = fitted_config(plain, str(DEFAULT_MODEL), None)
    assert fitted.model_overrides["dit"]["depth"] == 10
    assert fitted.model_overrides["vae"]["decoder_reference_channels"] == 32
    assert set(load_init(build_modules(fitted), DEFAULT_MODEL)) >= {"vae", "dit"}
    # explicit --set assignments replace the file's, and a bad one is the config's clear error
    assert fitted_config(plain, str(DEFAULT_MODEL), ["lr=1e-5"]).lr == 1e-5
    assert fitted_config(plain, "", None).model_overrides == plain.model_overrides
    with pytest.raises(ValueError, match="write KEY=VALUE"):
        fitted_config(plain, "", ["lr"])
