"""Temporal clean-up of pose tracks: confidence-aware gap filling and One-Euro smoothing.

Both work on arrays shaped [T, ..., D] (time first, coordinates last) and are vectorised over
everything but time; the One-Euro recursion is the only loop, one step per frame.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from .pose_track import PoseTrack


def _alpha(cutoff: np.ndarray | float, rate: float) -> np.ndarray:
    tau = 1.0 / (2.0 * np.pi * np.asarray(cutoff, np.float64))
    return 1.0 / (1.0 + tau * rate)


def one_euro(values: np.ndarray, fps: float, min_cutoff: float = 1.0, beta: float = 0.0,
             d_cutoff: float = 1.0, valid: np.ndarray | None = None) -> np.ndarray:
    """One-Euro filter (Casiez et al. 2012) along axis 0 of ``values`` [T, ..., D].

    The adaptive cutoff uses the speed of each point (norm over the last axis), so a joint's
    x/y/z are smoothed together. ``valid`` [T, ...] marks entries to filter; an invalid entry is
    passed through unchanged and restarts that point's filter at its next valid frame, so a
    long gap never drags one segment into the next.
    """
    values = np.asarray(values)
    dtype = values.dtype if np.issubdtype(values.dtype, np.floating) else np.float64
    x = values.astype(np.float64)
    if x.ndim < 2:
        raise ValueError(f"one_euro: values must be [T, ..., D], got shape {x.shape}")
    if fps <= 0:
        raise ValueError(f"one_euro: fps must be > 0, got {fps}")
    ok = np.ones(x.shape[:-1], bool) if valid is None else np.asarray(valid, bool)
    if ok.shape != x.shape[:-1]:
        raise ValueError(f"one_euro: valid has shape {ok.shape}, expected {x.shape[:-1]}")
    out = x.copy()
    if len(x) == 0:
        return out.astype(dtype)
    a_d = _alpha(d_cutoff, fps)
    prev = x[0].copy()
    d_prev = np.zeros_like(prev)
    started = ok[0].copy()
    for t in range(1, len(x)):
        cur, m = x[t], ok[t]
        fresh = m & ~started  # first valid frame after a gap: restart at the raw value
        dx = (cur - prev) * fps
        d_hat = a_d * dx + (1 - a_d) * d_prev
        speed = np.linalg.norm(d_hat, axis=-1, keepdims=True)
        a = _alpha(min_cutoff + beta * speed, fps)
        filt = a * cur + (1 - a) * prev
        step = (m & started)[..., None]
        new = np.where(step, filt, cur)
        out[t] = new
        prev = np.where(m[..., None], new, prev)
        d_prev = np.where(step, d_hat, np.where(fresh[..., None], 0.0, d_prev))
        started = m.copy()
    return out.astype(dtype)


def _runs(mask_1d: np.ndarray) -> list[tuple[int, int]]:
    """[start, stop) ranges where a boolean series is True."""
    padded = np.concatenate([[False], mask_1d, [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2])]


def fill_gaps(values: np.ndarray, conf: np.ndarray, threshold: float = 0.3,
              max_gap: int = 5) -> tuple[np.ndarray, np.ndarray, dict]:
    """Linearly interpolates points missing for at most ``max_gap`` frames.

    values [T, ..., D], conf [T, ...]. A point is missing where conf < threshold. Gaps with a
    confident frame on both sides and length <= max_gap are filled (positions and confidences
    interpolated between the two ends); longer gaps and gaps touching the clip's ends stay
    missing. Returns (values, conf, report) where report = {"filled": [(point, start, stop)],
    "missing": [(point, start, stop)]}, ``point`` being the index tuple into ``conf[t]`` and
    [start, stop) the frame range.
    """
    v = np.asarray(values)
    c = np.asarray(conf)
    if v.shape[:-1] != c.shape:
        raise ValueError(f"fill_gaps: conf shape {c.shape} must equal values shape without the "
                         f"last axis {v.shape[:-1]}")
    t_len = v.shape[0]
    ok = c >= threshold
    idx = np.arange(t_len).reshape((t_len,) + (1,) * (c.ndim - 1))
    prev = np.maximum.accumulate(np.where(ok, idx, -1), axis=0)
    nxt = np.flip(np.minimum.accumulate(np.flip(np.where(ok, idx, t_len), axis=0), axis=0), axis=0)
    gap = nxt - prev - 1
    fill = ~ok & (prev >= 0) & (nxt < t_len) & (gap <= max_gap)

    prev_c, nxt_c = np.clip(prev, 0, t_len - 1), np.clip(nxt, 0, t_len - 1)
    w = np.where(fill, (idx - prev) / np.maximum(nxt - prev, 1), 0.0)
    v_prev = np.take_along_axis(v, prev_c[..., None], axis=0)
    v_next = np.take_along_axis(v, nxt_c[..., None], axis=0)
    c_prev = np.take_along_axis(c, prev_c, axis=0)
    c_next = np.take_along_axis(c, nxt_c, axis=0)
    out_v = np.where(fill[..., None], (1 - w[..., None]) * v_prev + w[..., None] * v_next, v).astype(v.dtype)
    out_c = np.where(fill, (1 - w) * c_prev + w * c_next, c).astype(c.dtype)

    report = {"filled": [], "missing": []}
    flat_fill = fill.reshape(t_len, -1)
    flat_missing = (~ok & ~fill).reshape(t_len, -1)
    for k in np.flatnonzero(flat_fill.any(axis=0) | flat_missing.any(axis=0)):
        point = tuple(int(i) for i in np.unravel_index(k, c.shape[1:]))
        report["filled"] += [(point, a, b) for a, b in _runs(flat_fill[:, k])]
        report["missing"] += [(point, a, b) for a, b in _runs(flat_missing[:, k])]
    return out_v, out_c, report


def smooth_track(track: PoseTrack, min_cutoff: float = 1.5, beta: float = 0.5,
                 conf_threshold: float = 0.3, max_gap: int = 5) -> PoseTrack:
    """Gap-fills and One-Euro smooths a track's body and hands (2D and 3D) and head pose.

    2D coordinates are filtered in units of the image height so one ``beta`` serves both pixel
    and metric (body_3d) coordinates. Points still missing after filling keep confidence below
    ``conf_threshold`` and are passed through unfiltered. The gap report goes to
    ``track.report["smoothing"]``.
    """
    track.validate()
    fps, height = track.fps, float(track.image_size[0])
    kw = dict(min_cutoff=min_cutoff, beta=beta)

    def clean(v2, v3, conf):
        both = np.concatenate([v2 / height, v3], axis=-1)
        both, conf, rep = fill_gaps(both, conf, conf_threshold, max_gap)
        both = one_euro(both, fps, valid=conf >= conf_threshold, **kw)
        return (both[..., :2] * height).astype(np.float32), both[..., 2:].astype(np.float32), conf, rep

    body_2d, body_3d, body_conf, body_rep = clean(track.body_2d, track.body_3d, track.body_conf)
    hands_2d, hands_3d, hands_conf, hand_rep = clean(track.hands_2d, track.hands_3d, track.hands_conf)
    changes = dict(body_2d=body_2d, body_3d=body_3d, body_conf=body_conf,
                   hands_2d=hands_2d, hands_3d=hands_3d, hands_conf=hands_conf)
    if track.head_rotation is not None:
        head_ok = (track.head_conf > 0) if track.head_conf is not None else None
        changes["head_rotation"] = one_euro(track.head_rotation.astype(np.float64) / 90.0, fps,
                                            valid=head_ok, **kw).astype(np.float32) * 90.0
    report = dict(track.report)
    report["smoothing"] = {"body": body_rep, "hands": hand_rep, "max_gap": max_gap,
                           "conf_threshold": conf_threshold}
    return replace(track, report=report, **changes)
