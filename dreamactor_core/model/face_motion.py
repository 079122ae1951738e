"""Implicit face-motion encoder (PD-FGC-like): 224x224 face crops -> face-motion tokens.

Each frame's crop goes through a small residual CNN (stride-2 stages, global average pooling)
and an MLP head that emits N tokens of width D; the tokens reach the DiT through its face
cross-attention. Identity should not leak into the tokens: the encoder sees only a tight face
crop, and training (stage 2) rewards it for carrying expression and lip shape only.

Optional temporal smoothing: a depthwise 1-D convolution over T on the token sequence
(kernel `temporal_kernel`, replicate padding at the clip ends), initialised to the light
smoothing kernel [1, 2, 1] / 4 (for kernel 3) and trained with the rest. It damps per-frame
jitter from crop alignment without blurring mouth motion over more than a frame or two;
temporal_kernel = 1 turns it off, making every frame's tokens depend on that frame only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn


@dataclass(frozen=True)
class FaceMotionConfig:
    token_dim: int = 512  # D: width of every motion token
    tokens_per_frame: int = 32  # N: motion tokens per video frame (DiT config default)
    image_size: int = 224  # crops are image_size x image_size
    channels: tuple[int, ...] = (32, 64, 128, 256, 256)  # stem, then one stride-2 stage each
    hidden_dim: int = 1024  # MLP head width
    temporal_kernel: int = 3  # odd; 1 disables temporal smoothing
    chunk_frames: int = 32  # frames encoded per CNN pass (bounds activation memory)

    def __post_init__(self):
        if self.token_dim < 1 or self.tokens_per_frame < 1:
            raise ValueError("token_dim and tokens_per_frame must be >= 1")
        if self.temporal_kernel < 1 or self.temporal_kernel % 2 == 0:
            raise ValueError(f"temporal_kernel must be odd and >= 1, got {self.temporal_kernel}")
        if self.chunk_frames < 1:
            raise ValueError(f"chunk_frames must be >= 1, got {self.chunk_frames}")


class ResidualBlock(nn.Module):
    """Pre-norm residual block; stride 2 halves H and W and projects the skip path."""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1):
        super().__init__()
        self.norm1 = nn.GroupNorm(math.gcd(8, in_ch), in_ch)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1)
        self.norm2 = nn.GroupNorm(math.gcd(8, out_ch), out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self.skip = (nn.Conv2d(in_ch, out_ch, 1, stride=stride)
                     if stride != 1 or in_ch != out_ch else nn.Identity())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return self.skip(x) + h


class TemporalSmoothing(nn.Module):
    """Depthwise 1-D conv over time on [B, T, C], initialised to a binomial low-pass."""

    def __init__(self, channels: int, kernel: int):
        super().__init__()
        self.kernel = kernel
        self.conv = nn.Conv1d(channels, channels, kernel, groups=channels, bias=False)
        binomial = torch.tensor([float(math.comb(kernel - 1, i)) for i in range(kernel)])
        with torch.no_grad():
            self.conv.weight.copy_((binomial / binomial.sum()).expand(channels, 1, kernel))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = rearrange(x, "b t c -> b c t")
        h = F.pad(h, (self.kernel // 2, self.kernel // 2), mode="replicate")
        return rearrange(self.conv(h), "b c t -> b t c")


def check_face_crops(face_crops: torch.Tensor, image_size: int = 224) -> None:
    expected = f"[B, T, 3, {image_size}, {image_size}] float in 0..1"
    if not isinstance(face_crops, torch.Tensor):
        raise ValueError(f"face_crops must be a tensor {expected}, got {type(face_crops).__name__}")
    size = (image_size, image_size)
    if face_crops.ndim != 5 or face_crops.shape[2] != 3 or face_crops.shape[3:] != size:
        raise ValueError(f"face_crops must have shape {expected}, got {tuple(face_crops.shape)}; "
                         f"crop and resize faces to {image_size}x{image_size} RGB first")
    if face_crops.shape[0] == 0 or face_crops.shape[1] == 0:
        raise ValueError(f"face_crops is empty ({tuple(face_crops.shape)}); it needs >= 1 frame")
    if not face_crops.is_floating_point():
        raise ValueError(f"face_crops must be a float tensor in 0..1, got {face_crops.dtype}")
    lo, hi = face_crops.aminmax()
    if not torch.isfinite(lo) or not torch.isfinite(hi) or lo < -1e-3 or hi > 1 + 1e-3:
        raise ValueError(f"face_crops values must be finite and in 0..1, got min {lo.item():.3g}, "
                         f"max {hi.item():.3g}; divide 8-bit images by 255")


class FaceMotionEncoder(nn.Module):
    """face crops [B, T, 3, S, S] in 0..1 -> motion tokens [B, T, N, D]."""

    def __init__(self, config: FaceMotionConfig = FaceMotionConfig()):
        super().__init__()
        self.config = config
        ch = config.channels
        self.stem = nn.Conv2d(3, ch[0], 3, stride=2, padding=1)  # S -> S/2
        self.stages = nn.Sequential(*[ResidualBlock(c_in, c_out, stride=2)
                                      for c_in, c_out in zip(ch[:-1], ch[1:])])
        self.out_norm = nn.GroupNorm(math.gcd(8, ch[-1]), ch[-1])
        n_out = config.tokens_per_frame * config.token_dim
        self.head = nn.Sequential(nn.Linear(ch[-1], config.hidden_dim), nn.SiLU(),
                                  nn.Linear(config.hidden_dim, n_out))
        self.smooth = (TemporalSmoothing(n_out, config.temporal_kernel)
                       if config.temporal_kernel > 1 else None)
        self.token_norm = nn.LayerNorm(config.token_dim)

    def encode_frames(self, frames: torch.Tensor) -> torch.Tensor:
        """[F, 3, S, S] in 0..1 -> one feature vector per frame [F, N*D], no temporal mixing."""
        x = self.stem(frames * 2 - 1)  # [F, C0, S/2, S/2]
        x = self.stages(x)  # [F, C, S/2^k, S/2^k]
        x = F.silu(self.out_norm(x)).mean(dim=(2, 3))  # [F, C]
        return self.head(x)  # [F, N*D]

    def forward(self, face_crops: torch.Tensor) -> torch.Tensor:
        check_face_crops(face_crops, self.config.image_size)
        b, t = face_crops.shape[:2]
        frames = rearrange(face_crops, "b t c h w -> (b t) c h w")
        weight = self.stem.weight  # chunks move to the model one at a time (crops may stay on CPU)
        feats = torch.cat([self.encode_frames(chunk.to(device=weight.device, dtype=weight.dtype))
                           for chunk in frames.split(self.config.chunk_frames)])  # [B*T, N*D]
        feats = rearrange(feats, "(b t) c -> b t c", b=b, t=t)
        if self.smooth is not None:
            feats = self.smooth(feats)  # [B, T, N*D]
        tokens = rearrange(feats, "b t (n d) -> b t n d", n=self.config.tokens_per_frame)
        return self.token_norm(tokens)  # [B, T, N, D]
