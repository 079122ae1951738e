"""Causal 3D convolution building blocks shared by the VAE and the pose encoder.

Time is causal everywhere: convolutions pad only the past, normalisation is per position
(channel RMS norm, no statistics over time). Every module takes an optional ``cache`` dict so a
video can be processed in temporal chunks: each causal conv stores the input frames the next
chunk still needs, so chunked output equals whole-video output and memory is bounded by the chunk.

Temporal resampling keeps the first frame alone (CogVideoX / Wan2.1 VAE):
  down x2: T = 1 + 2m frames -> 1 + m   (output j sees frames 2j-2, 2j-1, 2j)
  up   x2: T frames          -> 2T - 1  (the first latent frame yields one frame, others two)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

# module -> what it needs from the previous chunk (tensor of frames, or a "seen" marker)
CausalCache = dict


def _triple(k: int | tuple[int, int, int]) -> tuple[int, int, int]:
    return (k, k, k) if isinstance(k, int) else tuple(k)


class CausalConv3d(nn.Module):
    """Conv3d with zero padding on the past only in time ("same" padding in space)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size=3,
                 time_stride: int = 1, space_stride: int = 1):
        super().__init__()
        kt, kh, kw = _triple(kernel_size)
        self.kernel_t = kt
        self.time_stride = time_stride
        self.conv = nn.Conv3d(in_channels, out_channels, (kt, kh, kw),
                              stride=(time_stride, space_stride, space_stride),
                              padding=(0, kh // 2, kw // 2))

    def forward(self, x: torch.Tensor, cache: CausalCache | None = None) -> torch.Tensor:
        # x: [B, C, T, H, W]
        past = cache.get(self) if cache is not None else None
        if past is None:
            b, c, _, h, w = x.shape
            past = x.new_zeros(b, c, self.kernel_t - 1, h, w)
        x = torch.cat([past, x], dim=2)
        n_out = (x.shape[2] - self.kernel_t) // self.time_stride + 1
        if n_out < 1:
            raise ValueError(f"temporal chunk too short for a causal conv (kernel {self.kernel_t}, "
                             f"stride {self.time_stride}); use longer chunks")
        if cache is not None:
            # The next output window starts at padded index n_out * stride.
            cache[self] = x[:, :, n_out * self.time_stride:]
        return self.conv(x)  # [B, C_out, n_out, H', W']


class ChannelRMSNorm(nn.Module):
    """Per-position RMS norm over channels with a learned gain and bias (Wan2.1 VAE style)."""

    def __init__(self, channels: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(channels, 1, 1, 1))
        self.bias = nn.Parameter(torch.zeros(channels, 1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: [B, C, T, H, W] (or [N, C, H, W]: the frame VAE's per-frame layers)
        rms = x.pow(2).mean(dim=1, keepdim=True).add(self.eps).rsqrt()
        shape = (1, -1) + (1,) * (x.ndim - 2)
        return x * rms * self.weight.view(shape) + self.bias.view(shape)


class ResBlock3d(nn.Module):
    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.norm1 = ChannelRMSNorm(in_channels)
        self.conv1 = CausalConv3d(in_channels, out_channels, 3)
        self.norm2 = ChannelRMSNorm(out_channels)
        self.conv2 = CausalConv3d(out_channels, out_channels, 3)
        self.skip = (CausalConv3d(in_channels, out_channels, 1)
                     if in_channels != out_channels else None)

    def forward(self, x: torch.Tensor, cache: CausalCache | None = None) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)), cache)
        h = self.conv2(F.silu(self.norm2(h)), cache)
        skip = x if self.skip is None else self.skip(x, cache)
        return skip + h


class Downsample3d(nn.Module):
    """Halves H and W (strided 1x3x3 conv) and/or time, causally (first frame alone)."""

    def __init__(self, channels: int, temporal: bool, spatial: bool = True):
        super().__init__()
        self.spatial = (CausalConv3d(channels, channels, (1, 3, 3), space_stride=2)
                        if spatial else None)
        self.temporal = CausalConv3d(channels, channels, (3, 1, 1), time_stride=2) if temporal else None

    def forward(self, x: torch.Tensor, cache: CausalCache | None = None) -> torch.Tensor:
        if self.spatial is not None:
            x = self.spatial(x, cache)  # [B, C, T, H/2, W/2]
        if self.temporal is not None:
            x = self.temporal(x, cache)  # [B, C, (T-1)/2+1, H/2, W/2]
        return x


class TemporalUpsample(nn.Module):
    """T -> 2T-1 frames: every latent frame yields two, except the very first which yields one."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = CausalConv3d(channels, 2 * channels, (3, 1, 1))

    def forward(self, x: torch.Tensor, cache: CausalCache | None = None) -> torch.Tensor:
        first_chunk = cache is None or self not in cache
        y = self.conv(x, cache)  # [B, 2C, T, H, W]
        y = rearrange(y, "b (r c) t h w -> b c (t r) h w", r=2)  # [B, C, 2T, H, W]
        if first_chunk:
            y = y[:, :, 1:]
        if cache is not None:
            cache[self] = True
        return y


class Upsample3d(nn.Module):
    """Doubles time (causal, see TemporalUpsample) and/or H and W (nearest + 1x3x3 conv)."""

    def __init__(self, channels: int, temporal: bool, spatial: bool = True):
        super().__init__()
        self.temporal = TemporalUpsample(channels) if temporal else None
        self.spatial = CausalConv3d(channels, channels, (1, 3, 3)) if spatial else None

    def forward(self, x: torch.Tensor, cache: CausalCache | None = None) -> torch.Tensor:
        if self.temporal is not None:
            x = self.temporal(x, cache)
        if self.spatial is None:
            return x
        x = F.interpolate(x, scale_factor=(1.0, 2.0, 2.0), mode="nearest")
        return self.spatial(x, cache)  # [B, C, T', 2H, 2W]


def run_in_chunks(fn, video: torch.Tensor, chunk_frames: int | None, temporal_factor: int,
                  what: str) -> torch.Tensor:
    """Runs a causal encoder ``fn(x, cache)`` on frame 0 then on chunks of ``chunk_frames``.

    The first frame must go alone (the causal temporal grouping keeps it alone), later chunks
    must be whole groups of ``temporal_factor`` frames.
    """
    if chunk_frames is None:
        return fn(video, None)
    if chunk_frames < 1 or chunk_frames % temporal_factor:
        raise ValueError(f"{what}: chunk_frames must be a positive multiple of the temporal factor "
                         f"{temporal_factor}, got {chunk_frames}")
    cache: CausalCache = {}
    outs = [fn(video[:, :, :1], cache)]
    for start in range(1, video.shape[2], chunk_frames):
        outs.append(fn(video[:, :, start:start + chunk_frames], cache))
    return torch.cat(outs, dim=2)
