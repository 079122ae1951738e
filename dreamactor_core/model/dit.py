"""DreamActorDiT: the video diffusion transformer of DreamActor-M1.

One block (MMDiT / Wan2.1 style, shapes for video tokens Lv = T'*h'*w', reference tokens
Lr = R*h'*w', h' = h/ph, w' = w/pw):

    x = [video ; reference]                                     [B, Lv+Lr, D]
    x = x + gate1 * SelfAttn(modulate(LN(x)))     joint attention, 3D RoPE, RMSNorm q/k
    x_video = x_video + FaceAttn(LN(x_video), face windows)       per latent frame
    x = x + gate2 * MLP(modulate(LN(x)))

* Appearance / "reference attention": realised by the joint self-attention itself. Reference
  latents (main reference + pseudo-references, each one VAE latent frame) are patchified by the
  same patch embed as the video, with their pose channels zero-filled, plus a learned type
  embedding, and appended to the sequence. Every video query therefore attends to every
  reference key with shared weights; there is no separate reference network or extra
  cross-attention. Reference tokens carry RoPE time positions -1, -2, ..., -R and the same
  spatial grid as the video.
* Reference tokens are clean: they are modulated with the embedding of t = 0, never the current
  noise level, and they receive no noise.
* Face attention: cross-attention from the video tokens of latent frame k to the face-motion
  tokens of video frames max(0, tf*k - face_window + 1) .. tf*k (time folded into the batch).
  Its output projection is zero-initialised, so adding face motion to a model trained without it
  (training stage 2) starts as the identity.
* adaLN-Zero: every block's modulation and the final projection start at zero, so a fresh model
  is the identity on the token stream and predicts zero velocity.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import replace

import torch
from einops import rearrange, repeat
from torch import nn
from torch.utils.checkpoint import checkpoint

from .config import DiTConfig
from .layers import MLP, CrossAttention, RoPE3D, SelfAttention, TimestepEmbedder, modulate


def face_windows(face_tokens: torch.Tensor, face_mask: torch.Tensor | None,
                 num_latent_frames: int, temporal_factor: int,
                 window: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Gathers each latent frame's face tokens.

    face_tokens [B, T, N, Df] with T = tf*(T'-1)+1, face_mask [B, T] bool (False = no face in
    that frame) -> context [B*T', window*N, Df], key_mask [B*T', window*N] bool, or None when
    every key is valid (SDPA without a mask takes the fast kernel).
    """
    b, t, n, _ = face_tokens.shape
    k = torch.arange(num_latent_frames, device=face_tokens.device)
    idx = k[:, None] * temporal_factor - (window - 1) + torch.arange(window, device=k.device)
    valid = (idx >= 0) & (idx < t)  # [T', W]
    # A window holding one real frame (latent frame 0's causal window) repeats that frame in its
    # empty slots instead of masking them: uniformly duplicated keys leave attention unchanged,
    # and with no mask SDPA takes its fast kernel.
    valid |= (valid.sum(dim=1, keepdim=True) == 1)
    idx = idx.clamp(0, t - 1)
    context = rearrange(face_tokens[:, idx], "b k w n d -> (b k) (w n) d")
    mask = valid[None].expand(b, -1, -1)  # [B, T', W]
    if face_mask is not None:
        mask = mask & face_mask[:, idx]
    if bool(mask.all()):
        return context, None
    return context, repeat(mask, "b k w -> (b k) (w n)", n=n)


