"""Rectified flow (flow matching): training targets, timestep schedules, ODE samplers and
classifier-free guidance with separate reference and motion scales.

Convention (used everywhere in this module):
    x_t = (1 - t) * x0 + t * noise,     t in [0, 1]
t = 0 is clean data, t = 1 is pure Gaussian noise. The model predicts the velocity
    v = dx_t / dt = noise - x0,
so a clean sample is recovered from any point on the path as x0 = x_t - t * v. Sampling
integrates dx/dt = v from t = 1 down to t = 0 along a decreasing schedule.

Timestep shift (SD3 / Flux / Wan): t' = shift * t / (1 + (shift - 1) * t). shift > 1 spends
more of the budget at high noise, which large latents (long, high-resolution videos) need.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import torch

VelocityFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (x [B, ...], t [B]) -> v
StepCallback = Callable[[int, int, torch.Tensor], None]  # (step, total, x); may raise to cancel

SOLVERS = ("euler", "heun")


def _per_sample(t: torch.Tensor | float, x: torch.Tensor) -> torch.Tensor:
    """Timesteps as a [B] tensor on x's device (a scalar is broadcast to the batch), kept in at
    least float32 so that bf16 latents do not round t = 0.999 up to 1."""
    t = torch.as_tensor(t, device=x.device, dtype=torch.promote_types(x.dtype, torch.float32))
    if t.ndim == 0:
        t = t.expand(x.shape[0])
    if t.shape != (x.shape[0],):
        raise ValueError(f"t must be a scalar or have shape [{x.shape[0]}] (one per sample), got "
                         f"{tuple(t.shape)}")
    return t


def _broadcast(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return t.reshape(-1, *([1] * (x.ndim - 1)))  # [B, 1, 1, ...]


def interpolate(x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
    """The point x_t = (1 - t) * x0 + t * noise on the straight path from data to noise."""
    if x0.shape != noise.shape:
        raise ValueError(f"x0 and noise must have the same shape, got {tuple(x0.shape)} and "
                         f"{tuple(noise.shape)}")
    tb = _broadcast(_per_sample(t, x0), x0)
    return ((1 - tb) * x0 + tb * noise).to(x0.dtype)


def training_target(x0: torch.Tensor, noise: torch.Tensor,
                    t: torch.Tensor | float) -> tuple[torch.Tensor, torch.Tensor]:
    """Returns (x_t, v): the model input at time t and its velocity target v = noise - x0."""
    return interpolate(x0, noise, t), noise - x0


def predict_x0(x_t: torch.Tensor, velocity: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
    """The clean sample implied by a velocity at x_t: x0 = x_t - t * v (used for previews)."""
    return (x_t - _broadcast(_per_sample(t, x_t), x_t) * velocity).to(x_t.dtype)


def shift_timesteps(t: torch.Tensor, shift: float) -> torch.Tensor:
    """t' = shift * t / (1 + (shift - 1) * t); keeps 0 and 1 fixed and stays monotone."""
    if shift <= 0:
        raise ValueError(f"shift must be > 0 (1 = no shift, 3..8 typical for video), got {shift}")
    return shift * t / (1 + (shift - 1) * t)


def sample_timesteps(batch: int, generator: torch.Generator | None = None, shift: float = 1.0,
                     logit_normal: bool = True, mean: float = 0.0, std: float = 1.0,
                     device: torch.device | str | None = None) -> torch.Tensor:
    """Training timesteps [batch] in (0, 1).

    logit_normal=True draws t = sigmoid(u), u ~ N(mean, std) (SD3), which concentrates training
    on mid-range noise levels; otherwise t ~ U(0, 1). The shift is applied afterwards so that
    training and the inference schedule see the same distortion of time.
    """
    if batch <= 0:
        raise ValueError(f"batch must be >= 1, got {batch}")
    gen_device = generator.device if generator is not None else "cpu"
    if logit_normal:
        u = torch.randn(batch, generator=generator, device=gen_device)
        t = torch.sigmoid(mean + std * u)
    else:
        t = torch.rand(batch, generator=generator, device=gen_device)
    t = shift_timesteps(t, shift)
    return t.to(device) if device is not None else t


def make_schedule(steps: int, shift: float = 1.0) -> torch.Tensor:
    """Inference timesteps [steps + 1], strictly decreasing from exactly 1 to exactly 0."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    t = torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64)
    t = shift_timesteps(t, shift)
    t[0], t[-1] = 1.0, 0.0  # exact endpoints despite rounding in the shift
    return t.to(torch.float32)


def sample_noise(shape: tuple[int, ...], generator: torch.Generator, dtype: torch.dtype = torch.float32,
                 device: torch.device | str | None = None) -> torch.Tensor:
    """Initial noise drawn from the caller's generator, so a seed reproduces a sample exactly."""
    noise = torch.randn(shape, generator=generator, device=generator.device, dtype=dtype)
    return noise.to(device) if device is not None else noise


