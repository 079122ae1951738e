"""Drawing the puppet's head: a shaded sphere whose hair, eyes and mouth live on its surface.

Every head pixel is lifted onto the sphere's visible hemisphere and rotated into the head's own
frame, so features move, foreshorten and disappear behind the head exactly as the 3D head
rotation says (the far eye hides at large yaw). The nose is drawn on top at its projected 3D
tip, which sticks out of the silhouette in profile.
"""

from __future__ import annotations

import numpy as np

from .character import CharacterSpec
from .kinematics import FACE_POINTS
from .painter import Painter, capsule_coords

_LIGHT = np.array([-0.35, -0.45, -0.82]) / np.linalg.norm([-0.35, -0.45, -0.82])
_UP = np.array([0.0, -1.0, 0.0])
_EYE_W, _EYE_H = 0.2, 0.16  # eye half-axes on the unit sphere
_WHITE = np.array([245.0, 245.0, 240.0], np.float32)
_DARK = np.array([25.0, 18.0, 18.0], np.float32)


def _tangent_frame(direction: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(right, down) unit vectors tangent to the sphere at ``direction`` (head-local)."""
    right = np.cross(_UP, direction)
    right /= np.linalg.norm(right)
    return right, -np.cross(direction, right)


_FEATURE_FRAMES = {name: _tangent_frame(FACE_POINTS[name]) for name in ("r_eye", "l_eye", "mouth")}


def _hair_mask(style: str, q: list[np.ndarray]) -> np.ndarray | None:
    x, y, z = q
    wavy = 0.07 * np.sin(9.0 * x)
    if style == "bald":
        return None
    if style == "mohawk":
        return (np.abs(x) < 0.3) & (y < -0.15 + wavy)
    line = {"short": -0.45, "long": -0.42, "bob": -0.3, "bun": -0.5}[style]
    back = {"short": 0.3, "long": 0.1, "bob": 0.0, "bun": 0.2}[style]
    return (y < line + wavy) | ((z > back) & (y < 0.35))


def back_hair_outline(style: str, rotation: np.ndarray) -> np.ndarray | None:
    """Head-local outline of hair hanging behind the head, rotated to the camera frame, [N, 3]
    in head radii; None for styles without it."""
    if style not in ("long", "bob", "bun"):
        return None
    if style == "bun":
        angle = np.linspace(0, 2 * np.pi, 16, endpoint=False)
        pts = np.stack([0.42 * np.cos(angle), -0.95 + 0.42 * np.sin(angle), np.full(16, 0.5)], -1)
    else:
        bottom = 2.1 if style == "long" else 0.85
        arc = np.linspace(np.pi, 2 * np.pi, 12)
        top = np.stack([1.08 * np.cos(arc), 1.08 * np.sin(arc)], -1)
        pts2 = np.concatenate([top, [[1.1, bottom], [0.7, bottom + 0.15], [-0.7, bottom + 0.15],
                                     [-1.1, bottom]]])
        pts = np.concatenate([pts2, np.full((len(pts2), 1), 0.35)], -1)
    return pts @ rotation.T


def paint_back_hair(painter: Painter, spec: CharacterSpec, center: np.ndarray, radius: float,
                    rotation: np.ndarray) -> None:
    """Hair hanging behind the head (long, bob) or a bun; drawn behind the torso and neck."""
    outline = back_hair_outline(spec.hair_style, rotation)
    if outline is None:
        return
    pts = center + outline[:, :2] * radius
    box = painter.box(pts.min(0), pts.max(0))
    if box is not None:
        painter.blend(box, painter.polygon_alpha(box, pts), 0.85 * np.asarray(spec.hair_color, np.float32))


def paint_head(painter: Painter, spec: CharacterSpec, center: np.ndarray, radius: float,
               rotation: np.ndarray, nose: np.ndarray, ears: np.ndarray,
               blink: float, mouth_open: float, mouth_width: float) -> None:
    """Draws the ears, the head sphere with its hair and face, and the nose.

    center, nose: [2] canvas px; radius: px; rotation: [3, 3] camera-frame head rotation;
    ears: [2, 2] canvas px (right, left).
    """
    skin = np.asarray(spec.skin, np.float32)
    hair = np.asarray(spec.hair_color, np.float32)
    for k, name in enumerate(("r_ear", "l_ear")):
        if (rotation @ FACE_POINTS[name])[2] < 0.6:
            r = 0.22 * radius
            box = painter.box(ears[k] - r, ears[k] + r)
            if box is not None:
                xs, ys = painter.grid(box)
                alpha = capsule_coords(xs, ys, ears[k], ears[k], r, r)[0]
                painter.blend(box, alpha, 0.88 * skin)

    box = painter.box(center - radius, center + radius)
    if box is None:
        return
    xs, ys = painter.grid(box)
    px, py = (xs - center[0]) / radius, (ys - center[1]) / radius
    rho2 = px * px + py * py
    alpha = np.clip((1.0 - np.sqrt(rho2)) * radius + 0.5, 0.0, 1.0)
    pz = -np.sqrt(np.clip(1.0 - rho2, 0.0, 1.0))
    # Camera-frame surface point -> head-local q = R^T p.
    q = [rotation[0, i] * px + rotation[1, i] * py + rotation[2, i] * pz for i in range(3)]
    shade = (0.68 + 0.32 * np.clip(px * _LIGHT[0] + py * _LIGHT[1] + pz * _LIGHT[2], 0, 1))[..., None]
    color = np.broadcast_to(skin, shade.shape[:2] + (3,)).copy()
    hair_mask = _hair_mask(spec.hair_style, q)
    if hair_mask is not None:
        color[hair_mask] = hair

    for name in ("r_eye", "l_eye"):
        e = FACE_POINTS[name]
        right, down = _FEATURE_FRAMES[name]
        dq = [q[i] - e[i] for i in range(3)]
        a = (dq[0] * right[0] + dq[1] * right[1] + dq[2] * right[2]) / _EYE_W
        b = (dq[0] * down[0] + dq[1] * down[1] + dq[2] * down[2]) / _EYE_H
        front = (q[0] * e[0] + q[1] * e[1] + q[2] * e[2]) > 0.6
        r2 = a * a + b * b
        lid = -1.0 + 2.0 * float(np.clip(blink, 0, 1))
        opened = front & (r2 < 1.0) & (b > lid)
        color[opened] = _WHITE
        iris = opened & (r2 < 0.5)
        color[iris] = spec.eye_color
        color[opened & (r2 < 0.09)] = _DARK
        color[front & (r2 < 1.6) & (b > lid - 0.35) & (b < lid + 0.3) & (b < 1.25)] = _DARK

    m = FACE_POINTS["mouth"]
    right, down = _FEATURE_FRAMES["mouth"]
    dq = [q[i] - m[i] for i in range(3)]
    a = (dq[0] * right[0] + dq[1] * right[1] + dq[2] * right[2]) / (0.12 + 0.16 * mouth_width)
    bq = dq[0] * down[0] + dq[1] * down[1] + dq[2] * down[2]
    inner_h = 0.03 + 0.2 * mouth_open
    front = (q[0] * m[0] + q[1] * m[1] + q[2] * m[2]) > 0.6
    inner = (a * a + (bq / inner_h) ** 2 < 1.0) & front
    lips = (a * a * 0.8 + (bq / (inner_h + 0.06)) ** 2 < 1.0) & front
    color[lips] = spec.lip_color
    color[inner] = (70, 18, 28)
    if mouth_open > 0.25:
        color[inner & (bq < -0.45 * inner_h)] = _WHITE
    painter.blend(box, alpha, color * shade)

    if (rotation @ FACE_POINTS["nose"])[2] < 0.2 * np.linalg.norm(FACE_POINTS["nose"]):
        r = 0.14 * radius
        box = painter.box(nose - r, nose + r)
        if box is not None:
            xs, ys = painter.grid(box)
            alpha = capsule_coords(xs, ys, nose, nose, r, r)[0]
            painter.blend(box, alpha, 0.72 * skin)
