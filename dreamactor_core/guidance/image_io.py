"""Normalising user images (any dtype, greyscale, RGBA, tiny) to what detectors expect."""

from __future__ import annotations

import numpy as np

MIN_IMAGE_SIDE = 16


def to_rgb_uint8(image, name: str = "image") -> np.ndarray:
    """[H, W], [H, W, 1], [H, W, 3] or [H, W, 4] image (uint8, or float in 0..1; numpy or torch)
    -> contiguous uint8 [H, W, 3]. Alpha is composited over black, greyscale is repeated."""
    if hasattr(image, "detach"):  # a torch tensor, without importing torch here
        image = image.detach().cpu().numpy()
    a = np.asarray(image)
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim != 3 or a.shape[2] not in (1, 3, 4):
        raise ValueError(
            f"{name} has shape {tuple(np.shape(image))}: expected [H, W, C] with C = 1, 3 or 4")
    if min(a.shape[:2]) < MIN_IMAGE_SIDE:
        raise ValueError(
            f"{name} is {a.shape[1]}x{a.shape[0]} pixels: images need at least "
            f"{MIN_IMAGE_SIDE} px per side (64 px or more for reliable detection)")
    if a.dtype != np.uint8:
        a = a.astype(np.float32)
        if not np.isfinite(a).all():
            raise ValueError(f"{name} contains NaN or infinite values")
        a = np.clip(a * 255.0 + 0.5, 0, 255).astype(np.uint8)
    if a.shape[2] == 4:
        alpha = a[:, :, 3:4].astype(np.uint16)
        a = (a[:, :, :3] * alpha // 255).astype(np.uint8)
    elif a.shape[2] == 1:
        a = np.repeat(a, 3, axis=2)
    return np.ascontiguousarray(a)


def iter_video_frames(frames):
    """Yields (index, uint8 [H, W, 3]) for any iterable of frames, refusing a size change."""
    size = None
    for i, frame in enumerate(frames):
        rgb = to_rgb_uint8(frame, name=f"frame {i}")
        if size is None:
            size = rgb.shape[:2]
        elif rgb.shape[:2] != size:
            raise ValueError(f"frame {i} is {rgb.shape[1]}x{rgb.shape[0]} but frame 0 is "
                             f"{size[1]}x{size[0]}: all frames of a video must share one size")
        yield i, rgb
