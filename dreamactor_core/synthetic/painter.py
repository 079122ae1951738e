"""Low-level drawing: an RGB float canvas with a coverage mask, analytic anti-aliased capsules,
polygons, cloth patterns in part coordinates, and procedural backgrounds.

Coordinates are canvas pixels with pixel centres on integers (OpenCV's convention). Every shape
is drawn inside its own bounding box only, so the cost follows the part's size, not the image's.
"""

from __future__ import annotations

import cv2
import numpy as np

from .character import CharacterSpec

_SHIFT = 4  # cv2 fixed-point sub-pixel bits
_ONE = 1 << _SHIFT


class Painter:
    def __init__(self, background: np.ndarray):
        self.canvas = background.astype(np.float32)  # [H, W, 3] 0..255
        self.mask = np.zeros(background.shape[:2], np.float32)  # [H, W] 0..1
        self.height, self.width = background.shape[:2]

    def box(self, lo: np.ndarray, hi: np.ndarray) -> tuple[int, int, int, int] | None:
        """Integer (y0, y1, x0, x1) covering [lo, hi] (x, y), clipped; None when off-canvas."""
        x0, y0 = max(int(np.floor(lo[0])) - 1, 0), max(int(np.floor(lo[1])) - 1, 0)
        x1, y1 = min(int(np.ceil(hi[0])) + 2, self.width), min(int(np.ceil(hi[1])) + 2, self.height)
        return None if x1 <= x0 or y1 <= y0 else (y0, y1, x0, x1)

    @staticmethod
    def grid(box) -> tuple[np.ndarray, np.ndarray]:
        y0, y1, x0, x1 = box
        return np.mgrid[y0:y1, x0:x1].astype(np.float32)[::-1]  # (x, y), each [h, w]

    def blend(self, box, alpha: np.ndarray, color: np.ndarray) -> None:
        """Composites ``color`` ([h, w, 3] or [3]) with coverage ``alpha`` [h, w] over the canvas."""
        y0, y1, x0, x1 = box
        region = self.canvas[y0:y1, x0:x1]
        a = alpha[..., None]
        region += a * (np.asarray(color, np.float32) - region)
        np.maximum(self.mask[y0:y1, x0:x1], alpha, out=self.mask[y0:y1, x0:x1])

    def polygon_alpha(self, box, points: np.ndarray) -> np.ndarray:
        """Anti-aliased coverage [h, w] of a filled polygon (points [N, 2] canvas pixels)."""
        y0, y1, x0, x1 = box
        local = np.zeros((y1 - y0, x1 - x0), np.uint8)
        pts = np.round((points - (x0, y0)) * _ONE).astype(np.int32)
        cv2.fillPoly(local, [pts], 255, cv2.LINE_AA, _SHIFT)
        return local.astype(np.float32) * (1.0 / 255.0)

    def polyline_alpha(self, box, lines: list[np.ndarray], thickness: int) -> np.ndarray:
        y0, y1, x0, x1 = box
        local = np.zeros((y1 - y0, x1 - x0), np.uint8)
        pts = [np.round((p - (x0, y0)) * _ONE).astype(np.int32) for p in lines]
        cv2.polylines(local, pts, False, 255, max(int(thickness), 1), cv2.LINE_AA, _SHIFT)
        return local.astype(np.float32) * (1.0 / 255.0)