class FaceAttention(nn.Module):
    def __init__(self, dim: int, face_dim: int, heads: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.attn = CrossAttention(dim, face_dim, heads)
        nn.init.zeros_(self.attn.proj.weight)
        nn.init.zeros_(self.attn.proj.bias)

    def forward(self, x: torch.Tensor, context: torch.Tensor, key_mask: torch.Tensor | None,
                num_latent_frames: int) -> torch.Tensor:
        # x: [B, T'*S, D] video tokens in (t, h, w) order -> residual update [B, T'*S, D]
        b = x.shape[0]
        xf = rearrange(x, "b (k s) d -> (b k) s d", k=num_latent_frames)  # [B*T', S, D]
        out = self.attn(self.norm(xf), context, key_mask)
        return rearrange(out, "(b k) s d -> b (k s) d", b=b)


class DiTBlock(nn.Module):
    def __init__(self, dim: int, heads: int, face_dim: int, mlp_ratio: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.attn = SelfAttention(dim, heads)
        self.face = FaceAttention(dim, face_dim, heads)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.mlp = MLP(dim, int(dim * mlp_ratio))
        self.adaLN = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))
        nn.init.zeros_(self.adaLN[1].weight)  # adaLN-Zero: gates start at 0, block = identity
        nn.init.zeros_(self.adaLN[1].bias)

    def forward(self, x: torch.Tensor, num_video: int, cond: torch.Tensor,
                rope: tuple[torch.Tensor, torch.Tensor], key_mask: torch.Tensor | None,
                face: tuple[torch.Tensor, torch.Tensor] | None, num_latent_frames: int,
                num_clean: int = 0):
        # x: [B, Lv+Lr, D]; cond: [B, 2, D] (video timestep, clean t=0); the first num_clean
        # video tokens are clean context and take the t=0 modulation, like the reference tokens
        mod = self.adaLN(cond).unsqueeze(2).chunk(6, dim=-1)  # 6 x [B, 2, 1, D]
        shift1, scale1, gate1, shift2, scale2, gate2 = mod
        h = _modulate_split(self.norm1(x), num_clean, num_video, shift1, scale1)
        x = x + _gate_split(self.attn(h, rope, key_mask), num_clean, num_video, gate1)
        if face is not None:
            update = self.face(x[:, :num_video], *face, num_latent_frames)  # [B, Lv, D]
            if torch.is_grad_enabled():
                x = torch.cat([x[:, :num_video] + update, x[:, num_video:]], dim=1)
            else:
                x[:, :num_video] += update
        h = _modulate_split(self.norm2(x), num_clean, num_video, shift2, scale2)
        return x + _gate_split(self.mlp(h), num_clean, num_video, gate2)


# Noisy video tokens x[:, c:n] take the video timestep's modulation ([:, 0]); clean context
# tokens x[:, :c] (the start of a continued segment) and reference tokens x[:, n:] the clean
# t = 0 one ([:, 1]). Both helpers get a freshly computed tensor; without autograd they work in
# place (no copies of the token stream), with autograd they build a new one.
def _token_groups(x: torch.Tensor, c: int, n: int) -> list[tuple[torch.Tensor, int]]:
    return [(part, index) for part, index in ((x[:, :c], 1), (x[:, c:n], 0), (x[:, n:], 1))
            if part.shape[1]]


def _modulate_split(x: torch.Tensor, c: int, n: int, shift: torch.Tensor, scale: torch.Tensor):
    if not torch.is_grad_enabled():
        for part, i in _token_groups(x, c, n):
            part.mul_(1 + scale[:, i]).add_(shift[:, i])
        return x
    return torch.cat([torch.addcmul(shift[:, i], part, 1 + scale[:, i])
                      for part, i in _token_groups(x, c, n)], dim=1)


def _gate_split(x: torch.Tensor, c: int, n: int, gate: torch.Tensor) -> torch.Tensor:
    if not torch.is_grad_enabled():
        for part, i in _token_groups(x, c, n):
            part.mul_(gate[:, i])
        return x
    return torch.cat([part * gate[:, i] for part, i in _token_groups(x, c, n)], dim=1)