def euler_step(velocity_fn: VelocityFn, x: torch.Tensor, t: float, t_next: float) -> torch.Tensor:
    """One explicit Euler step of dx/dt = v(x, t) from t to t_next (t_next < t when sampling)."""
    v = velocity_fn(x, _per_sample(t, x))
    return x + (t_next - t) * v


def heun_step(velocity_fn: VelocityFn, x: torch.Tensor, t: float, t_next: float) -> torch.Tensor:
    """One Heun (explicit trapezoidal, 2nd order) step: two velocity evaluations per step."""
    dt = t_next - t
    v = velocity_fn(x, _per_sample(t, x))
    x_euler = x + dt * v
    v_next = velocity_fn(x_euler, _per_sample(t_next, x))
    return x + dt * 0.5 * (v + v_next)


def sample(velocity_fn: VelocityFn, noise: torch.Tensor, schedule: torch.Tensor,
           solver: str = "euler", callback: StepCallback | None = None) -> torch.Tensor:
    """Integrates from noise at schedule[0] to schedule[-1] (normally 1 -> 0).

    callback(step, total, x) runs after every step with step = 1..total; raising inside it
    (e.g. ComfyUI's interruption) stops sampling before the next model call.
    """
    if solver not in SOLVERS:
        raise ValueError(f"solver must be one of {SOLVERS}, got {solver!r}")
    if schedule.ndim != 1 or schedule.numel() < 2:
        raise ValueError(f"schedule must be a 1-D tensor of >= 2 timesteps (see make_schedule), "
                         f"got shape {tuple(schedule.shape)}")
    step_fn = euler_step if solver == "euler" else heun_step
    times = schedule.tolist()
    total = len(times) - 1
    x = noise
    for i in range(total):
        x = step_fn(velocity_fn, x, times[i], times[i + 1])
        if callback is not None:
            callback(i + 1, total, x)
    return x


def _repeat_batch(value: Any, copies: int) -> Any:
    if isinstance(value, torch.Tensor):
        return torch.cat([value] * copies, dim=0)
    if isinstance(value, (list, tuple)):
        return type(value)(_repeat_batch(v, copies) for v in value)
    return value


def guided_velocity(model_fn: Callable[..., torch.Tensor], x: torch.Tensor, t: torch.Tensor | float,
                    cond: Mapping[str, Any] | None = None, ref_scale: float = 2.5,
                    motion_scale: float = 2.5) -> torch.Tensor:
    """Classifier-free guidance with separate reference and motion scales:

        v = v_uncond + ref_scale * (v_ref - v_uncond) + motion_scale * (v_full - v_ref)

    v_full keeps reference and motion, v_ref drops motion, v_uncond drops both. All needed
    passes go through ONE call, stacked along the batch:
        model_fn(x [k*B, ...], t [k*B], drop_ref=Bool[k*B], drop_motion=Bool[k*B], **cond)
    where every tensor in cond (also inside lists/tuples) must be batched [B, ...] and is
    repeated k times; other values are passed unchanged. Passes that the formula does not need
    are skipped: ref_scale == 1 removes v_uncond, and with both scales 1 only v_full is
    computed (k = 1). With motion_scale == 1 but ref_scale != 1 the formula still needs v_ref
    (the reference direction is measured without motion), so k = 3.
    """
    cond = dict(cond or {})
    batch = x.shape[0]
    t = _per_sample(t, x)
    need_uncond = ref_scale != 1.0
    need_ref = need_uncond or motion_scale != 1.0
    # (drop_ref, drop_motion) per pass, in stacking order
    passes = [(False, False)]
    passes += [(False, True)] if need_ref else []
    passes += [(True, True)] if need_uncond else []
    k = len(passes)
    drop_ref = torch.tensor([p[0] for p in passes], device=x.device).repeat_interleave(batch)
    drop_motion = torch.tensor([p[1] for p in passes], device=x.device).repeat_interleave(batch)
    v_all = model_fn(_repeat_batch(x, k), _repeat_batch(t, k), drop_ref=drop_ref,
                     drop_motion=drop_motion, **{n: _repeat_batch(v, k) for n, v in cond.items()})
    if v_all.shape[0] != k * batch:
        raise ValueError(f"model_fn returned batch {v_all.shape[0]}, expected {k * batch} "
                         f"({k} guidance passes x batch {batch})")
    chunks = v_all.chunk(k, dim=0)
    v_full = chunks[0]
    if k == 1:
        return v_full
    v_ref = chunks[1]
    v_uncond = chunks[2] if need_uncond else v_ref  # ref_scale == 1: the ref term vanishes
    return v_uncond + ref_scale * (v_ref - v_uncond) + motion_scale * (v_full - v_ref)


def guided_velocity_fn(model_fn: Callable[..., torch.Tensor], cond: Mapping[str, Any] | None = None,
                       ref_scale: float = 2.5, motion_scale: float = 2.5) -> VelocityFn:
    """Binds guided_velocity into the (x, t) -> v form that sample() integrates."""
    def velocity(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return guided_velocity(model_fn, x, t, cond, ref_scale, motion_scale)
    return velocity
