"""A step whose loss is NaN or inf changes no weight; a run that keeps producing them stops."""

import csv

import pytest
import torch

from dreamactor_core.train import trainer as trainer_module
from dreamactor_core.train.trainer import Trainer, make_dataset


class PoisonedClips(torch.utils.data.Dataset):
    """The synthetic clips, with NaN video for the indices in ``poisoned``."""

    def __init__(self, base, poisoned):
        self.base, self.poisoned = base, set(poisoned)

    def __len__(self):
        return len(self.base)

    def __getitem__(self, index):
        item = self.base[index]
        if index in self.poisoned:
            item = {**item, "video": torch.full_like(item["video"], float("nan"))}
        return item


def _trainer(config, tmp_path, steps, poisoned):
    dataset = PoisonedClips(make_dataset(config, "vae"), poisoned)
    return Trainer(config, "vae", tmp_path, steps, dataset=dataset, device="cpu")


def _rows(path):
    with open(path / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_nonfinite_steps_change_no_weight_and_are_counted(tmp_path, tiny_config):
    config = tiny_config(batch_size=1)
    t = _trainer(config, tmp_path / "all", 3, range(8))  # every clip poisoned
    before = {n: p.detach().clone() for n, p in t._trained()}
    rows = t.run()
    assert [r["nonfinite_steps"] for r in rows] == [1, 2, 3]
    assert all(r["loss"] == "nan" and r["grad_norm"] == "nan" for r in rows)
    for n, p in t._trained():  # neither the weights nor their EMA learnt NaN
        assert torch.equal(p.detach(), before[n]) and torch.equal(t.ema[n], before[n])
    assert [r["nonfinite_steps"] for r in _rows(tmp_path / "all")] == ["1", "2", "3"]

    half = _trainer(config, tmp_path / "half", 8, range(0, 8, 2))  # even clips poisoned
    rows = half.run()
    bad = [r["loss"] == "nan" for r in rows]
    assert any(bad) and not all(bad)  # the sampler drew both kinds
    assert rows[-1]["nonfinite_steps"] == sum(bad)
    moved = [not torch.equal(p.detach(), before[n]) for n, p in half._trained()]
    assert any(moved)  # the finite steps learnt
    assert all(torch.isfinite(p).all() for _, p in half._trained())
    resumed = Trainer(config, "vae", tmp_path / "half", 8, resume=True, device="cpu")
    assert resumed.nonfinite_steps == sum(bad)  # kept in the checkpoint


def test_a_run_that_keeps_diverging_stops_with_a_clear_error(tmp_path, tiny_config, monkeypatch):
    monkeypatch.setattr(trainer_module, "NONFINITE_LIMIT", 3)
    config = tiny_config(batch_size=1, checkpoint_every=1)
    t = _trainer(config, tmp_path, 6, range(8))
    with pytest.raises(FloatingPointError, match=r"not finite .* for 3 steps in a row, up to step 3"
                                                 r".*lower lr, or with --mixed-precision no"):
        t.run()
    assert t.step == 2  # the third non-finite step raised before counting itself as taken
    rows = _rows(tmp_path)
    assert [r["step"] for r in rows] == ["1", "2"]
    # the checkpoints written before the stop hold finite weights
    resumed = Trainer(config, "vae", tmp_path, 6, resume=True, device="cpu")
    assert resumed.step == 2
    assert all(torch.isfinite(p).all() for p in resumed.modules.parameters())
