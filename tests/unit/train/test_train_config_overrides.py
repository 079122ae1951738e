"""`--set KEY=VALUE`: one-off changes to a recipe on the command line, checked like the file."""

import json

import pytest

from dreamactor_core.train.__main__ import main as train_main
from dreamactor_core.train.config import TrainConfig


def test_overrides_change_only_the_named_values():
    base = TrainConfig(data={"kind": "synthetic", "frames": [17, 17]})
    changed = base.with_overrides(["lr=1.5e-4", "seed=35", "data.frames=[17, 33]",
                                   "mixed_precision=bf16", "lr_schedule=cosine"])
    assert (changed.lr, changed.seed, changed.data["frames"]) == (1.5e-4, 35, [17, 33])
    assert (changed.mixed_precision, changed.lr_schedule) == ("bf16", "cosine")
    before, after = base.to_dict(), changed.to_dict()
    assert {k for k in before if before[k] != after[k]} == {"lr", "seed", "data", "mixed_precision",
                                                            "lr_schedule"}
    assert base.lr != 1.5e-4 and base.data["frames"] == [17, 17]  # the original is untouched


@pytest.mark.parametrize("item, message", [
    ("lr", "write KEY=VALUE"),
    ("learning_rate=1e-4", "no field 'learning_rate'"),
    ("seed.x=1", "'seed' is not a section"),
    ("lr=-1", "lr must be a positive number"),
    ("p_clean_first=2", "p_clean_first must be a probability"),
    ("data.driver_swap=1.5", "driver_swap is a probability"),
])
def test_bad_overrides_are_named(item, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig().with_overrides([item])


def test_the_cli_applies_and_records_overrides(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["--stage", "vae", "--steps", "1", "--out", str(out), "--device", "cpu",
            "--set", "model=tiny", "--set", "batch_size=1", "--set", "seed=123",
            "--set", "data.frames=[5, 5]", "--set", "lr=2e-4"]
    assert train_main(args) == 0
    recorded = json.loads((out / "train_config.json").read_text())
    assert (recorded["seed"], recorded["lr"], recorded["data"]["frames"]) == (123, 2e-4, [5, 5])
    assert train_main(args[:8] + ["--set", "nonsense=1"]) == 2
    assert "no field 'nonsense'" in capsys.readouterr().err


def test_driver_swap_reaches_the_synthetic_dataset():
    from dreamactor_core.train.trainer import make_dataset

    config = TrainConfig(data={"kind": "synthetic", "num_clips": 4}).with_overrides(
        ["data.driver_swap=0.25"])
    assert make_dataset(config, "3").driver_swap == 0.25
    assert make_dataset(TrainConfig(), "3").driver_swap == 0.0  # off unless asked
