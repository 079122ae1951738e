"""Self-reenactment evaluation of a model on held-out synthetic clips.

For clip i (character seed ``base_seed + i``; training draws its characters from a 63-bit hash,
so seeds from 10_000_000 on are held out in practice):

* ground truth: ``make_clip(seed, frames, model frame size)`` at 25 fps, with its speech audio;
* reference: the same character in an independent pose, ``render_reference(seed, size,
  pose_seed=i + 1)``;
* driver: the clip's own guidance maps and face crops rendered by the training dataset's
  functions (train.datasets.guidance_maps / head_box_crops), so evaluation sees what training
  saw; face tokens from the face-motion encoder on the crops ("video"-driven) and, separately,
  from the audio-to-motion encoder on the clip's audio ("audio"-driven), and from crops of the
  clip acted by another character (``render_driver``, character ``seed + CROSS_SEED_OFFSET``:
  the same head turns, blinks and mouth on another face; "cross"-driven), as when a user drives
  a character with a video of someone else. "cross" against "video" (``head_psnr`` above all)
  measures how much of the driver's identity leaks into the face-motion tokens;
* generation: pipeline.generate with the given steps / CFG scales and seed ``seed + i``; with
  ``draws`` N > 1, N times per variant, draw d with seed ``seed + i + d * DRAW_SEED_STRIDE``,
  and each variant's figures are the mean over the draws (the sheet shows draw 0). The sampling
  noise alone moves an 8-clip mean by ~0.1 dB of PSNR, so a bar close to a model's figure needs
  several draws; ``per_draw`` in the summary holds each draw's mean over the clips.

Baselines computed in the same run, scored with the same metrics:

* ``copy_reference``: every frame is the reference image;
* ``mean_frame``: every frame is the per-pixel mean over all frames of ``mean_clips`` OTHER
  synthetic clips (seeds ``mean_seed + j``), an estimate of the mean training frame;
* ``closed_mouth``: the mouth-error baseline predicting the reference's ``mouth_open`` (a
  constant, nearly closed) for every frame the measure can read;
* ``mouth_floor``: the mouth error of the ground-truth frames themselves (the measure's noise;
  see metrics.py for the per-frame calibration renders);
* ``vae_psnr``: PSNR of the model's VAE reconstruction (posterior mean, encode then decode,
  with the reference image where the decoder reads one, as the pipeline decodes) of the ground
  truth, the ceiling any latent generator can reach; ``vae_mouth_error``: the
  mouth error of that reconstruction (whether the latent space carries the mouth at all);
  ``vae_moving_psnr``: its PSNR over the moving pixels, the ceiling of ``moving_psnr``;
  ``vae_ssim``: its SSIM, the ceiling of ``ssim``;
  ``vae_reference_psnr``: the same for the reference image encoded alone, as the generator
  encodes it (a 1-frame video: the causal VAE's first-frame path);
* ``vae_mouth_kept``: whether the latent keeps the mouth's opening, whatever the decoder does
  to its contrast: metrics.mouth_match of the reconstruction against the reconstructions of
  the clip rendered at 11 openings (``mouth_match_floor``: the truth against those renders),
  on the frames the mouth measure reads. Diagnostic only; the bar is on ``mouth_error``.

``evaluate_reconstruction`` scores the VAE alone on the same clips and references (the
``vae_*`` figures above but the mouth's, and the ``vae_psnr`` bar): seconds where the full
evaluation samples for minutes, for work on the autoencoder.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from ..model.bundle import DreamActorModel
from ..model.motion_tokens import encode_audio, encode_face_crops
from ..model.pipeline import GUIDANCE_SCALE, SHIFT, decode_frames, generate
from ..synthetic.clip import (SyntheticClip, make_clip, render_driver, render_reference,
                              rerender_clip)
from ..train.datasets import guidance_maps, head_box_crops
from . import metrics

FPS = 25.0
MODEL_VARIANTS = ("video", "audio", "cross")
CROSS_SEED_OFFSET = 777_777  # the "cross" driver's character: the clip's seed + this
DRAW_SEED_STRIDE = 1_000_003  # draw d samples with seed + i + d * this: no clip reuses a draw's noise
BASELINES = ("copy_reference", "mean_frame")
SCORES = ("psnr", "ssim", "moving_psnr", "head_psnr", "flicker", "seam_error", "mouth_error",
          "latent_jump")  # score()'s figures, for every variant and baseline
VAE_PSNR_BAR = 30.0  # the bar on the autoencoder's reconstruction (dB)


@dataclass
class EvalSettings:
    clips: int = 4
    frames: int = 17
    steps: int = 20
    ref_scale: float = GUIDANCE_SCALE
    motion_scale: float = GUIDANCE_SCALE
    solver: str = "euler"
    shift: float = SHIFT
    seed: int = 0
    draws: int = 1  # samples per clip and variant, with different noise; figures are their mean
    base_seed: int = 10_000_000
    mean_clips: int = 8
    mean_seed: int = 20_000_000
    mean_frames: int = 5
    moving_threshold: float = 0.1
    static_threshold: float = 0.02

    def check(self, temporal_factor: int) -> None:
        for name in ("clips", "frames", "steps", "draws", "mean_clips", "mean_frames"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if (self.frames - 1) % temporal_factor:
            raise ValueError(f"frames={self.frames}: the model's VAE needs {temporal_factor}*k+1 "
                             f"frames (e.g. {temporal_factor + 1} or {4 * temporal_factor + 1})")


@dataclass
class ClipResult:
    seed: int
    reference: np.ndarray  # [H, W, 3] float 0..1
    guidance: np.ndarray  # [T, H, W, 6] float 0..1
    truth: np.ndarray  # [T, H, W, 3] float 0..1
    videos: dict[str, np.ndarray]  # variant -> [T, H, W, 3] float 0..1 (draw 0)
    scores: dict[str, dict[str, float]]  # variant -> metric -> value (mean over the draws)
    vae_psnr: float
    vae_moving_psnr: float  # the ceiling of the model's moving-pixel PSNR
    vae_ssim: float  # ... and of its SSIM
    vae_reference_psnr: float  # the reference image through the VAE as a 1-frame video
    vae_mouth_error: float  # mouth error of the VAE reconstruction: the latent space's ceiling
    vae_mouth_kept: float  # metrics.mouth_match error of the reconstruction, bank through the VAE
    mouth_match_floor: float  # ... of the truth against the exact renders
    mouth_floor: float  # calibrated mouth measure on the ground truth itself
    closed_mouth_error: float
    truth_latent_jump: float  # metrics.latent_jump of the truth: what a seamless decoder scores
    vae_latent_jump: float  # ... of the VAE reconstruction
    timings: dict[str, float] = field(default_factory=dict)
    draw_scores: list[dict[str, dict[str, float]]] = field(default_factory=list)  # per draw, model variants


def _float(frames: np.ndarray) -> np.ndarray:
    return frames.astype(np.float32) / 255.0


def mean_frame(size: tuple[int, int], settings: EvalSettings) -> np.ndarray:
    """[H, W, 3] float: per-pixel mean over every frame of the ``mean_clips`` other clips."""
    total = np.zeros((*size, 3), np.float64)
    for j in range(settings.mean_clips):
        clip = make_clip(settings.mean_seed + j, settings.mean_frames, size, FPS, with_audio=False)
        total += _float(clip.frames).mean(axis=0)
    return (total / settings.mean_clips).astype(np.float32)


@torch.no_grad()
def vae_reconstruction(model: DreamActorModel, truth: np.ndarray,
                       reference: np.ndarray | None = None) -> np.ndarray:
    """[T, H, W, 3] 0..1 -> the VAE's encode (posterior mean) / decode of it, same shape; a
    decoder that reads the reference image decodes with ``reference`` [H, W, 3], as the
    pipeline decodes."""
    video = torch.from_numpy(truth).to(model.device, model.dtype)
    video = video.permute(3, 0, 1, 2)[None] * 2 - 1  # [1, 3, T, H, W]
    ref = None if reference is None else torch.from_numpy(reference)
    return decode_frames(model, model.vae.encode(video), None, ref).numpy()


def mouth_renders(clip: SyntheticClip, seed: int, levels) -> np.ndarray:
    """[K, T, H, W, 3] float: ``clip`` re-rendered with mouth_open = levels[k] (all else equal)."""
    return np.stack([_float(rerender_clip(seed, clip, float(level))) for level in levels])


def mouth_curves(clip: SyntheticClip, seed: int, levels=metrics.MOUTH_LEVELS,
                 renders: np.ndarray | None = None) -> np.ndarray:
    """[T, K] the mouth measure of every frame of ``clip`` re-rendered with mouth_open =
    levels[k] (all else equal; ``renders`` [K, T, H, W, 3] when already made): the per-frame
    calibration of metrics.mouth_opening."""
    renders = mouth_renders(clip, seed, levels) if renders is None else renders
    return np.stack([metrics.mouth_darkness(r, clip.track) for r in renders], axis=1)


def score(video: np.ndarray, truth: np.ndarray, clip: SyntheticClip, curves: np.ndarray,
          settings: EvalSettings, joins: list[int], temporal_factor: int) -> dict[str, float]:
    opening = metrics.mouth_opening(metrics.mouth_darkness(video, clip.track), curves)
    return {"psnr": metrics.psnr(video, truth), "ssim": metrics.ssim(video, truth),
            "moving_psnr": metrics.moving_psnr(video, truth, settings.moving_threshold),
            "head_psnr": metrics.head_psnr(video, truth, clip.track),
            "flicker": metrics.flicker(video, truth, settings.static_threshold),
            "seam_error": metrics.seam_error(video, truth, joins),
            "mouth_error": metrics.mouth_error(opening, clip.face["mouth_open"]),
            "latent_jump": metrics.latent_jump(video, temporal_factor)}


def eval_clip(model: DreamActorModel, index: int,
              settings: EvalSettings) -> tuple[SyntheticClip, SyntheticClip, int]:
    """(ground-truth clip, reference render, seed) of held-out clip ``index``."""
    size = (model.config.frame_height, model.config.frame_width)
    seed = settings.base_seed + index
    return (make_clip(seed, settings.frames, size, FPS, with_audio=True),
            render_reference(seed, size, pose_seed=index + 1), seed)


def reconstruction_scores(model: DreamActorModel, truth: np.ndarray, reference: np.ndarray,
                          settings: EvalSettings) -> tuple[np.ndarray, dict[str, float]]:
    """(the VAE's reconstruction of ``truth`` decoded with ``reference``, its figures)."""
    recon = vae_reconstruction(model, truth, reference)
    ref_alone = vae_reconstruction(model, reference[None])
    tf = model.config.vae.temporal_factor
    return recon, {"vae_psnr": metrics.psnr(recon, truth),
                   "vae_moving_psnr": metrics.moving_psnr(recon, truth, settings.moving_threshold),
                   "vae_ssim": metrics.ssim(recon, truth),
                   "vae_reference_psnr": metrics.psnr(ref_alone, reference[None]),
                   "truth_latent_jump": metrics.latent_jump(truth, tf),
                   "vae_latent_jump": metrics.latent_jump(recon, tf)}


def evaluate_clip(model: DreamActorModel, index: int, settings: EvalSettings,
                  mean: np.ndarray) -> ClipResult:
    cfg = model.config
    size = (cfg.frame_height, cfg.frame_width)
    clip, ref, seed = eval_clip(model, index, settings)
    truth = _float(clip.frames)
    reference = _float(ref.frames[0])
    guidance = guidance_maps(clip.track, size).astype(np.float32) / 255.0
    def face_motion(frames: np.ndarray, track):
        crops, face_mask = head_box_crops(frames, track, model.face_config.image_size)
        return encode_face_crops(model, torch.from_numpy(crops).float() / 255.0, FPS,
                                 torch.from_numpy(face_mask))

    motions = {"video": face_motion(clip.frames, clip.track),
               "audio": encode_audio(model, clip.audio, settings.frames, FPS),
               "cross": face_motion(*render_driver(seed, clip, seed + CROSS_SEED_OFFSET))}

    draws, timings, joins = [{} for _ in range(settings.draws)], {}, []
    for name in MODEL_VARIANTS:
        start = time.perf_counter()
        for d, drawn in enumerate(draws):
            result = generate(model, torch.from_numpy(reference), torch.from_numpy(guidance),
                              motions[name].tokens, steps=settings.steps, solver=settings.solver,
                              shift=settings.shift, ref_scale=settings.ref_scale,
                              motion_scale=settings.motion_scale,
                              seed=settings.seed + index + d * DRAW_SEED_STRIDE,
                              face_mask=motions[name].mask)
            drawn[name] = result.frames.numpy()
            joins = [seg.new_start for seg in result.segments[1:]]
        timings[f"generate_{name}_s"] = (time.perf_counter() - start) / settings.draws
    t = settings.frames
    baselines = {"copy_reference": np.broadcast_to(reference, truth.shape).copy(),
                 "mean_frame": np.broadcast_to(mean, truth.shape).copy()}

    bank = mouth_renders(clip, seed, metrics.MATCH_LEVELS)  # [11, T, H, W, 3]
    curves = mouth_curves(clip, seed, renders=bank[::2])  # MOUTH_LEVELS = MATCH_LEVELS[::2]
    truth_opening = metrics.mouth_opening(metrics.mouth_darkness(truth, clip.track), curves)
    readable = np.isfinite(truth_opening)  # the floors, baseline and VAE match read these

    def mouth_error(opening) -> float:
        return metrics.mouth_error(np.where(readable, opening, np.nan), clip.face["mouth_open"])

    floor = mouth_error(truth_opening)
    closed = mouth_error(float(ref.face["mouth_open"][0]))  # the reference's mouth throughout
    tf = cfg.vae.temporal_factor
    draw_scores = [{name: score(v[:t], truth, clip, curves, settings, joins, tf)
                    for name, v in drawn.items()} for drawn in draws]
    scores = {name: {key: _nan_if_none(_mean([ds[name][key] for ds in draw_scores]))
                     for key in SCORES} for name in MODEL_VARIANTS}
    scores |= {name: score(v[:t], truth, clip, curves, settings, joins, tf)
               for name, v in baselines.items()}
    videos = {**draws[0], **baselines}
    recon, recon_scores = reconstruction_scores(model, truth, reference, settings)
    recon_opening = metrics.mouth_opening(metrics.mouth_darkness(recon, clip.track), curves)
    recon_bank = np.stack([vae_reconstruction(model, r, reference) for r in bank])
    return ClipResult(seed=seed, reference=reference, guidance=guidance, truth=truth,
                      videos=videos, scores=scores, **recon_scores,
                      vae_mouth_error=metrics.mouth_error(recon_opening, clip.face["mouth_open"]),
                      vae_mouth_kept=mouth_error(metrics.mouth_match(recon, recon_bank,
                                                                     clip.track)),
                      mouth_match_floor=mouth_error(metrics.mouth_match(truth, bank, clip.track)),
                      mouth_floor=floor,
                      closed_mouth_error=closed, timings=timings, draw_scores=draw_scores)


def _mean(values) -> float | None:
    """Mean of the finite values; inf if any is inf (identical videos); None if none."""
    values = [v for v in values if not math.isnan(v)]
    if not values:
        return None
    if any(math.isinf(v) for v in values):
        return math.inf
    return float(np.mean(values))


def _nan_if_none(value: float | None) -> float:
    return math.nan if value is None else value  # a clip's figures stay floats, as score() gives


def summarise(results: list[ClipResult], settings: EvalSettings) -> dict:
    """Per-variant means over clips, the bars of the issue and whether each is met."""
    variants = {}
    for name in (*MODEL_VARIANTS, *BASELINES):
        variants[name] = {key: _mean([r.scores[name][key] for r in results])
                          for key in SCORES}
    summary = {
        **variants["video"],
        "audio": variants["audio"],
        "cross": variants["cross"],
        "baselines": {**{b: variants[b] for b in BASELINES},
                      "closed_mouth": {"mouth_error": _mean([r.closed_mouth_error
                                                             for r in results])}},
        "vae_psnr": _mean([r.vae_psnr for r in results]),
        "vae_moving_psnr": _mean([r.vae_moving_psnr for r in results]),
        "vae_ssim": _mean([r.vae_ssim for r in results]),
        "vae_reference_psnr": _mean([r.vae_reference_psnr for r in results]),
        "vae_mouth_error": _mean([r.vae_mouth_error for r in results]),
        "vae_mouth_kept": _mean([r.vae_mouth_kept for r in results]),
        "mouth_match_floor": _mean([r.mouth_match_floor for r in results]),
        "mouth_floor": _mean([r.mouth_floor for r in results]),
        "truth_latent_jump": _mean([r.truth_latent_jump for r in results]),
        "vae_latent_jump": _mean([r.vae_latent_jump for r in results]),
        "mouth_clips": sum(not math.isnan(r.closed_mouth_error) for r in results),
        "generate_s": {name: _mean([r.timings[f"generate_{name}_s"] for r in results])
                       for name in MODEL_VARIANTS},  # seconds per clip
        "settings": asdict(settings),
        "clip_seeds": [r.seed for r in results],
        # each draw's mean over the clips: how far the sampling noise alone moves the figures
        "per_draw": {name: {key: [_mean([r.draw_scores[d][name][key] for r in results])
                                  for d in range(settings.draws)]
                            for key in ("psnr", "ssim", "moving_psnr", "mouth_error")}
                     for name in MODEL_VARIANTS},
    }
    summary["bars"], summary["meets"] = bars(summary)
    return summary


def bars(summary: dict) -> tuple[dict, dict]:
    """The issue's acceptance bars (thresholds) and a bool per bar (False when unmeasured)."""
    copy = summary["baselines"]["copy_reference"]
    closed = summary["baselines"]["closed_mouth"]["mouth_error"]

    def plus(value, delta):
        return None if value is None else value + delta

    thresholds = {
        "vae_psnr": (">=", VAE_PSNR_BAR, summary["vae_psnr"]),
        "psnr": (">=", plus(copy["psnr"], 7.0), summary["psnr"]),
        "ssim": (">=", 0.85, summary["ssim"]),
        "moving_psnr": (">=", plus(copy["moving_psnr"], 8.0), summary["moving_psnr"]),
        "flicker": ("<=", 0.01, summary["flicker"]),
        "audio_mouth_error": ("<=", None if closed is None else closed / 2,
                              summary["audio"]["mouth_error"]),
    }
    meets = {}
    for name, (op, bar, value) in thresholds.items():
        if bar is None or value is None:
            meets[name] = False
        else:
            meets[name] = bool(value >= bar if op == ">=" else value <= bar)
    return {name: {"op": op, "value": bar} for name, (op, bar, _) in thresholds.items()}, meets


def evaluate(model: DreamActorModel, settings: EvalSettings,
             progress=None) -> tuple[dict, list[ClipResult]]:
    """Runs every clip; returns (summary dict, per-clip results). ``progress(i, n)`` after each."""
    settings.check(model.config.vae.temporal_factor)
    size = (model.config.frame_height, model.config.frame_width)
    mean = mean_frame(size, settings)
    results = []
    for i in range(settings.clips):
        results.append(evaluate_clip(model, i, settings, mean))
        if progress is not None:
            progress(i + 1, settings.clips)
    return summarise(results, settings), results


def evaluate_reconstruction(model: DreamActorModel, settings: EvalSettings,
                            progress=None) -> dict:
    """The VAE alone on evaluate's clips and references: the mean of each reconstruction figure
    over the clips, ``per_clip`` lists, and the ``vae_psnr`` bar (``bars`` / ``meets``)."""
    settings.check(model.config.vae.temporal_factor)
    rows, seeds = [], []
    for i in range(settings.clips):
        clip, ref, seed = eval_clip(model, i, settings)
        rows.append(reconstruction_scores(model, _float(clip.frames), _float(ref.frames[0]),
                                          settings)[1])
        seeds.append(seed)
        if progress is not None:
            progress(i + 1, settings.clips)
    per_clip = {key: [row[key] for row in rows] for key in rows[0]}
    summary = {key: _mean(values) for key, values in per_clip.items()}
    summary |= {"per_clip": per_clip, "clip_seeds": seeds,
                "settings": {"clips": settings.clips, "frames": settings.frames,
                             "base_seed": settings.base_seed,
                             "moving_threshold": settings.moving_threshold},
                "bars": {"vae_psnr": {"op": ">=", "value": VAE_PSNR_BAR}},
                "meets": {"vae_psnr": bool(summary["vae_psnr"] >= VAE_PSNR_BAR)}}
    return summary
