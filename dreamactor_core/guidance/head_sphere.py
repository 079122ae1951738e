"""The head sphere: a sphere at the head's position and size whose colours encode orientation.

Each visible surface point is coloured by its normal expressed in the head frame,
RGB = (n_head + 1) / 2, i.e. the normal map of a sphere that turns with the head. Geometry
alone gives every pixel's normal in the camera frame (orthographic sphere), the colour gives the
same normal in the head frame, so the rotation can be read back from any rendering by orthogonal
Procrustes (Kabsch) over the pixels. Angles follow head_pose.py (yaw, pitch, roll in degrees).
"""

from __future__ import annotations

import numpy as np

from .head_pose import euler_to_matrix, matrix_to_euler
from .pose_track import PoseTrack

# The darkest colour a unit normal can produce sums to 255 * (3 - sqrt 3) / 2 ~ 161 over RGB;
# anything well below that is background.
_BACKGROUND_SUM = 80


def _draw_sphere(canvas: np.ndarray, rotation: np.ndarray, center, radius: float) -> None:
    """Paints one sphere into canvas [H, W, 3] uint8 in place, touching only its bounding box."""
    h, w = canvas.shape[:2]
    cx, cy = float(center[0]), float(center[1])
    if not (np.isfinite(cx) and np.isfinite(cy) and np.isfinite(radius)) or radius <= 0:
        return
    x0, x1 = max(int(np.floor(cx - radius)), 0), min(int(np.ceil(cx + radius)) + 1, w)
    y0, y1 = max(int(np.floor(cy - radius)), 0), min(int(np.ceil(cy + radius)) + 1, h)
    if x0 >= x1 or y0 >= y1:
        return
    dx = (np.arange(x0, x1, dtype=np.float32) - cx) / radius  # [bw]
    dy = (np.arange(y0, y1, dtype=np.float32) - cy) / radius  # [bh]
    d2 = dy[:, None] ** 2 + dx[None, :] ** 2  # [bh, bw]
    inside = d2 <= 1.0
    n_cam = np.stack([np.broadcast_to(dx[None, :], d2.shape), np.broadcast_to(dy[:, None], d2.shape),
                      -np.sqrt(np.clip(1.0 - d2, 0.0, None))], axis=-1)  # [bh, bw, 3], faces the camera
    n_head = n_cam @ rotation.astype(np.float32)  # row-vector form of R^T n_cam
    colour = np.clip(np.rint((n_head + 1.0) * 127.5), 0, 255).astype(np.uint8)
    box = canvas[y0:y1, x0:x1]
    box[inside] = colour[inside]


def render_sphere(rotation_ypr, center, radius: float, size: tuple[int, int]) -> np.ndarray:
    """One head sphere on black: rotation_ypr (yaw, pitch, roll) degrees, center (x, y) pixels,
    radius pixels, size (H, W). Returns uint8 [H, W, 3] RGB."""
    canvas = np.zeros((int(size[0]), int(size[1]), 3), np.uint8)
    _draw_sphere(canvas, euler_to_matrix(np.asarray(rotation_ypr, np.float64)), center, float(radius))
    return canvas


def render_head_spheres(track: PoseTrack, size: tuple[int, int], radius_scale: float = 1.0,
                        reference_radius: float | None = None, min_conf: float = 0.0) -> np.ndarray:
    """Head-sphere maps for every frame of a track, uint8 [T, H, W, 3] at ``size`` = (H, W).

    Track pixels are scaled from ``track.image_size`` to ``size``. ``reference_radius`` (in track
    pixels; a number or a one-element array) rescales the radii so that their median equals it,
    keeping the driver's relative size changes while matching the reference's head size; a
    non-positive value (no head found in the reference) is ignored. Frames whose head_conf <
    min_conf, or with no head (radius 0), stay black.
    """
    if track.head_rotation is None or track.head_center is None or track.head_radius is None:
        raise ValueError("render_head_spheres: the track has no head pose; run "
                         "head_pose.estimate_head_pose(track) first")
    out_h, out_w = int(size[0]), int(size[1])
    sy, sx = out_h / track.image_size[0], out_w / track.image_size[1]
    radius = track.head_radius.astype(np.float64) * radius_scale
    if reference_radius is not None:  # a number or a one-frame track's head_radius array
        target = float(np.ravel(np.asarray(reference_radius, np.float64))[0])
        measured = track.head_radius[track.head_radius > 0]
        if measured.size and np.isfinite(target) and target > 0:  # 0: no head in the reference
            radius = radius * (target / float(np.median(measured)))
    radius = radius * np.sqrt(sx * sy)
    centre = track.head_center.astype(np.float64) * (sx, sy)
    rotations = euler_to_matrix(track.head_rotation.astype(np.float64))
    conf = track.head_conf if track.head_conf is not None else np.ones(track.num_frames)
    out = np.zeros((track.num_frames, out_h, out_w, 3), np.uint8)
    for t in range(track.num_frames):
        if conf[t] >= min_conf:
            _draw_sphere(out[t], rotations[t], centre[t], radius[t])
    return out


def read_orientation(image: np.ndarray, center=None, radius: float | None = None) -> tuple[float, float, float]:
    """Reads (yaw, pitch, roll) in degrees back from a rendered head sphere.

    ``image`` is uint8 [H, W, 3] (or float in 0..1). Without center/radius the sphere is found as
    the non-black region (centroid and area-equivalent radius).
    """
    img = np.asarray(image)
    if img.ndim != 3 or img.shape[-1] != 3:
        raise ValueError(f"read_orientation: image must be [H, W, 3], got shape {img.shape}")
    if img.dtype != np.uint8:
        img = np.clip(np.rint(img.astype(np.float64) * 255.0), 0, 255).astype(np.uint8)
    lit = img.astype(np.int32).sum(-1) > _BACKGROUND_SUM
    if center is None or radius is None:
        ys, xs = np.nonzero(lit)
        if xs.size < 10:
            raise ValueError("read_orientation: no sphere found in the image (it is black)")
        center = (xs.mean(), ys.mean()) if center is None else center
        radius = float(np.sqrt(xs.size / np.pi)) if radius is None else radius
    h, w = lit.shape
    ys, xs = np.mgrid[0:h, 0:w]
    dx, dy = (xs - center[0]) / radius, (ys - center[1]) / radius
    use = lit & (dx ** 2 + dy ** 2 < 0.85 ** 2)  # the rim is aliased
    if use.sum() < 10:
        raise ValueError("read_orientation: too few sphere pixels around the given center/radius")
    n_cam = np.stack([dx[use], dy[use], -np.sqrt(1 - dx[use] ** 2 - dy[use] ** 2)], -1)  # [N, 3]
    n_head = img[use].astype(np.float64) / 127.5 - 1.0  # [N, 3]
    # Kabsch: R minimising sum |R n_head - n_cam|^2.
    u, _, vt = np.linalg.svd(n_head.T @ n_cam)
    d = np.sign(np.linalg.det(vt.T @ u.T))
    rot = vt.T @ np.diag([1.0, 1.0, d]) @ u.T
    yaw, pitch, roll = matrix_to_euler(rot)
    return float(yaw), float(pitch), float(roll)
