"""Learning-rate schedule and EMA decay of the trainer."""

import pytest

from dreamactor_core.train.trainer import Trainer


def make(tmp_path, tiny_config, steps, **overrides):
    return Trainer(tiny_config(**overrides), "vae", tmp_path, steps, device="cpu")


def test_constant_schedule_warms_up_then_holds(tmp_path, tiny_config):
    trainer = make(tmp_path, tiny_config, 100, lr=1e-3, warmup_steps=10)
    assert trainer.lr_at(0) == pytest.approx(1e-4)
    assert trainer.lr_at(4) == pytest.approx(5e-4)
    assert trainer.lr_at(9) == pytest.approx(1e-3)
    assert trainer.lr_at(99) == pytest.approx(1e-3)


def test_cosine_schedule_anneals_to_the_floor_at_the_last_step(tmp_path, tiny_config):
    trainer = make(tmp_path, tiny_config, 110, lr=1e-3, warmup_steps=10, lr_schedule="cosine",
                   min_lr_ratio=0.1)
    assert trainer.lr_at(0) == pytest.approx(1e-4)  # the warmup is unchanged
    assert trainer.lr_at(10) == pytest.approx(1e-3)
    assert trainer.lr_at(60) == pytest.approx(1e-3 * (0.1 + 0.9 * 0.5))  # half way
    assert trainer.lr_at(110) == pytest.approx(1e-4)
    assert trainer.lr_at(500) == pytest.approx(1e-4)  # past the end: stays at the floor
    lrs = [trainer.lr_at(s) for s in range(10, 111)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))


def test_schedule_options_are_checked(tiny_config):
    with pytest.raises(ValueError, match="lr_schedule must be one of"):
        tiny_config(lr_schedule="linear")
    with pytest.raises(ValueError, match="min_lr_ratio"):
        tiny_config(min_lr_ratio=1.5)


def test_ema_decay_is_lower_over_the_first_steps(tmp_path, tiny_config):
    trainer = make(tmp_path, tiny_config, 10, ema_decay=0.999)
    assert trainer.ema_decay_at(0) == pytest.approx(0.1)
    assert trainer.ema_decay_at(90) == pytest.approx(91 / 100)
    assert trainer.ema_decay_at(10**6) == pytest.approx(0.999)
    decays = [trainer.ema_decay_at(s) for s in range(0, 20000, 100)]
    assert all(a <= b for a, b in zip(decays, decays[1:]))
