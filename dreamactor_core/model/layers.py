"""Transformer layers of the DreamActor DiT: RMSNorm, timestep embedding, 3D RoPE, attention, MLP.

Shapes: B batch, L tokens, D model dim, H heads, Dh head dim. Attention runs through
``torch.nn.functional.scaled_dot_product_attention`` (flash / memory-efficient kernels where
available); masks are boolean with True = "may attend".
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.float()
        x32 = x32 * torch.rsqrt(x32.pow(2).mean(dim=-1, keepdim=True) + self.eps)
        return (x32 * self.weight.float()).to(x.dtype)


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    # x: [B, L, D]; shift, scale: [B, 1, D]
    return x * (1 + scale) + shift


def sinusoidal_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """t: [B] (any real values) -> [B, dim] (cos half, sin half)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32,
                                                           device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = F.pad(emb, (0, 1))
    return emb


class TimestepEmbedder(nn.Module):
    """Flow time t in [0, 1] -> [B, D] (sinusoidal features of 1000*t, then an MLP)."""

    def __init__(self, dim: int, freq_dim: int = 256):
        super().__init__()
        self.freq_dim = freq_dim
        self.mlp = nn.Sequential(nn.Linear(freq_dim, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        emb = sinusoidal_embedding(t * 1000.0, self.freq_dim)  # [B, freq_dim]
        return self.mlp(emb.to(self.mlp[0].weight.dtype))  # [B, D]


class RoPE3D(nn.Module):
    """Rotary embedding over (t, h, w) positions; the head dim's rotation pairs are split across
    the three axes (t gets the remainder, as in Wan2.1: Dh=128 -> 22/21/21 pairs)."""

    def __init__(self, head_dim: int, theta: float = 10000.0):
        super().__init__()
        pairs = head_dim // 2
        axis_pairs = (pairs - 2 * (pairs // 3), pairs // 3, pairs // 3)
        for name, n in zip(("inv_freq_t", "inv_freq_h", "inv_freq_w"), axis_pairs):
            inv = 1.0 / theta ** (torch.arange(n, dtype=torch.float64) / max(n, 1))
            self.register_buffer(name, inv.float(), persistent=False)

    def forward(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # positions: [L, 3] (t, h, w), may be negative -> cos, sin: [L, Dh/2]
        pos = positions.float()
        angles = torch.cat([pos[:, 0:1] * self.inv_freq_t[None], pos[:, 1:2] * self.inv_freq_h[None],
                            pos[:, 2:3] * self.inv_freq_w[None]], dim=-1)
        return torch.cos(angles), torch.sin(angles)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    # x: [B, H, L, Dh]; cos, sin: [L, Dh/2]; rotates interleaved pairs (x0, x1), (x2, x3), ...
    # as one complex multiply (8x faster on CPU than separate real products).
    pairs = torch.view_as_complex(x.float().reshape(*x.shape[:-1], -1, 2))  # [B, H, L, Dh/2]
    return torch.view_as_real(pairs * torch.complex(cos, sin)).flatten(-2).to(x.dtype)


class SelfAttention(nn.Module):
    """Multi-head self-attention with RMSNorm on q/k and RoPE."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.q_norm = RMSNorm(dim // heads)
        self.k_norm = RMSNorm(dim // heads)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor],
                key_mask: torch.Tensor | None = None) -> torch.Tensor:
        # x: [B, L, D]; key_mask: [B, L] bool or None
        q, k, v = rearrange(self.qkv(x), "b l (three h d) -> three b h l d", three=3, h=self.heads)
        q = apply_rope(self.q_norm(q), *rope)
        k = apply_rope(self.k_norm(k), *rope)
        mask = None if key_mask is None else key_mask[:, None, None, :]  # [B, 1, 1, L]
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # [B, H, L, Dh]
        return self.proj(rearrange(out, "b h l d -> b l (h d)"))


class CrossAttention(nn.Module):
    """Queries from x [B, Lq, D], keys/values from context [B, Lk, Dc]; RoPE on q and k only
    when given their (cos, sin) ([Lq, Dh/2] and [Lk, Dh/2]).

    Rows whose key_mask is all False get a zero output (instead of SDPA's NaN), i.e. "nothing to
    attend to" adds nothing to the residual stream.
    """

    def __init__(self, dim: int, context_dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(context_dim, 2 * dim)
        self.q_norm = RMSNorm(dim // heads)
        self.k_norm = RMSNorm(dim // heads)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor,
                key_mask: torch.Tensor | None = None,
                q_rope: tuple[torch.Tensor, torch.Tensor] | None = None,
                k_rope: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        q = self.q_norm(rearrange(self.q(x), "b l (h d) -> b h l d", h=self.heads))
        k, v = rearrange(self.kv(context), "b l (two h d) -> two b h l d", two=2, h=self.heads)
        k = self.k_norm(k)
        if q_rope is not None:
            q = apply_rope(q, *q_rope)
        if k_rope is not None:
            k = apply_rope(k, *k_rope)
        if key_mask is None:
            out = F.scaled_dot_product_attention(q, k, v)
            return self.proj(rearrange(out, "b h l d -> b l (h d)"))
        has_key = key_mask.any(dim=1)  # [B]
        safe_mask = key_mask.clone()
        safe_mask[~has_key, 0] = True  # avoid all -inf rows; their output is zeroed below
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=safe_mask[:, None, None, :])
        out = self.proj(rearrange(out, "b h l d -> b l (h d)"))  # [B, Lq, D]
        return out * has_key[:, None, None].to(out.dtype)


class MLP(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x), approximate="tanh"))
