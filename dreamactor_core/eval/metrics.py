"""Video metrics for self-reenactment: PSNR, SSIM, moving-pixel PSNR, flicker, mouth opening.

Every video is float [T, H, W, 3] in 0..1 (numpy or torch; converted to float64 numpy, or
float32 torch for SSIM).

* ``psnr``: 10 log10(1 / MSE) with the MSE over all frames, pixels and channels at once
  (optionally only over a [H, W] mask); identical videos give ``math.inf``.
* ``ssim``: gaussian-window SSIM (Wang et al. 2004; window sigma 1.5, 11 taps, K1 0.01,
  K2 0.03, data range 1), our own vectorised torch implementation, computed per frame and per
  channel over the "valid" region (windows fully inside the image, as skimage crops), then
  averaged. It matches ``skimage.metrics.structural_similarity(gaussian_weights=True,
  sigma=1.5, use_sample_covariance=False, data_range=1, channel_axis=-1)`` (tested).
* ``moving_mask``: pixels whose ground-truth value (max over channels of max - min over time)
  changes by more than ``threshold``: the person and whatever it uncovers. ``moving_psnr`` is
  PSNR over those pixels only, so the static background cannot hide a wrong person.
* ``flicker``: mean absolute frame-to-frame change of the GENERATED video over the pixels whose
  ground-truth range is at most ``static_threshold`` (static in the truth, so any change there
  is flicker).
* ``seam_error``: for videos generated in segments, the mean over the segment joins j of the
  mean |(pred[j] - pred[j-1]) - (target[j] - target[j-1])|: how far the change across a join
  is from the ground truth's own motion there (a colour or pose jump between segments).
* ``latent_jump``: the mean frame-to-frame change (all pixels) into the first frame of each
  latent frame (frames 1, 1 + tf, 1 + 2 tf, ... for a VAE that packs tf frames per latent
  frame after frame 0) over the mean change into the other frames. A decoder that decodes
  each latent frame on its own shows its seams as a ratio well above the truth's own (~1).
* Mouth opening (synthetic clips only: it needs the exact track and the renderer).
  ``mouth_darkness`` locates the mouth in every frame from the track's head geometry (below)
  and measures how much darker than the surrounding skin a square around it is; the open
  mouth's dark inside and wider lips raise it. The raw value also depends on skin colour, head
  turn and shading, so it is calibrated PER FRAME: the caller renders the same clip (same
  character, pose, camera, blink, mouth width) with mouth_open = each of ``MOUTH_LEVELS`` and
  measures those renders, giving a curve opening -> measure for every frame. ``mouth_opening``
  inverts a video's measure through that curve to a predicted mouth_open; ``mouth_error`` is
  the mean |predicted - ground-truth mouth_open| over the readable frames (mouth facing the
  camera, curve spanning at least ``MIN_CURVE_SPAN``). On the ground-truth frames themselves
  this gives the measure's floor (not 0: at 64 px the mouth is about two pixels tall).
  ``mouth_match`` reads an opening a second way, for the autoencoder only: the level whose
  render (11 levels) is nearest on a patch around the mouth. Through one autoencoder (the
  frames and every render encoded and decoded alike) it says whether the latent keeps the
  opening at all, where the darkness measure, calibrated on exact renders, reads a decoder's
  fainter mouth as a more closed one.

Mouth location: the synthetic head is a sphere whose face points (nose, eyes, ears, mouth) sit at
fixed head-local positions (synthetic.kinematics.FACE_POINTS). The track holds the 2-D nose, eye
and ear joints, the head centre and radius; a per-frame least-squares fit of the 2x3 linear map
head-local -> (pixel - centre) / radius (plus a shift) to those five points gives the mouth's
pixel position and, from the cross product of the map's rows, whether it faces the camera.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from ..guidance.pose_track import PoseTrack
from ..guidance.topology import J
from ..synthetic.kinematics import FACE_POINTS

_FACE_JOINTS = ("nose", "r_eye", "l_eye", "r_ear", "l_ear")
MOUTH_HALF_SIDE = 0.3  # half side of the measured square, in head radii
MOUTH_GRID = 9  # samples per side of that square
MOUTH_FACING = -0.5  # mouth normal's camera-z below this: facing the camera
HEAD_DISK_SCALE = 1.3  # head_psnr's disk, in head radii: the face, hair and the head's edge
MATCH_LEVELS = np.linspace(0.0, 1.0, 11)  # mouth_open values of mouth_match's renders
MOUTH_LEVELS = MATCH_LEVELS[::2]  # ... of the calibration renders: 0, 0.2, .., 1, a subset
MIN_CURVE_SPAN = 0.02  # calibration curves flatter than this: mouth unreadable in that frame
MATCH_HALF_SIDE = 0.5  # half side of mouth_match's patch, in head radii (down to the chin)
MATCH_GRID = 16  # samples per side of that patch


def _video(x, name: str) -> np.ndarray:
    a = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    if a.ndim != 4 or a.shape[-1] != 3:
        raise ValueError(f"{name} must be a video [T, H, W, 3] in 0..1, got shape {a.shape}")
    return a.astype(np.float64)


def _pair(pred, target) -> tuple[np.ndarray, np.ndarray]:
    p, t = _video(pred, "pred"), _video(target, "target")
    if p.shape != t.shape:
        raise ValueError(f"pred {p.shape} and target {t.shape} must have the same shape")
    return p, t


def psnr(pred, target, mask: np.ndarray | None = None) -> float:
    """PSNR in dB of pred vs target [T, H, W, 3] (0..1); ``mask`` [H, W] (every frame) or
    [T, H, W] (per frame) bool restricts the pixels. ``math.inf`` when equal; ``math.nan`` when
    the mask is empty."""
    p, t = _pair(pred, target)
    err = (p - t) ** 2
    if mask is not None:
        mask = np.asarray(mask, bool)
        if mask.shape not in (p.shape[1:3], p.shape[:3]):
            raise ValueError(f"mask must be [H, W] = {p.shape[1:3]} or [T, H, W] = "
                             f"{p.shape[:3]}, got {mask.shape}")
        if not mask.any():
            return math.nan
        err = err[:, mask] if mask.ndim == 2 else err[mask]
    mse = float(err.mean())
    return math.inf if mse == 0 else 10 * math.log10(1.0 / mse)


def _gaussian_window(sigma: float = 1.5, taps: int = 11) -> torch.Tensor:
    x = torch.arange(taps, dtype=torch.float64) - (taps - 1) / 2
    g = torch.exp(-x * x / (2 * sigma * sigma))
    return (g / g.sum()).float()


def ssim_map(x: torch.Tensor, y: torch.Tensor, sigma: float = 1.5,
             taps: int = 11) -> torch.Tensor:
    """Gaussian-window SSIM map of x against y [N, 1, H, W] (0..1), over the "valid" region
    [N, 1, H-taps+1, W-taps+1]; differentiable, so training can use 1 - its mean as a loss.
    Always in fp32, autocast or not: the variances are differences of nearly equal local means
    (blur(x * x) - blur(x)^2), which bf16 convolutions turn to noise (measured on decoded puppet
    frames: SSIM 0.007 under bf16 autocast against 0.912 in fp32)."""
    if min(x.shape[-2:]) < taps:
        raise ValueError(f"SSIM needs frames of at least {taps}x{taps} pixels, got "
                         f"{x.shape[-2]}x{x.shape[-1]}")
    x, y = x.float(), y.float()
    g = _gaussian_window(sigma, taps).to(x)

    def blur(z: torch.Tensor) -> torch.Tensor:  # separable  # [N, 1, H', W']
        z = F.conv2d(z, g.view(1, 1, taps, 1))
        return F.conv2d(z, g.view(1, 1, 1, taps))

    c1, c2 = 0.01 ** 2, 0.03 ** 2
    with torch.autocast(x.device.type, enabled=False):
        mx, my = blur(x), blur(y)
        vx = blur(x * x) - mx * mx
        vy = blur(y * y) - my * my
        cxy = blur(x * y) - mx * my
        return ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))


def ssim(pred, target, sigma: float = 1.5, taps: int = 11) -> float:
    """Mean gaussian-window SSIM over frames and channels (module docstring)."""
    p, t = _pair(pred, target)
    x = torch.from_numpy(p).float().permute(0, 3, 1, 2).reshape(-1, 1, *p.shape[1:3])
    y = torch.from_numpy(t).float().permute(0, 3, 1, 2).reshape(-1, 1, *t.shape[1:3])
    return float(ssim_map(x, y, sigma, taps).double().mean())


def _range(target) -> np.ndarray:
    t = _video(target, "target")
    return (t.max(axis=0) - t.min(axis=0)).max(axis=-1)  # [H, W]


def moving_mask(target, threshold: float = 0.1) -> np.ndarray:
    """[H, W] bool: pixels whose ground-truth value changes by more than ``threshold``."""
    return _range(target) > threshold


def static_mask(target, threshold: float = 0.02) -> np.ndarray:
    """[H, W] bool: pixels whose ground-truth value changes by at most ``threshold``."""
    return _range(target) <= threshold


def moving_psnr(pred, target, threshold: float = 0.1) -> float:
    return psnr(pred, target, moving_mask(target, threshold))


def head_psnr(pred, target, track: PoseTrack, scale: float = HEAD_DISK_SCALE) -> float:
    """PSNR over each frame's head: the disk of ``scale`` head radii around the track's head
    centre (frames may be at another size than the track; NaN when no frame has a head).
    Where the whole-frame PSNR hides the face in the body and background, this reads it alone."""
    p, t = _pair(pred, target)
    if p.shape[0] != track.num_frames:
        raise ValueError(f"pred has {p.shape[0]} frames but the track {track.num_frames}")
    if track.head_center is None or track.head_radius is None:
        raise ValueError("head_psnr needs a track with head_center and head_radius (a synthetic "
                         "clip's exact track has them)")
    sy, sx = p.shape[1] / track.image_size[0], p.shape[2] / track.image_size[1]
    centre = np.asarray(track.head_center, np.float64) * np.array([sx, sy])  # [T, 2]
    radius = np.asarray(track.head_radius, np.float64) * math.sqrt(sx * sy) * scale  # [T]
    yy, xx = np.mgrid[:p.shape[1], :p.shape[2]] + 0.5  # pixel centres
    disk = ((xx[None] - centre[:, 0, None, None]) ** 2 + (yy[None] - centre[:, 1, None, None]) ** 2
            <= radius[:, None, None] ** 2)  # [T, H, W]
    return psnr(p, t, disk)


def flicker(pred, target, static_threshold: float = 0.02) -> float:
    """Mean |pred[t+1] - pred[t]| over ground-truth-static pixels (0 for a single frame)."""
    p, _ = _pair(pred, target)
    mask = static_mask(target, static_threshold)
    if p.shape[0] < 2 or not mask.any():
        return 0.0
    return float(np.abs(np.diff(p, axis=0))[:, mask].mean())


def seam_error(pred, target, joins) -> float:
    """Mean |frame change - true frame change| at the joins (first frames of segments 2, 3,
    ...); NaN without joins."""
    p, t = _pair(pred, target)
    joins = [int(j) for j in joins]
    if not joins:
        return math.nan
    if min(joins) < 1 or max(joins) >= p.shape[0]:
        raise ValueError(f"joins must be frame indices in 1..{p.shape[0] - 1}, got {joins}")
    return float(np.mean([np.abs((p[j] - p[j - 1]) - (t[j] - t[j - 1])).mean() for j in joins]))


def latent_jump(video, temporal_factor: int) -> float:
    """Mean |video[i] - video[i-1]| over the latent-frame starts i = 1, 1 + tf, ... divided by
    the same mean over the other i >= 1 (module docstring); NaN when the video has no frame
    inside a latent frame to compare with or does not change there."""
    v = _video(video, "video")
    tf = int(temporal_factor)
    if tf < 1:
        raise ValueError(f"temporal_factor must be >= 1, got {temporal_factor}")
    change = np.abs(np.diff(v, axis=0)).mean(axis=(1, 2, 3))  # [T-1]: change into frame i = 1..
    starts = (np.arange(1, v.shape[0]) - 1) % tf == 0
    inside = change[~starts]
    if inside.size == 0 or inside.mean() == 0:
        return math.nan
    return float(change[starts].mean() / inside.mean())


# -- mouth opening ----------------------------------------------------------------------------
def mouth_geometry(track: PoseTrack) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """-> (mouth centre px [T, 2], head radius px [T], facing [T] bool), from the track's face
    joints (module docstring). Frames without a head are not facing."""
    if track.head_center is None or track.head_radius is None:
        raise ValueError("track has no head_center / head_radius; the mouth measure needs a "
                         "synthetic ground-truth track (synthetic.make_clip)")
    local = np.stack([FACE_POINTS[n] for n in _FACE_JOINTS])  # [5, 3]
    pts = track.body_2d[:, [J[n] for n in _FACE_JOINTS]].astype(np.float64)  # [T, 5, 2]
    center = track.head_center.astype(np.float64)  # [T, 2]
    radius = track.head_radius.astype(np.float64)  # [T]
    safe_r = np.where(radius > 0, radius, 1.0)
    rel = (pts - center[:, None]) / safe_r[:, None, None]  # [T, 5, 2]
    # Affine fit: the joints are perspective projections, the painted head is orthographic
    # around its own centre, so a small shift is fitted along with the 2x3 map.
    design = np.concatenate([local, np.ones((len(local), 1))], axis=1)  # [5, 4]
    coef = np.einsum("ij,tjk->tki", np.linalg.pinv(design), rel)  # [T, 2, 4]
    rows, shift = coef[..., :3], coef[..., 3]  # [T, 2, 3]: image x, y rows of the rotation
    mouth = FACE_POINTS["mouth"]
    pos = center + safe_r[:, None] * (rows @ mouth + shift)  # [T, 2]
    z_row = np.cross(rows[:, 0], rows[:, 1])
    z_row /= np.maximum(np.linalg.norm(z_row, axis=-1, keepdims=True), 1e-9)
    conf = track.head_conf if track.head_conf is not None else np.ones(len(radius))
    facing = (z_row @ mouth < MOUTH_FACING) & (radius > 0) & (conf > 0)
    return pos, radius, facing


def _mouth_in_frames(frames, track: PoseTrack):
    """-> (video [T, H, W, 3] float64, mouth centre [T, 2] and head radius [T] in the frames'
    pixels, facing [T] bool): mouth_geometry rescaled to frames of another size than the track."""
    v = _video(frames, "frames")
    if v.shape[0] != track.num_frames:
        raise ValueError(f"frames has {v.shape[0]} frames but the track {track.num_frames}")
    sy, sx = v.shape[1] / track.image_size[0], v.shape[2] / track.image_size[1]
    pos, radius, facing = mouth_geometry(track)
    return v, pos * np.array([sx, sy]), radius * math.sqrt(sx * sy), facing


def mouth_darkness(frames, track: PoseTrack) -> np.ndarray:
    """[T] how much darker than the surrounding skin the square around each frame's mouth is:
    mean over the square of max(skin luma - luma, 0) / skin luma, the skin luma being the median
    over the upper half of a ring 0.4..0.6 head radii around the mouth (below it lies the chin's
    edge). NaN where the mouth does not face the camera. The open mouth's dark inside and wider
    lips raise it. Frames may be at another size than the track (positions are rescaled)."""
    v, pos, radius, facing = _mouth_in_frames(frames, track)
    inner = np.linspace(-MOUTH_HALF_SIDE, MOUTH_HALF_SIDE, MOUTH_GRID)
    gx, gy = np.meshgrid(inner, inner)
    angles = np.linspace(-np.pi, 0, 13)  # the upper half: below the mouth is the chin's edge
    ring_r = np.array([0.4, 0.5, 0.6])[:, None]
    rx, ry = (ring_r * np.cos(angles)).ravel(), (ring_r * np.sin(angles)).ravel()
    luma = v @ np.array([0.299, 0.587, 0.114])  # [T, H, W]
    out = np.full(v.shape[0], np.nan)
    for i in np.flatnonzero(facing):
        r, (cx, cy) = radius[i], pos[i]
        skin = np.median(_bilinear(luma[i], cx + r * rx, cy + r * ry))
        mouth = _bilinear(luma[i], cx + r * gx.ravel(), cy + r * gy.ravel())  # [N]
        out[i] = np.maximum(skin - mouth, 0.0).mean() / max(skin, 0.05)
    return out


def _bilinear(img: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """img [H, W] or [H, W, C] sampled at float pixel positions xs, ys [N] (clamped)."""
    h, w = img.shape[:2]
    xs, ys = np.clip(xs, 0, w - 1), np.clip(ys, 0, h - 1)
    x0, y0 = np.floor(xs).astype(int), np.floor(ys).astype(int)
    x1, y1 = np.minimum(x0 + 1, w - 1), np.minimum(y0 + 1, h - 1)
    fx, fy = xs - x0, ys - y0
    if img.ndim == 3:
        fx, fy = fx[:, None], fy[:, None]
    top = img[y0, x0] * (1 - fx) + img[y0, x1] * fx
    bottom = img[y1, x0] * (1 - fx) + img[y1, x1] * fx
    return top * (1 - fy) + bottom * fy


def mouth_opening(measure: np.ndarray, curves: np.ndarray, levels=MOUTH_LEVELS,
                  min_span: float = MIN_CURVE_SPAN) -> np.ndarray:
    """Per-frame inversion of the measure: measure [T] with curves [T, K] (the measure of the
    same frame rendered with mouth_open = levels[k]) -> predicted mouth_open [T] in 0..1: the
    opening on a 0.01 grid whose piecewise-linear interpolated curve value is nearest. NaN where
    the measure or a curve value is missing or the curve spans less than ``min_span`` (mouth
    too small or turned away to be read)."""
    measure = np.asarray(measure, np.float64)
    curves = np.asarray(curves, np.float64)
    levels = np.asarray(levels, np.float64)
    if curves.shape != (len(measure), len(levels)):
        raise ValueError(f"curves must be [T, K] = {(len(measure), len(levels))}, got "
                         f"{curves.shape}")
    fine = np.linspace(levels[0], levels[-1], 101)
    out = np.full(len(measure), np.nan)
    ok = np.isfinite(measure) & np.isfinite(curves).all(axis=1)
    ok &= np.where(ok, np.ptp(np.nan_to_num(curves), axis=1), 0.0) >= min_span
    for i in np.flatnonzero(ok):
        out[i] = fine[np.argmin(np.abs(np.interp(fine, levels, curves[i]) - measure[i]))]
    return out


def mouth_match(frames, bank, track: PoseTrack, levels=MATCH_LEVELS) -> np.ndarray:
    """[T] the level whose frame in ``bank`` [K, T, H, W, 3] (the same clip rendered with
    mouth_open = levels[k], all else equal) is nearest (mean squared RGB difference) to
    ``frames`` [T, H, W, 3] on a patch of side 2 MATCH_HALF_SIDE head radii around the mouth;
    NaN where the mouth does not face the camera. Only the mouth differs between the bank's
    renders, so passing both the frames and the bank through one autoencoder asks whether
    the autoencoder keeps what tells one opening from another, whatever it does to the
    mouth's contrast (which mouth_darkness reads)."""
    v, pos, radius, facing = _mouth_in_frames(frames, track)
    bank = np.asarray(bank, np.float64)
    if bank.ndim != 5 or bank.shape[1:] != v.shape or bank.shape[0] != len(levels):
        raise ValueError(f"bank must be [K, T, H, W, 3] = {(len(levels), *v.shape)}, got "
                         f"{bank.shape}")
    steps = np.linspace(-MATCH_HALF_SIDE, MATCH_HALF_SIDE, MATCH_GRID)
    gx, gy = (g.ravel() for g in np.meshgrid(steps, steps))
    out = np.full(v.shape[0], np.nan)
    for i in np.flatnonzero(facing):
        xs, ys = pos[i, 0] + radius[i] * gx, pos[i, 1] + radius[i] * gy
        patch = _bilinear(v[i], xs, ys)  # [N, 3]
        dist = [np.mean((_bilinear(bank[k, i], xs, ys) - patch) ** 2) for k in range(len(bank))]
        out[i] = float(np.asarray(levels)[int(np.argmin(dist))])
    return out


def mouth_error(predicted: np.ndarray, mouth_open: np.ndarray) -> float:
    """Mean |predicted - mouth_open| over the frames with a prediction (NaN if none)."""
    predicted, mouth_open = np.asarray(predicted, np.float64), np.asarray(mouth_open, np.float64)
    ok = np.isfinite(predicted)
    if not ok.any():
        return math.nan
    return float(np.abs(predicted[ok] - mouth_open[ok]).mean())
