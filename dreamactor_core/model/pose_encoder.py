"""Pose encoder: guidance maps -> pose features on the latent grid.

Input  [B, 6, T, H, W] in 0..1: skeleton-map RGB (channels 0-2) and head-sphere RGB (3-5).
Output [B, C_pose, T', H/sf, W/sf] with the VAE's causal temporal grouping (T' = (T-1)//tf + 1),
concatenated with the noisy video latent along channels before the DiT's patch embed.
A light causal conv stack (no normalisation statistics over time), streamable in chunks like
the VAE encoder.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .causal_layers import CausalCache, CausalConv3d, Downsample3d, run_in_chunks
from .config import ModelConfig


class PoseEncoder(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, hidden_channels: int,
                 spatial_factor: int, temporal_factor: int):
        super().__init__()
        n_down = spatial_factor.bit_length() - 1
        n_t = temporal_factor.bit_length() - 1
        if 2 ** n_down != spatial_factor or 2 ** n_t != temporal_factor or n_t > n_down:
            raise ValueError(f"PoseEncoder: spatial_factor ({spatial_factor}) and temporal_factor "
                             f"({temporal_factor}) must be powers of two, temporal <= spatial")
        self.in_channels = in_channels
        self.temporal_factor = temporal_factor
        self.spatial_factor = spatial_factor
        chans = [max(hidden_channels >> (n_down - i), 8) for i in range(n_down + 1)]
        self.conv_in = CausalConv3d(in_channels, chans[0], 3)
        self.downs = nn.ModuleList()
        self.convs = nn.ModuleList()
        for i in range(n_down):
            self.downs.append(Downsample3d(chans[i], temporal=i >= n_down - n_t))
            self.convs.append(CausalConv3d(chans[i], chans[i + 1], 3))
        self.conv_out = CausalConv3d(chans[-1], out_channels, 1)

    @classmethod
    def from_config(cls, config: ModelConfig) -> "PoseEncoder":
        return cls(config.dit.pose_channels, config.dit.pose_latent_channels,
                   config.dit.pose_hidden_channels, config.vae.spatial_factor,
                   config.vae.temporal_factor)

    def _encode(self, x: torch.Tensor, cache: CausalCache | None) -> torch.Tensor:
        x = F.silu(self.conv_in(x, cache))  # [B, c0, T, H, W]
        for down, conv in zip(self.downs, self.convs):
            x = F.silu(conv(F.silu(down(x, cache)), cache))  # halves H, W (and T on the last levels)
        return self.conv_out(x, cache)  # [B, C_pose, T', H/sf, W/sf]

    def forward(self, maps: torch.Tensor, chunk_frames: int | None = None) -> torch.Tensor:
        if maps.ndim != 5 or maps.shape[1] != self.in_channels:
            raise ValueError(f"pose maps must be [B, {self.in_channels}, T, H, W] (skeleton RGB + "
                             f"head-sphere RGB), got {tuple(maps.shape)}")
        t = maps.shape[2]
        if (t - 1) % self.temporal_factor:
            raise ValueError(f"pose maps have {t} frames; need {self.temporal_factor}*k+1 frames, "
                             "the same count as the video")
        if maps.shape[3] % self.spatial_factor or maps.shape[4] % self.spatial_factor:
            raise ValueError(f"pose maps are {maps.shape[3]}x{maps.shape[4]}; height and width must "
                             f"be multiples of {self.spatial_factor}, like the video")
        lo, hi = float(maps.min()), float(maps.max())
        if lo < -0.01 or hi > 1.01:
            raise ValueError(f"pose maps must be in 0..1 (rendered IMAGE values), got "
                             f"{lo:.3g}..{hi:.3g}")
        return run_in_chunks(self._encode, maps, chunk_frames, self.temporal_factor, "PoseEncoder")
