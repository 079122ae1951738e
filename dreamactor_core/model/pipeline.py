"""Generation over segments: reference image + guidance maps (+ face-motion tokens) -> video.

    references ──VAE──> ref_latent [1, C, R, h, w]                  (once, for all segments)
    for each planned segment k (segments.plan_segments):
        guidance maps ──PoseEncoder──> pose_latent [1, C_pose, T', h, w]
        noise (torch.Generator seeded by segment_seed(seed, k)) ──flow.sample + guided CFG──> latent
        latent ──VAE decode (chunked)──> frames [L, H, W, 3]
    segments.stitch_segments (colour match) ──> video [T, H, W, 3]

Continuity between segments: segment k+1 starts where segment k ends (the plan overlaps them
by one driver frame): its latent frame 0 is the VAE encoding of segment k's last decoded frame,
encoded alone as the causal VAE encodes every first frame (sequential image-to-video). Reusing
segment k's last latent instead, as the paper describes for its VAE, does not work with a
causal VAE: that latent covers tf frames and decoded in the first-frame slot it cost the next
segment 3 dB and left a jump at the join 8x the usual frame-to-frame error (VAE alone on 8
held-out clips: PSNR 23.1 vs 26.0 dB, seam_error 0.061 vs 0.012; within a segment 0.007).

A DiT trained with clean context (``DiTConfig.clean_context``: the trainer's
``p_clean_first``) gets that frame clean for the whole of segment k+1's sampling, as
``num_clean_frames=1`` (its tokens take the reference's t = 0 modulation), and its velocity
there is zero. A DiT trained with one noise level for all frames would find a clean frame
among noisy ones off-distribution, so for it frame 0 is held on the straight flow path of
that clean latent with its own fixed noise ("inpainting"): after every step at time t it is
reset to

    x[:, :, 0] = (1 - t) * context + t * noise[:, :, 0]

and its velocity is replaced by the path's exact velocity noise0 - context, so Heun's
intermediate point stays on the path too. Either way the returned latent's frame 0 is the
context exactly.

Memory is bounded by the segment length: only one segment's latents, pose features and
activations live at a time; what accumulates is the decoded frames (the output itself) and
each segment's first (context) latent frame.
"""

from __future__ import annotations

import math
import numbers
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange

from .bundle import DreamActorModel
from .flow import SOLVERS, guided_velocity_fn, make_schedule, sample, sample_noise
from .segments import Segment, plan_segments, segment_guidance, stitch_segments

# Default classifier-free guidance scale for the reference and for the motion: on the demo model
# 1.5 / 1.5 scores 0.2 dB above 2.5 / 2.5 and leaves smaller segment joins (its model card).
GUIDANCE_SCALE = 1.5
SHIFT = 3.0  # timestep shift of the sampling schedule (flow.make_schedule)

ProgressFn = Callable[[int, int], None]  # (done, total) over all segments; may raise to cancel


@dataclass
class GenerationResult:
    frames: torch.Tensor | None  # [T, H, W, 3] float32 in 0..1, on the CPU; None when not stitched
    segments: list[Segment]
    info: dict = field(default_factory=dict)  # plan, seeds, timings, settings
    # per segment, its latent frame 0 [C, 1, h, w] (CPU); from the second segment on, the
    # previous segment's last frame encoded alone
    first_latents: list[torch.Tensor] = field(default_factory=list)
    segment_videos: list[torch.Tensor] = field(default_factory=list)  # unstitched [L, H, W, 3] each


def segment_seed(seed: int, index: int) -> int:
    """Seed of segment ``index``'s noise generator: deterministic, distinct per (seed, index)."""
    state = np.random.SeedSequence([int(seed), int(index)]).generate_state(1, np.uint64)
    return int(state[0]) >> 1  # torch seeds must fit in a signed 64-bit integer


# -- input checks -----------------------------------------------------------------------------
def _check_range(x: torch.Tensor, name: str, what: str) -> None:
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a float tensor in 0..1, got {x.dtype}; divide 8-bit "
                         "images by 255")
    lo, hi = x.aminmax()
    if not (torch.isfinite(lo) and torch.isfinite(hi)) or lo < -0.01 or hi > 1.01:
        raise ValueError(f"{name} ({what}) must hold finite values in 0..1, got "
                         f"{lo.item():.3g}..{hi.item():.3g}")


