import pytest
import torch

from dreamactor_core.model import flow


def test_training_target_recovers_data_and_noise():
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(4, 3, 5, generator=g)
    noise = torch.randn(4, 3, 5, generator=g)
    t = torch.tensor([0.0, 0.25, 0.7, 1.0])
    x_t, v = flow.training_target(x0, noise, t)
    torch.testing.assert_close(v, noise - x0)
    torch.testing.assert_close(x_t[0], x0[0])  # t = 0 is data
    torch.testing.assert_close(x_t[3], noise[3])  # t = 1 is noise
    torch.testing.assert_close(flow.predict_x0(x_t, v, t), x0)
    torch.testing.assert_close(x_t + (1 - t).view(-1, 1, 1) * v, noise)


def test_training_target_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="same shape"):
        flow.training_target(torch.zeros(2, 3), torch.zeros(2, 4), 0.5)
    with pytest.raises(ValueError, match="one per sample"):
        flow.training_target(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(3))


@pytest.mark.parametrize("shift", [1.0, 3.0, 0.5])
def test_schedule_monotone_with_exact_endpoints(shift):
    s = flow.make_schedule(10, shift)
    assert s.shape == (11,)
    assert s[0].item() == 1.0 and s[-1].item() == 0.0
    assert torch.all(s[1:] < s[:-1])


def test_shift_moves_schedule_toward_noise():
    plain, shifted = flow.make_schedule(8, 1.0), flow.make_schedule(8, 5.0)
    assert torch.all(shifted[1:-1] > plain[1:-1])
    assert flow.shift_timesteps(torch.tensor(0.5), 3.0).item() == pytest.approx(0.75)
    with pytest.raises(ValueError, match="shift"):
        flow.make_schedule(4, 0.0)
    with pytest.raises(ValueError, match="steps"):
        flow.make_schedule(0)


def test_sample_timesteps_deterministic_and_in_range():
    a = flow.sample_timesteps(1000, torch.Generator().manual_seed(1))
    b = flow.sample_timesteps(1000, torch.Generator().manual_seed(1))
    torch.testing.assert_close(a, b)
    assert a.min() > 0 and a.max() < 1
    assert abs(a.mean().item() - 0.5) < 0.03  # logit-normal(0, 1) is symmetric around 0.5
    shifted = flow.sample_timesteps(1000, torch.Generator().manual_seed(1), shift=3.0)
    assert shifted.mean() > a.mean() + 0.1
    uniform = flow.sample_timesteps(1000, torch.Generator().manual_seed(1), logit_normal=False)
    assert (uniform < 0.1).float().mean() > 0.07  # uniform has more mass near the ends
    assert (a < 0.1).float().mean() < 0.05


def test_euler_integrates_linear_velocity_field_exactly():
    # A true flow-matching path: constant velocity noise - x0 takes noise to x0 exactly.
    g = torch.Generator().manual_seed(2)
    x0, noise = torch.randn(2, 6, generator=g), torch.randn(2, 6, generator=g)
    out = flow.sample(lambda x, t: noise - x0, noise, flow.make_schedule(7, 3.0), "euler")
    torch.testing.assert_close(out, x0)


def test_heun_more_accurate_than_euler_on_curved_field():
    # dx/dt = x  =>  x(0) = x(1) * exp(-1)
    x1 = torch.tensor([[1.0, -2.0, 0.5]])
    exact = x1 * torch.exp(torch.tensor(-1.0))
    schedule = flow.make_schedule(10)
    euler = flow.sample(lambda x, t: x, x1, schedule, "euler")
    heun = flow.sample(lambda x, t: x, x1, schedule, "heun")
    err_euler = (euler - exact).abs().max().item()
    err_heun = (heun - exact).abs().max().item()
    assert err_heun < err_euler / 10
    assert err_heun < 3e-3


def test_sample_rejects_unknown_solver():
    with pytest.raises(ValueError, match="solver"):
        flow.sample(lambda x, t: x, torch.zeros(1, 2), flow.make_schedule(2), "rk4")