def capsule_coords(xs: np.ndarray, ys: np.ndarray, p0: np.ndarray, p1: np.ndarray,
                   r0: float, r1: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """For a tapered capsule p0 -> p1: (alpha, s, d, r) per pixel, where s runs along the axis
    from p0, d across it (pixels) and r is the local radius."""
    axis = p1 - p0
    length = float(np.hypot(*axis))
    u = axis / length if length > 1e-6 else np.array([0.0, 1.0])
    dx, dy = xs - p0[0], ys - p0[1]
    s = dx * u[0] + dy * u[1]
    d = dy * u[0] - dx * u[1]
    t = np.clip(s / max(length, 1e-6), 0.0, 1.0)
    r = r0 + (r1 - r0) * t
    dist = np.sqrt((s - t * length) ** 2 + d ** 2)
    return np.clip(r - dist + 0.5, 0.0, 1.0), s, d, r


def pattern_mix(kind: str, s: np.ndarray, d: np.ndarray, period: float) -> np.ndarray | None:
    """Where the second colour of a cloth pattern shows (0..1) at part coordinates (s, d) in
    pixels; None for solid cloth. Stripes run across the part's axis."""
    if kind == "solid" or period <= 0:
        return None
    a, b = s / period, d / period
    if kind == "stripes":
        return (np.mod(a, 1.0) < 0.5).astype(np.float32)
    if kind == "checks":
        return (np.mod(np.floor(a) + np.floor(b), 2.0)).astype(np.float32)
    if kind == "dots":
        fa, fb = np.mod(a, 1.0) - 0.5, np.mod(b, 1.0) - 0.5
        return (fa * fa + fb * fb < 0.09).astype(np.float32)
    raise ValueError(f"unknown cloth pattern {kind!r}; expected solid, stripes, checks or dots")


def cloth_color(base, second, kind: str, s: np.ndarray, d: np.ndarray, period: float,
                shade: np.ndarray) -> np.ndarray:
    """Per-pixel RGB [h, w, 3] of patterned, shaded cloth."""
    base = np.asarray(base, np.float32)
    mix = pattern_mix(kind, s, d, period)
    if mix is None:
        return shade[..., None] * base
    color = base + mix[..., None] * (np.asarray(second, np.float32) - base)
    return shade[..., None] * color


def render_background(spec: CharacterSpec, size: tuple[int, int]) -> np.ndarray:
    """The character's background at (height, width) -> uint8 [H, W, 3]; depends only on the
    spec and the size's aspect, so every frame and the reference share it."""
    h, w = size
    rng = np.random.default_rng(spec.background_seed)
    c0, c1, c2 = (np.asarray(c, np.float32) for c in spec.background_colors)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    xs, ys = (xs + 0.5) / w, (ys + 0.5) / h
    angle = rng.uniform(0, 2 * np.pi)
    ramp = np.clip(0.5 + (xs - 0.5) * np.cos(angle) + (ys - 0.5) * np.sin(angle), 0, 1)
    if spec.background == "solid":
        image = np.broadcast_to(c0, (h, w, 3)).copy()
    else:
        image = c0 + ramp[..., None] * (c1 - c0)
    if spec.background == "texture":
        coarse = rng.uniform(0, 1, (rng.integers(3, 7), rng.integers(3, 7))).astype(np.float32)
        noise = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)
        image = image + (noise[..., None] - 0.5) * 0.6 * (c2 - c0)
    elif spec.background == "shapes":
        scale = float(min(h, w))
        for _ in range(rng.integers(3, 8)):
            color = (c2 if rng.random() < 0.5 else c1) * rng.uniform(0.8, 1.15)
            cx, cy, r = rng.uniform(0, 1) * w, rng.uniform(0, 1) * h, rng.uniform(0.06, 0.25) * scale
            kind = rng.integers(3)
            if kind == 0:
                inside = (xs * w - cx) ** 2 + (ys * h - cy) ** 2 < r * r
            elif kind == 1:
                inside = (np.abs(xs * w - cx) < r) & (np.abs(ys * h - cy) < r * rng.uniform(0.4, 1.5))
            else:
                inside = np.abs(np.mod((xs * w + ys * h) / (0.5 * r), 2.0) - 1.0) < 0.25
                inside &= (np.abs(xs * w - cx) < 2 * r) & (np.abs(ys * h - cy) < 2 * r)
            image = np.where(inside[..., None], 0.6 * image + 0.4 * color, image)
    return np.clip(image, 0, 255).astype(np.uint8)