def _image(x, name: str) -> torch.Tensor:
    """[H, W, 3] or [1, H, W, 3] float 0..1 -> [H, W, 3]."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be an image tensor [H, W, 3] in 0..1, got "
                         f"{type(x).__name__}")
    if x.ndim == 4 and x.shape[0] == 1:
        x = x[0]
    if x.ndim != 3 or x.shape[-1] != 3:
        raise ValueError(f"{name} must be an RGB image [H, W, 3] (or a batch of one), got "
                         f"shape {tuple(x.shape)}")
    _check_range(x, name, "an RGB image")
    return x


def _guidance(maps, multiple: int) -> torch.Tensor:
    if not isinstance(maps, torch.Tensor) or maps.ndim != 4 or maps.shape[-1] != 6:
        raise ValueError("guidance_maps must be a tensor [T, H, W, 6] (skeleton RGB then "
                         f"head-sphere RGB, 0..1), got {getattr(maps, 'shape', type(maps))}")
    t, h, w = maps.shape[:3]
    if t < 1:
        raise ValueError("guidance_maps has no frames; render the driver's guidance first")
    if h % multiple or w % multiple:
        raise ValueError(f"guidance_maps frames are {h}x{w}; height and width must be multiples "
                         f"of {multiple} (VAE factor x patch size): resize or crop to e.g. "
                         f"{max(multiple, h // multiple * multiple)}x"
                         f"{max(multiple, w // multiple * multiple)}")
    _check_range(maps, "guidance_maps", "skeleton + head-sphere maps")
    return maps


def resample_tokens_in_time(tokens: torch.Tensor, num_frames: int) -> torch.Tensor:
    """[T, N, D] -> [num_frames, N, D] by linear interpolation over time (ends kept)."""
    t, n, _ = tokens.shape
    if t == num_frames:
        return tokens
    flat = rearrange(tokens.float(), "t n d -> 1 (n d) t")
    if t == 1:
        flat = flat.expand(-1, -1, num_frames)
    else:
        flat = F.interpolate(flat, size=num_frames, mode="linear", align_corners=True)
    return rearrange(flat, "1 (n d) t -> t n d", n=n).to(tokens.dtype)


def _face_tokens(tokens, num_frames: int, token_dim: int, resample: bool
                 ) -> tuple[torch.Tensor | None, str]:
    if tokens is None:
        return None, "none"
    if not isinstance(tokens, torch.Tensor):
        raise ValueError(f"face_tokens must be a tensor [T, N, {token_dim}] or None, got "
                         f"{type(tokens).__name__}")
    if tokens.ndim == 4 and tokens.shape[0] == 1:
        tokens = tokens[0]
    if tokens.ndim != 3 or tokens.shape[-1] != token_dim or 0 in tokens.shape:
        raise ValueError(f"face_tokens must be [T, N, {token_dim}] (from the face-motion or "
                         f"audio-to-motion encoder of this model), got {tuple(tokens.shape)}")
    if not tokens.is_floating_point() or not torch.isfinite(tokens).all():
        raise ValueError("face_tokens must be finite float values")
    if tokens.shape[0] == num_frames:
        return tokens, "given"
    if not resample:
        raise ValueError(f"face_tokens cover {tokens.shape[0]} frames but guidance_maps have "
                         f"{num_frames} frames; encode the face crops / audio for the same "
                         "frames (same fps and length), or pass resample_tokens=True to "
                         "stretch the tokens in time")
    return (resample_tokens_in_time(tokens, num_frames),
            f"resampled from {tokens.shape[0]} to {num_frames} frames")


def _face_mask(mask, num_frames: int) -> torch.Tensor | None:
    if mask is None:
        return None
    mask = torch.as_tensor(mask)
    if mask.shape != (num_frames,) or mask.dtype != torch.bool:
        raise ValueError(f"face_mask must be a bool tensor [{num_frames}] (False = no usable "
                         f"face in that frame), got {mask.dtype} {tuple(mask.shape)}")
    return mask


def _check_options(steps, solver, shift, ref_scale, motion_scale, seed, on_step) -> None:
    if isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or steps < 1:
        raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
    if solver not in SOLVERS:
        raise ValueError(f"solver must be one of {SOLVERS}, got {solver!r}")
    for name, value in (("shift", shift), ("ref_scale", ref_scale), ("motion_scale", motion_scale)):
        if not isinstance(value, numbers.Real) or not math.isfinite(value):
            raise ValueError(f"{name} must be a finite number, got {value!r}")
    if shift <= 0:
        raise ValueError(f"shift must be > 0 (1 = no shift, 3..5 typical for video), got {shift}")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
    if on_step is not None and not callable(on_step):
        raise ValueError(f"on_step must be a callable (done, total) or None, got {on_step!r}")


# -- the pieces of one segment ----------------------------------------------------------------
def encode_references(model: DreamActorModel, images: Sequence[torch.Tensor]) -> torch.Tensor:
    """Images [H, W, 3] in 0..1 -> normalised VAE latents [1, C, R, h, w], one frame each."""
    video = torch.stack(list(images)).to(device=model.device, dtype=model.dtype)  # [R, H, W, 3]
    video = rearrange(video * 2 - 1, "r h w c -> r c 1 h w")
    latent = model.vae.encode(video)  # [R, C, 1, h, w]
    return rearrange(latent, "r c 1 h w -> 1 c r h w")


def sample_segment(model: DreamActorModel, pose_latent: torch.Tensor, ref_latent: torch.Tensor,
                   noise: torch.Tensor, schedule: torch.Tensor, solver: str, ref_scale: float,
                   motion_scale: float, face_tokens: torch.Tensor | None = None,
                   face_mask: torch.Tensor | None = None, context: torch.Tensor | None = None,
                   on_step: ProgressFn | None = None) -> torch.Tensor:
    """Samples one segment's latent [1, C, T', h, w] from noise of the same shape.

    context [1, C, 1, h, w]: the previous segment's last frame, encoded alone; latent frame 0
    is held to it (clean, or on its flow path for models not trained with clean context:
    module docstring) and equals it exactly in the result.
    """
    cond = {"pose_latent": pose_latent, "ref_latent": ref_latent}
    if face_tokens is not None:
        cond["face_tokens"] = face_tokens
        if face_mask is not None:
            cond["face_mask"] = face_mask
    clean_context = context is not None and model.config.dit.clean_context
    if clean_context:
        cond["num_clean_frames"] = 1
        noise = torch.cat([context.to(noise.dtype), noise[:, :, 1:]], dim=2)
    guided = guided_velocity_fn(model.dit, cond, ref_scale, motion_scale)
    times = schedule.tolist()

    if context is None:
        velocity = guided
    elif clean_context:
        def velocity(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            v = guided(x, t)
            v[:, :, :1] = 0  # the clean context frame stays where it is
            return v
    else:
        noise0 = noise[:, :, :1]
        anchor_velocity = noise0 - context  # d/dt of (1 - t) * context + t * noise0

        def velocity(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            v = guided(x, t).clone()
            v[:, :, :1] = anchor_velocity
            return v

    def step_done(step: int, total: int, x: torch.Tensor) -> None:
        if context is not None and not clean_context:  # (a zero velocity already holds it)
            t = times[step]  # x is now at schedule[step]
            x[:, :, :1] = (1 - t) * context + t * noise0
        if on_step is not None:
            on_step(step, total)

    x = sample(velocity, noise, schedule, solver, step_done)
    if context is not None:
        x[:, :, :1] = context
    return x


def _clock(device: torch.device) -> float:
    if device.type == "cuda":  # kernels run asynchronously; time what has finished
        torch.cuda.synchronize(device)
    return time.perf_counter()


def decode_frames(model: DreamActorModel, latent: torch.Tensor, chunk: int | None,
                  reference_image: torch.Tensor | None = None) -> torch.Tensor:
    """[1, C, T', h, w] -> frames [T, H, W, 3] float32 0..1 on the CPU; ``reference_image``
    [H, W, 3] (0..1), the image being animated, for a decoder that reads it."""
    reference = None
    if reference_image is not None and model.vae.uses_reference:
        reference = rearrange(reference_image, "h w c -> 1 c h w").to(latent) * 2 - 1
    video = model.vae.decode(latent, chunk=chunk, reference=reference)  # [1, 3, T, H, W] ~ -1..1
    video = ((video.float() + 1) / 2).clamp(0, 1)
    return rearrange(video[0], "c t h w -> t h w c").cpu()


# -- the pipeline -----------------------------------------------------------------------------
def generate(model: DreamActorModel, reference_image: torch.Tensor, guidance_maps: torch.Tensor,
             face_tokens: torch.Tensor | None = None,
             pseudo_references: Sequence[torch.Tensor] | None = None, *, steps: int = 25,
             solver: str = "euler", shift: float = SHIFT, ref_scale: float = GUIDANCE_SCALE,
             motion_scale: float = GUIDANCE_SCALE, seed: int = 0, segment_frames: int | None = None,
             face_mask: torch.Tensor | None = None, resample_tokens: bool = False,
             on_step: ProgressFn | None = None, colour_match: bool = True,
             decode_chunk: int | None = 2, stitch: bool = True) -> GenerationResult:
    """Animates reference_image [H, W, 3] (0..1) along guidance_maps [T, H, W, 6] (0..1).

    face_tokens [T, N, D] (face-motion or audio-to-motion encoder output) or None;
    pseudo_references: extra [H, W, 3] images of the same person, or None. face_mask [T] bool
    marks frames with a usable face. Frame sides must be multiples of the VAE factor times the
    patch size. segment_frames defaults to the model's (e.g. 73); the last segment is padded
    and trimmed. on_step(done, total) runs after every sampling step, total = steps x segments;
    raising in it cancels generation before the next model call. Returns frames [T, H, W, 3]
    float32 on the CPU plus per-segment latents and info; with ``stitch=False`` returns the
    decoded segments (``segment_videos``) instead, for stitch_segments to join.
    """
    cfg = model.config
    _check_options(steps, solver, shift, ref_scale, motion_scale, seed, on_step)
    maps = _guidance(guidance_maps, cfg.frame_multiple)
    num_frames, height, width = maps.shape[:3]
    ref = _image(reference_image, "reference_image")
    if ref.shape[:2] != (height, width):
        raise ValueError(f"reference_image is {ref.shape[0]}x{ref.shape[1]} but guidance_maps "
                         f"are {height}x{width}; resize or crop the reference to the video size")
    if isinstance(pseudo_references, torch.Tensor) and pseudo_references.ndim == 4:
        pseudo_references = list(pseudo_references)
    pseudo = [_image(p, f"pseudo_references[{i}]") for i, p in enumerate(pseudo_references or [])]
    for i, p in enumerate(pseudo):
        if p.shape[:2] != (height, width):
            raise ValueError(f"pseudo_references[{i}] is {p.shape[0]}x{p.shape[1]}; it must be "
                             f"{height}x{width} like the reference image")
    tokens, token_note = _face_tokens(face_tokens, num_frames, cfg.dit.face_token_dim,
                                      resample_tokens)
    mask = _face_mask(face_mask, num_frames)
    plan = plan_segments(num_frames, cfg.segment_frames if segment_frames is None
                         else int(segment_frames), overlap_latent=1,
                         temporal_factor=cfg.vae.temporal_factor)
    schedule = make_schedule(steps, shift)
    device, dtype = model.device, model.dtype
    latent_hw = (height // cfg.vae.spatial_factor, width // cfg.vae.spatial_factor)
    total = steps * len(plan)
    seeds = [segment_seed(seed, seg.index) for seg in plan]
    info: dict = {"plan": [asdict(s) for s in plan], "seeds": seeds, "timings": [],
                  "steps": steps, "solver": solver, "shift": shift, "ref_scale": ref_scale,
                  "motion_scale": motion_scale, "num_references": 1 + len(pseudo),
                  "face_tokens": token_note,
                  "latent_anchor": ("clean context frame" if cfg.dit.clean_context
                                    else "noised path (1-t)*context + t*noise")}

    decoded: list[torch.Tensor] = []
    first_latents: list[torch.Tensor] = []
    with torch.no_grad():
        start = _clock(device)
        ref_latent = encode_references(model, [ref, *pseudo])  # [1, C, R, h, w]
        info["reference_encode_s"] = _clock(device) - start
        context = None
        for seg in plan:
            timing = {"segment": seg.index}
            start = _clock(device)
            seg_maps = segment_guidance(maps, seg, dim=0).to(device=device, dtype=dtype)
            pose_latent = model.pose_encoder(rearrange(seg_maps, "t h w c -> 1 c t h w"))
            seg_tokens = seg_mask = None
            if tokens is not None:
                seg_tokens = segment_guidance(tokens, seg, dim=0)[None].to(device=device,
                                                                          dtype=dtype)
                if mask is not None:
                    seg_mask = segment_guidance(mask, seg, dim=0)[None].to(device)
            shape = (1, cfg.vae.latent_channels, pose_latent.shape[2], *latent_hw)
            generator = torch.Generator().manual_seed(seeds[seg.index])
            noise = sample_noise(shape, generator).to(device=device, dtype=dtype)
            timing["pose_s"] = _clock(device) - start

            def progress(step: int, _steps: int, offset: int = seg.index * steps) -> None:
                if on_step is not None:
                    on_step(offset + step, total)

            start = _clock(device)
            latent = sample_segment(model, pose_latent, ref_latent, noise, schedule, solver,
                                    ref_scale, motion_scale, seg_tokens, seg_mask, context,
                                    progress)
            timing["sample_s"] = _clock(device) - start
            del pose_latent, noise, seg_tokens, seg_mask
            first_latents.append(latent[0, :, :1].cpu())
            start = _clock(device)
            decoded.append(decode_frames(model, latent, decode_chunk, ref))
            timing["decode_s"] = _clock(device) - start
            del latent
            if seg.index + 1 < len(plan):  # the next segment starts from this one's last frame
                context = encode_references(model, [decoded[-1][-1]])  # [1, C, 1, h, w]
            info["timings"].append(timing)
        start = _clock(device)
        if not stitch:  # the caller stitches (e.g. the Segment Stitcher node)
            return GenerationResult(None, plan, info, first_latents, segment_videos=decoded)
        frames = stitch_segments(decoded, plan, reference=ref.float().cpu(),
                                 colour_match=colour_match)
        info["stitch_s"] = _clock(device) - start
    return GenerationResult(frames, plan, info, first_latents)
