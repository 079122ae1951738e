"""Small adapters between ComfyUI's runtime and the core: progress, cancel, devices, images."""

from __future__ import annotations

import numpy as np
import torch

import comfy.model_management as mm
import comfy.utils


class Progress:
    """A ComfyUI progress bar whose ``step`` also honours the user's cancel button.

    Pass ``progress.step`` to core functions as their per-item callback: cancelling raises
    ComfyUI's InterruptProcessingException inside the loop, so work stops within one item.
    """

    def __init__(self, total: int):
        self.total = max(1, int(total))
        self._bar = comfy.utils.ProgressBar(self.total)
        self.done = 0

    def step(self, *_args) -> None:
        mm.throw_exception_if_processing_interrupted()
        self.done += 1
        self._bar.update_absolute(min(self.done, self.total), self.total)


def image_batch_to_uint8(images: torch.Tensor, name: str) -> np.ndarray:
    """ComfyUI IMAGE [B, H, W, C] float 0..1 -> uint8 [B, H, W, 3] (greyscale/RGBA handled)."""
    if not isinstance(images, torch.Tensor) or images.ndim != 4:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"{name} must be an IMAGE batch [B, H, W, C]; got {shape}")
    if images.shape[0] == 0:
        raise ValueError(f"{name} is an empty batch: connect at least one frame")
    if images.shape[-1] not in (1, 3, 4):
        raise ValueError(f"{name} has {images.shape[-1]} channels: expected 1 (grey), 3 (RGB) or 4 (RGBA)")
    a = images.detach().to("cpu", torch.float32)
    if a.shape[-1] == 4:
        a = a[..., :3] * a[..., 3:4]
    elif a.shape[-1] == 1:
        a = a.expand(-1, -1, -1, 3)
    return (a.clamp(0, 1) * 255 + 0.5).to(torch.uint8).numpy()


def uint8_to_image_batch(frames: np.ndarray) -> torch.Tensor:
    """uint8 [B, H, W, 3] -> ComfyUI IMAGE on the intermediate device."""
    t = torch.from_numpy(np.ascontiguousarray(frames)).to(torch.float32).div_(255.0)
    return t.to(mm.intermediate_device())


class frames_uint8:
    """Lazy per-frame uint8 view of an IMAGE batch, so a long video is never copied whole."""

    def __init__(self, images: torch.Tensor, name: str):
        if not isinstance(images, torch.Tensor) or images.ndim != 4:
            image_batch_to_uint8(images, name)  # raises the right message
        if images.shape[0] == 0:
            raise ValueError(f"{name} is an empty batch: connect at least one frame")
        self.images, self.name = images, name

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, i: int) -> np.ndarray:
        if not -len(self) <= i < len(self):
            raise IndexError(i)
        return image_batch_to_uint8(self.images[i:i + 1], self.name)[0]

    def __iter__(self):
        return (self[i] for i in range(len(self)))