def test_same_seed_gives_identical_samples():
    def run(seed):
        noise = flow.sample_noise((2, 4, 3), torch.Generator().manual_seed(seed))
        velocity = lambda x, t: torch.sin(x) * t.view(-1, 1, 1)  # noqa: E731
        return flow.sample(velocity, noise, flow.make_schedule(5), "heun")
    torch.testing.assert_close(run(7), run(7), rtol=0, atol=0)
    assert not torch.equal(run(7), run(8))


def test_callback_sees_every_step_and_can_cancel():
    seen = []
    calls = []

    def velocity(x, t):
        calls.append(t[0].item())
        return x

    class Cancelled(Exception):
        pass

    def callback(step, total, x):
        seen.append((step, total))
        if step == 2:
            raise Cancelled

    with pytest.raises(Cancelled):
        flow.sample(velocity, torch.ones(1, 2), flow.make_schedule(6), "euler", callback)
    assert seen == [(1, 6), (2, 6)]
    assert len(calls) == 2  # no model call after the cancelling step


class CountingModel:
    """Velocity depends on x, t, the conditions and which of them are dropped."""

    def __init__(self):
        self.calls = 0
        self.batches = []

    def __call__(self, x, t, drop_ref, drop_motion, ref=None, motion=None):
        self.calls += 1
        self.batches.append(x.shape[0])
        r = torch.where(drop_ref.view(-1, 1), torch.zeros_like(ref), ref)
        m = torch.where(drop_motion.view(-1, 1), torch.zeros_like(motion), motion)
        return x * t.view(-1, 1) + 2 * r + torch.sin(3 * m) + r * m


def _inputs():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 4, generator=g)
    cond = {"ref": torch.randn(2, 4, generator=g), "motion": torch.randn(2, 4, generator=g)}
    return x, torch.tensor([0.3, 0.8]), cond


def _single(model, x, t, cond, drop_ref, drop_motion):
    b = x.shape[0]
    return model(x, t, torch.full((b,), drop_ref), torch.full((b,), drop_motion), **cond)


def test_cfg_scales_one_is_one_conditional_pass():
    x, t, cond = _inputs()
    model = CountingModel()
    v = flow.guided_velocity(model, x, t, cond, ref_scale=1.0, motion_scale=1.0)
    assert model.calls == 1 and model.batches == [2]
    torch.testing.assert_close(v, _single(CountingModel(), x, t, cond, False, False))


def test_cfg_batched_equals_separate_calls():
    x, t, cond = _inputs()
    ref_scale, motion_scale = 2.5, 1.7
    model = CountingModel()
    v = flow.guided_velocity(model, x, t, cond, ref_scale, motion_scale)
    assert model.calls == 1 and model.batches == [6]
    full = _single(model, x, t, cond, False, False)
    ref = _single(model, x, t, cond, False, True)
    uncond = _single(model, x, t, cond, True, True)
    expected = uncond + ref_scale * (ref - uncond) + motion_scale * (full - ref)
    torch.testing.assert_close(v, expected)


def test_cfg_ref_scale_one_skips_unconditional_pass():
    x, t, cond = _inputs()
    model = CountingModel()
    v = flow.guided_velocity(model, x, t, cond, ref_scale=1.0, motion_scale=3.0)
    assert model.batches == [4]
    full = _single(model, x, t, cond, False, False)
    ref = _single(model, x, t, cond, False, True)
    torch.testing.assert_close(v, ref + 3.0 * (full - ref))


def test_guided_velocity_fn_samples_deterministically():
    x, _, cond = _inputs()
    fn = flow.guided_velocity_fn(CountingModel(), cond, 2.5, 2.5)
    a = flow.sample(fn, x, flow.make_schedule(3), "euler")
    b = flow.sample(fn, x, flow.make_schedule(3), "euler")
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert a.shape == x.shape