class DreamActorDiT(nn.Module):
    """Velocity-predicting video DiT with reference, pose and face-motion conditioning.

    Contract (what samplers and trainers rely on)::

        v = dit(x_t, timestep, pose_latent=None, ref_latent=None, face_tokens=None,
                face_mask=None, drop_ref=None, drop_motion=None, num_clean_frames=0)

      x_t          [B, C, T', h, w]  normalised noisy video latent (C = latent_channels,
                                     h, w multiples of the patch size).
      timestep     float, [] or [B]  flow time in [0, 1]; 0 = clean data, 1 = pure noise
                                     (reference tokens are always embedded at t = 0).
      pose_latent  [B, C_pose, T', h, w] or None   PoseEncoder output; None = all zeros.
      ref_latent   [B, C, R, h, w] or None    normalised VAE latents of R reference images
                                     (main + pseudo-references); None = no reference.
      face_tokens  [B, T, N, D_face] or None  face-motion tokens per video frame,
                                     T = tf*(T'-1)+1; None = no face motion.
      face_mask    [B, T] bool or None  False for frames without a usable face.
      drop_ref     [B] bool or None  True drops the reference for that sample (CFG).
      drop_motion  [B] bool or None  True drops pose AND face motion for that sample: pose
                                     features are zeroed and face attention adds nothing.
      num_clean_frames  int          the first k latent frames of x_t are clean context (the
                                     previous segment's last frame, re-encoded, when a long
                                     video is continued): their tokens take the clean t = 0
                                     modulation, like the reference, and their returned
                                     velocity is meaningless (samplers hold them, trainers
                                     mask them out).
      returns      [B, C, T', h, w]  predicted velocity (dtype of the model's parameters).

    Unconditional = absent: for every sample, a row with drop_ref=True gives the output of a
    forward with ref_latent=None, and drop_motion=True the output of a forward with
    face_tokens=None and pose_latent zero (up to float rounding), so a sampler can stack
    cond / uncond copies along the batch and run ONE forward pass. A dropped reference is
    masked out of the joint attention keys; a dropped face window contributes exactly zero.
    """

    def __init__(self, config: DiTConfig):
        super().__init__()
        self.config = config
        c = config
        in_channels = c.latent_channels + c.pose_latent_channels
        patch_volume = c.patch_size[0] * c.patch_size[1] * c.patch_size[2]
        self.patch_embed = nn.Linear(in_channels * patch_volume, c.dim)
        self.ref_type = nn.Parameter(torch.zeros(1, 1, c.dim))
        self.time_embed = TimestepEmbedder(c.dim, c.time_freq_dim)
        self.rope = RoPE3D(c.head_dim, c.rope_theta)
        self.blocks = nn.ModuleList([DiTBlock(c.dim, c.heads, c.face_token_dim, c.mlp_ratio)
                                     for _ in range(c.depth)])
        self.final_norm = nn.LayerNorm(c.dim, elementwise_affine=False, eps=1e-6)
        self.final_adaLN = nn.Sequential(nn.SiLU(), nn.Linear(c.dim, 2 * c.dim))
        self.final_proj = nn.Linear(c.dim, c.latent_channels * patch_volume)
        self.gradient_checkpointing = False
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        nn.init.normal_(self.ref_type, std=0.02)
        for layer in (self.time_embed.mlp[0], self.time_embed.mlp[2]):
            nn.init.normal_(layer.weight, std=0.02)
        zero = [self.final_adaLN[1], self.final_proj]
        for block in self.blocks:
            zero += [block.adaLN[1], block.face.attn.proj]
        for layer in zero:
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    @torch.no_grad()
    def deepened(self, after: Sequence[int]) -> "DreamActorDiT":
        """A copy with one more block after each block index in ``after``, computing exactly
        what this one does until trained. An added block starts as a copy of the block before
        it with its two adaLN gates and its face attention's output at zero (depth up-scaling:
        it learns from trained features, not from noise, yet starts as the identity)."""
        depth = self.config.depth
        positions = sorted(after)
        if not positions or any(isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < depth
                                for i in positions):
            raise ValueError(f"deepened: give block indices in 0..{depth - 1} to add a block "
                             f"after, got {list(after)}")
        dim = self.config.dim
        blocks = []
        for i, block in enumerate(self.blocks):
            blocks.append(copy.deepcopy(block))
            for _ in range(positions.count(i)):
                added = copy.deepcopy(block)
                gates = added.adaLN[1]  # rows: shift1, scale1, gate1, shift2, scale2, gate2
                for row in (2, 5):
                    gates.weight[row * dim:(row + 1) * dim] = 0
                    gates.bias[row * dim:(row + 1) * dim] = 0
                added.face.attn.proj.weight.zero_()
                added.face.attn.proj.bias.zero_()
                blocks.append(added)
        deep = copy.deepcopy(self)
        deep.config = replace(self.config, depth=len(blocks))
        deep.blocks = nn.ModuleList(blocks)
        return deep

    # -- token layout -------------------------------------------------------------------------
    def _patchify(self, x: torch.Tensor) -> torch.Tensor:
        pt, ph, pw = self.config.patch_size  # [B, C, T, h, w] -> [B, T*h'*w', C*pt*ph*pw]
        return rearrange(x, "b c (t pt) (h ph) (w pw) -> b (t h w) (c pt ph pw)", pt=pt, ph=ph, pw=pw)

    def _unpatchify(self, tokens: torch.Tensor, t: int, h: int, w: int) -> torch.Tensor:
        pt, ph, pw = self.config.patch_size
        return rearrange(tokens, "b (t h w) (c pt ph pw) -> b c (t pt) (h ph) (w pw)",
                         t=t // pt, h=h // ph, w=w // pw, pt=pt, ph=ph, pw=pw)

    def _positions(self, t: int, h: int, w: int, num_refs: int, device) -> torch.Tensor:
        _, ph, pw = self.config.patch_size
        ys, xs = torch.arange(h // ph, device=device), torch.arange(w // pw, device=device)
        times = torch.cat([torch.arange(t, device=device),
                           -1 - torch.arange(num_refs, device=device)])  # refs: -1, -2, ...
        grid = torch.meshgrid(times, ys, xs, indexing="ij")
        return torch.stack(grid, dim=-1).reshape(-1, 3)  # [(T'+R)*h'*w', 3] in (t, h, w) order

    # -- input checks -------------------------------------------------------------------------
    def _batch_flags(self, flags, b: int, name: str, device) -> torch.Tensor:
        if flags is None:
            return torch.zeros(b, dtype=torch.bool, device=device)
        flags = torch.as_tensor(flags, device=device)
        if flags.shape != (b,) or flags.dtype != torch.bool:
            raise ValueError(f"{name} must be a bool tensor of shape [{b}] (one flag per sample), "
                             f"got {flags.dtype} {tuple(flags.shape)}")
        return flags

    def _check(self, x_t, pose_latent, ref_latent, face_tokens, face_mask) -> None:
        c = self.config
        if x_t.ndim != 5 or x_t.shape[1] != c.latent_channels:
            raise ValueError(f"x_t must be [B, {c.latent_channels}, T', h, w], got {tuple(x_t.shape)}")
        b, _, t, h, w = x_t.shape
        if h % c.patch_size[1] or w % c.patch_size[2]:
            raise ValueError(f"latent size {h}x{w} must be a multiple of the patch size "
                             f"{c.patch_size[1:]}: use frames that are multiples of the VAE "
                             "factor times the patch size")
        if pose_latent is not None and tuple(pose_latent.shape) != (b, c.pose_latent_channels, t, h, w):
            raise ValueError(f"pose_latent must be [{b}, {c.pose_latent_channels}, {t}, {h}, {w}] "
                             f"(PoseEncoder output for the same frames), got {tuple(pose_latent.shape)}")
        if ref_latent is not None and (ref_latent.ndim != 5 or ref_latent.shape[0] != b or
                                       ref_latent.shape[1] != c.latent_channels or
                                       ref_latent.shape[3:] != x_t.shape[3:]):
            raise ValueError(f"ref_latent must be [{b}, {c.latent_channels}, R, {h}, {w}] (VAE "
                             f"latents of the references at the video's size), got "
                             f"{tuple(ref_latent.shape)}")
        frames = c.temporal_factor * (t - 1) + 1
        if face_tokens is not None:
            expected = (b, frames, face_tokens.shape[2] if face_tokens.ndim == 4 else -1,
                        c.face_token_dim)
            if tuple(face_tokens.shape) != expected:
                raise ValueError(f"face_tokens must be [{b}, {frames}, N, {c.face_token_dim}] "
                                 f"({t} latent frames cover {frames} video frames), got "
                                 f"{tuple(face_tokens.shape)}")
        if face_mask is not None and (tuple(face_mask.shape) != (b, frames)
                                      or face_mask.dtype != torch.bool):
            raise ValueError(f"face_mask must be a bool tensor [{b}, {frames}], got "
                             f"{face_mask.dtype} {tuple(face_mask.shape)}")

    # -- forward ------------------------------------------------------------------------------
    def forward(self, x_t: torch.Tensor, timestep, pose_latent: torch.Tensor | None = None,
                ref_latent: torch.Tensor | None = None, face_tokens: torch.Tensor | None = None,
                face_mask: torch.Tensor | None = None, drop_ref=None,
                drop_motion=None, num_clean_frames: int = 0) -> torch.Tensor:
        self._check(x_t, pose_latent, ref_latent, face_tokens, face_mask)
        c = self.config
        dtype, device = self.patch_embed.weight.dtype, x_t.device
        b, _, t, h, w = x_t.shape
        num_clean_frames = int(num_clean_frames)
        if not 0 <= num_clean_frames < t:
            raise ValueError(f"num_clean_frames must be 0..{t - 1} (x_t has {t} latent frames and "
                             f"at least one must be noisy), got {num_clean_frames}")
        drop_ref = self._batch_flags(drop_ref, b, "drop_ref", device)
        keep_motion = ~self._batch_flags(drop_motion, b, "drop_motion", device)
        timestep = torch.as_tensor(timestep, device=device, dtype=torch.float32)
        if timestep.ndim == 0:
            timestep = timestep.expand(b)
        if timestep.shape != (b,):
            raise ValueError(f"timestep must be a number or a tensor of shape [{b}], "
                             f"got {tuple(timestep.shape)}")

        x_t = x_t.to(dtype)
        pose = (torch.zeros(b, c.pose_latent_channels, t, h, w, device=device, dtype=dtype)
                if pose_latent is None else pose_latent.to(dtype))
        pose = pose * keep_motion.to(dtype).view(b, 1, 1, 1, 1)
        tokens = self.patch_embed(self._patchify(torch.cat([x_t, pose], dim=1)))  # [B, Lv, D]
        num_video = tokens.shape[1]
        num_clean = num_video * num_clean_frames // t

        num_refs, key_mask = 0, None
        if ref_latent is not None:
            num_refs = ref_latent.shape[2]
            ref = ref_latent.to(dtype)
            ref_pose = ref.new_zeros(b, c.pose_latent_channels, *ref.shape[2:])
            ref_tokens = self.patch_embed(self._patchify(torch.cat([ref, ref_pose], dim=1)))
            tokens = torch.cat([tokens, ref_tokens + self.ref_type], dim=1)  # [B, Lv+Lr, D]
            if drop_ref.any():
                keep = (~drop_ref)[:, None].expand(b, ref_tokens.shape[1])
                key_mask = torch.cat([keep.new_ones(b, num_video), keep], dim=1)  # [B, Lv+Lr]

        rope = self.rope(self._positions(t, h, w, num_refs, device))
        cond = torch.stack([self.time_embed(timestep),
                            self.time_embed(torch.zeros_like(timestep))], dim=1)  # [B, 2, D]

        face = None
        if face_tokens is not None:
            mask = keep_motion[:, None].expand(b, face_tokens.shape[1])
            if face_mask is not None:
                mask = mask & face_mask.to(device)
            face = face_windows(face_tokens.to(dtype), mask, t, c.temporal_factor, c.face_window)

        for block in self.blocks:
            if self.gradient_checkpointing and torch.is_grad_enabled():
                tokens = checkpoint(block, tokens, num_video, cond, rope, key_mask, face, t,
                                    num_clean, use_reentrant=False)
            else:
                tokens = block(tokens, num_video, cond, rope, key_mask, face, t, num_clean)

        shift, scale = self.final_adaLN(cond[:, 0]).unsqueeze(1).chunk(2, dim=-1)  # [B, 1, D]
        out = self.final_proj(modulate(self.final_norm(tokens[:, :num_video]), shift, scale))
        return self._unpatchify(out, t, h, w)  # [B, C, T', h, w]
