"""Contact sheet of an evaluation: one row per clip,

    reference | guidance (skeleton over head sphere) | generated at k times | truth at k times

tiles upscaled (nearest) so small frames stay readable, a header row of column labels, written
as PNG atomically (temporary file in the same folder, then os.replace)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import cv2
import numpy as np

from .reenactment import ClipResult

GAP = 2  # pixels between tiles
HEADER = 14  # label row height in pixels


def sample_times(num_frames: int, count: int) -> list[int]:
    """``count`` frame indices spread evenly from the first to the last frame."""
    count = max(1, min(count, num_frames))
    return sorted({int(round(v)) for v in np.linspace(0, num_frames - 1, count)})


def composite_guidance(maps: np.ndarray) -> np.ndarray:
    """[H, W, 6] (skeleton RGB, sphere RGB) 0..1 -> [H, W, 3]: skeleton drawn over the sphere."""
    skeleton, sphere = maps[..., :3], maps[..., 3:]
    on_skeleton = skeleton.max(axis=-1, keepdims=True) > 0.02
    return np.where(on_skeleton, skeleton, sphere)


def _u8(image: np.ndarray, scale: int) -> np.ndarray:
    tile = (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8)
    return cv2.resize(tile, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)


def build_sheet(results: list[ClipResult], variant: str = "video", times: int = 3,
                scale: int = 2) -> np.ndarray:
    """-> uint8 RGB [rows, cols, 3] contact sheet of ``variant``'s generated frames."""
    if not results:
        raise ValueError("build_sheet: no clip results to draw")
    num_frames = results[0].truth.shape[0]
    picks = sample_times(num_frames, times)
    labels = ["reference", "guidance"] + [f"gen t={t}" for t in picks]
    labels += [f"gt t={t}" for t in picks]
    rows = []
    for r in results:
        mid = r.guidance.shape[0] // 2
        tiles = [r.reference, composite_guidance(r.guidance[mid])]
        tiles += [r.videos[variant][t] for t in picks] + [r.truth[t] for t in picks]
        tiles = [_u8(t, scale) for t in tiles]
        rows.append(_hstack(tiles))
    tile_w = results[0].reference.shape[1] * scale
    header = np.full((HEADER, rows[0].shape[1], 3), 255, np.uint8)
    for k, text in enumerate(labels):
        cv2.putText(header, text, (k * (tile_w + GAP) + 2, HEADER - 4), cv2.FONT_HERSHEY_PLAIN,
                    0.7, (0, 0, 0), 1, cv2.LINE_AA)
    return _vstack([header, *rows])


def _hstack(tiles: list[np.ndarray]) -> np.ndarray:
    gap = np.full((tiles[0].shape[0], GAP, 3), 255, np.uint8)
    out = [tiles[0]]
    for tile in tiles[1:]:
        out += [gap, tile]
    return np.concatenate(out, axis=1)


def _vstack(rows: list[np.ndarray]) -> np.ndarray:
    gap = np.full((GAP, rows[0].shape[1], 3), 255, np.uint8)
    out = [rows[0]]
    for row in rows[1:]:
        out += [gap, row]
    return np.concatenate(out, axis=0)


def write_png(path: str | os.PathLike, image: np.ndarray) -> Path:
    """Writes an RGB uint8 image as PNG atomically."""
    path = Path(path)
    ok, data = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    if not ok:
        raise ValueError(f"could not encode the contact sheet for {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.tobytes())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
