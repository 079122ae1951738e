"""Frame-stacking VAE (``VAEConfig.architecture`` "frame_stack"): a 2D autoencoder per frame,
time compressed by stacking frames along the latent's channels.

Every frame is encoded alone to c = C / tf channels at H/sf x W/sf. Latent frame k >= 1 stacks
the latents of the tf frames it covers (frames tf*(k-1)+1 .. tf*k, channels "(g c)" with g the
frame within the group); latent frame 0 is frame 0 encoded alone, as in the causal 3D VAE,
repeated tf times. The DiT, the pipeline and the trainer see exactly the CausalVAE contract:
[B, C, T', h, w] with T' = (T-1)//tf + 1, the first frame alone, and chunked == whole (there
is no state across frames at all, except the decoder's optional causal temporal mix over the
first level's features, ``decoder_temporal_mix``, applied to the whole clip between chunks). Decoding latent frame 0 averages its tf copies, which a DiT
may generate slightly apart.

Why not compress time inside the network: on the 64x64 puppet clips a 0.48M-parameter per-frame
autoencoder at the same rate (4 channels per frame) came within 0.2 dB of the 2.6M-parameter
causal 3D VAE's 26.9 dB in 6 minutes of a 2-core CPU, where the 3D VAE had taken hours of CPU
and a GPU run; packing several moving frames into one feature map is what a small 3D network learns slowly
(see the demo model's card). The price is no sharing of static content between frames.

Layout per frame (2D convolutions on [N = B*T, C, H, W]): pixel-unshuffle by patch_size, then
one level per spatial halving (num_res_blocks ResBlocks each, a stride-2 conv between levels),
one more ResBlock and the output conv to the posterior's mean and log-variance; the decoder
mirrors it with num_res_blocks + 1 ResBlocks per level and nearest-upsample + conv between,
and with ``decoder_refine_channels`` ends in a PatchRefiner at the full frame size; with
``decoder_reference_channels`` a ReferenceRefiner then corrects each frame from the reference
image, when decode is given one, and with ``decoder_reference_attention`` the first level's
features also attend to the reference image's encoder features (ReferenceAttention).
"""

from __future__ import annotations

from dataclasses import replace

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from .causal_layers import ChannelRMSNorm
from .config import VAEConfig
from .layers import CrossAttention, RoPE3D
from .vae import VideoVAE


class ResBlock2d(nn.Module):
    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.norm1 = ChannelRMSNorm(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm2 = ChannelRMSNorm(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.skip = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: [N, C_in, H, W] -> [N, C_out, H, W]
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return (x if self.skip is None else self.skip(x)) + h


class Upsample2d(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))  # [N, C, 2H, 2W]


class CausalTemporalMix(nn.Module):
    """x + a convolution over each pixel's current and ``reach`` earlier frames (Conv3d of kernel
    (reach + 1, 1, 1)); frame 0 is repeated before the clip, as the causal 3D VAE pads. The
    convolution starts at zero, so a mix added to a trained decoder decodes exactly as before."""

    def __init__(self, channels: int, reach: int):
        super().__init__()
        self.reach = reach
        self.norm = ChannelRMSNorm(channels)
        self.conv = nn.Conv3d(channels, channels, (reach + 1, 1, 1))
        nn.init.zeros_(self.conv.weight)
        nn.init.zeros_(self.conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: [B, C, T, h, w] -> [B, C, T, h, w]
        h = self.norm(x)
        h = torch.cat([h[:, :, :1].expand(-1, -1, self.reach, -1, -1), h], dim=2)  # [B, C, reach+T, h, w]
        return x + self.conv(h)


class PatchRefiner(nn.Module):
    """Full-resolution refinement of patch-decoded frames: the last level's features
    [N, C, H/p, W/p] are upsampled x2 per step (nearest + conv + ResBlock) to [N, width, H, W],
    joined by the coarse frame, and one more ResBlock predicts a correction added to it. The
    output conv starts at zero, so a refiner added to a trained decoder decodes as before."""

    def __init__(self, channels: int, width: int, patch_size: int):
        super().__init__()
        self.conv_in = nn.Conv2d(channels, width, 1)
        steps = []
        for _ in range(patch_size.bit_length() - 1):  # log2(patch_size) doublings
            steps += [Upsample2d(width), ResBlock2d(width, width)]
        self.up = nn.Sequential(*steps)
        self.fuse = ResBlock2d(width + 3, width)
        self.norm_out = ChannelRMSNorm(width)
        self.conv_out = nn.Conv2d(width, 3, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def forward(self, features: torch.Tensor, coarse: torch.Tensor) -> torch.Tensor:
        # features: [N, C, H/p, W/p] (normalised, activated), coarse: [N, 3, H, W] -> [N, 3, H, W]
        h = self.up(self.conv_in(features))  # [N, width, H, W]
        h = self.fuse(torch.cat([h, coarse], dim=1))
        return coarse + self.conv_out(F.silu(self.norm_out(h)))


class ReferenceRefiner(nn.Module):
    """Full-resolution correction of each decoded frame from the reference image it animates.
    The latent (4 channels per 4x4 patch) cannot carry fine texture, but the reference has it:
    on a still camera most of every frame, the background, is the reference's own pixels. A few
    convolutions over (frame, reference, their difference) give, per pixel, a gate that pulls
    the frame towards the reference and a residual: ``frame + tanh(g) * (reference - frame) +
    residual``. Copying is one multiplication, so the head learns where frame and reference
    agree instead of having to build the copy from its features. Local by design (receptive
    field 13 px): it sharpens what stands still, it does not warp what moved (where the
    reference's own limbs lay, a faint trace of them can stay). The output conv starts at zero
    (gate 0, residual 0), so a refiner added to a trained decoder decodes as before."""

    def __init__(self, width: int):
        super().__init__()
        self.conv_in = nn.Conv2d(9, width, 3, padding=1)
        self.blocks = nn.Sequential(ResBlock2d(width, width), ResBlock2d(width, width))
        self.norm_out = ChannelRMSNorm(width)
        self.conv_out = nn.Conv2d(width, 4, 3, padding=1)  # residual (3), gate (1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def forward(self, frames: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        # frames, reference: [N, 3, H, W] (the reference repeated per frame) -> [N, 3, H, W]
        h = self.conv_in(torch.cat([frames, reference, frames - reference], dim=1))
        h = self.blocks(h)  # [N, width, H, W]
        residual, gate = self.conv_out(F.silu(self.norm_out(h))).split([3, 1], dim=1)
        # tanh: 0 at the zero start with a gradient there (a clamp to 0..1 would pass none)
        return frames + torch.tanh(gate) * (reference - frames) + residual


class ReferenceAttention(nn.Module):
    """The decoder's first-level features of every frame attend to the reference image's encoder
    features at the same level: x + proj(attention(q(x), k(ref), v(ref))). The latent keeps 4
    channels per 4x4 patch; the encoder's features of the reference, before its bottleneck, hold
    the reference's texture (clothes, face, background) at every patch, and the attention fetches
    it from wherever the same part of the character sits in the reference, not only from the same
    place as ReferenceRefiner does. Keys carry 2D RoPE (the same place matches most for what
    stands still); queries of all frames of a clip share its reference's keys. The output
    projection starts at zero, so an attention added to a trained decoder decodes as before."""

    def __init__(self, channels: int, ref_channels: int, heads: int, theta: float = 100.0):
        super().__init__()
        self.norm = ChannelRMSNorm(channels)
        self.ref_norm = ChannelRMSNorm(ref_channels)
        self.attn = CrossAttention(channels, ref_channels, heads)
        self.rope = RoPE3D(channels // heads, theta)
        nn.init.zeros_(self.attn.proj.weight)
        nn.init.zeros_(self.attn.proj.bias)

    def forward(self, x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        # x: [B*T, C, h, w] (frames of B clips), ref: [B, C_ref, h, w] -> [B*T, C, h, w]
        b, (h, w) = ref.shape[0], x.shape[-2:]
        t = x.shape[0] // b
        rows, cols = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
        pos = torch.stack([torch.zeros_like(rows), rows, cols], dim=-1).reshape(-1, 3)  # (0, y, x)
        cos, sin = self.rope(pos.to(x.device))  # [h*w, Dh/2]
        tokens = rearrange(self.norm(x), "(b t) c h w -> b (t h w) c", b=b)  # [B, T*h*w, C]
        context = rearrange(self.ref_norm(ref), "b c h w -> b (h w) c")  # [B, h*w, C_ref]
        out = self.attn(tokens, context, q_rope=(cos.repeat(t, 1), sin.repeat(t, 1)),
                        k_rope=(cos, sin))  # [B, T*h*w, C]
        return x + rearrange(out, "b (t h w) c -> (b t) c h w", h=h, w=w)


class FrameEncoder(nn.Module):
    def __init__(self, config: VAEConfig):
        super().__init__()
        chans = [config.base_channels * m for m in config.channel_mults]
        self.patch_size = config.patch_size
        self.conv_in = nn.Conv2d(config.in_channels * config.patch_size ** 2, chans[0], 3, padding=1)
        layers, ch = [], chans[0]
        for level, ch_out in enumerate(chans):
            for _ in range(config.num_res_blocks):
                layers.append(ResBlock2d(ch, ch_out))
                ch = ch_out
            if level < len(chans) - 1:
                layers.append(nn.Conv2d(ch, ch, 3, stride=2, padding=1))
        layers.append(ResBlock2d(ch, ch))
        self.layers = nn.Sequential(*layers)
        self.norm_out = ChannelRMSNorm(ch)
        per_frame = config.latent_channels // config.temporal_factor
        self.conv_out = nn.Conv2d(ch, 2 * per_frame, 3, padding=1)  # mean, logvar

    def features(self, frames: torch.Tensor) -> torch.Tensor:
        # frames: [N, 3, H, W] -> the last level's features [N, C, H/sf, W/sf], before the bottleneck
        p = self.patch_size
        x = rearrange(frames, "n c (h p) (w q) -> n (c p q) h w", p=p, q=p)  # [N, 3p^2, H/p, W/p]
        return self.layers(self.conv_in(x))

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        # frames: [N, 3, H, W] -> moments [N, 2c, H/sf, W/sf]
        return self.conv_out(F.silu(self.norm_out(self.features(frames))))


class FrameDecoder(nn.Module):
    def __init__(self, config: VAEConfig):
        super().__init__()
        chans = [config.decoder_width * m for m in config.channel_mults]
        self.patch_size = config.patch_size
        ch = chans[-1]
        per_frame = config.latent_channels // config.temporal_factor
        self.conv_in = nn.Conv2d(per_frame, ch, 3, padding=1)
        layers = [ResBlock2d(ch, ch)]
        for level in reversed(range(len(chans))):
            for _ in range(config.num_res_blocks + 1):
                layers.append(ResBlock2d(ch, chans[level]))
                ch = chans[level]
            if level > 0:
                layers.append(Upsample2d(ch))
        self.layers = nn.Sequential(*layers)
        self.norm_out = ChannelRMSNorm(ch)
        self.conv_out = nn.Conv2d(ch, config.out_channels * config.patch_size ** 2, 3, padding=1)
        # between head() and tail(), the only place where frames meet (FrameStackVAE.decode_raw)
        self.temporal_mix = (CausalTemporalMix(chans[-1], config.decoder_temporal_mix)
                             if config.decoder_temporal_mix else None)
        self.refine = (PatchRefiner(ch, config.decoder_refine_channels, config.patch_size)
                       if config.decoder_refine_channels else None)
        self.reference = (ReferenceRefiner(config.decoder_reference_channels)
                          if config.decoder_reference_channels else None)
        encoder_channels = config.base_channels * config.channel_mults[-1]
        self.reference_attention = (
            ReferenceAttention(chans[-1], encoder_channels, config.decoder_reference_attention)
            if config.decoder_reference_attention else None)

    def head(self, z: torch.Tensor) -> torch.Tensor:
        # z: [N, c, h, w] -> features [N, C, h, w] (conv_in and the first ResBlock)
        return self.layers[0](self.conv_in(z))

    def tail(self, x: torch.Tensor) -> torch.Tensor:
        # features [N, C, h, w] -> frames [N, 3, h*sf, w*sf]
        features = F.silu(self.norm_out(self.layers[1:](x)))  # [N, C, H/p, W/p]
        p = self.patch_size
        frames = rearrange(self.conv_out(features), "n (c p q) h w -> n c (h p) (w q)", p=p, q=p)
        return frames if self.refine is None else self.refine(features, frames)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        # z: [N, c, h, w] -> frames [N, 3, h*sf, w*sf], each frame alone (no temporal_mix)
        return self.tail(self.head(z))


class FrameStackVAE(VideoVAE):
    """See the module docstring. State: ``encoder`` and ``decoder`` (per frame) and the latent
    statistics of the stacked [C] channels."""

    def __init__(self, config: VAEConfig):
        super().__init__(config)
        self.encoder = FrameEncoder(config)
        self.decoder = FrameDecoder(config)

    def _frames_in_chunks(self, fn, frames: torch.Tensor, chunk: int | None) -> torch.Tensor:
        """fn over [N, ...] frames, ``chunk`` at a time (all at once when None)."""
        if chunk is None or chunk >= frames.shape[0]:
            return fn(frames)
        return torch.cat([fn(frames[s:s + chunk]) for s in range(0, frames.shape[0], chunk)])

    def encode_moments(self, video: torch.Tensor, chunk_frames: int | None) -> torch.Tensor:
        b = video.shape[0]
        frames = rearrange(video, "b c t h w -> (b t) c h w")
        chunk = None if chunk_frames is None else b * chunk_frames
        moments = self._frames_in_chunks(self.encoder, frames, chunk)  # [B*T, 2c, h, w]
        moments = rearrange(moments, "(b t) m h w -> b t m h w", b=b)
        mean, logvar = moments.chunk(2, dim=2)  # each [B, T, c, h, w]
        return torch.cat([self._stack(mean), self._stack(logvar)], dim=1)  # [B, 2C, T', h, w]

    def _stack(self, per_frame: torch.Tensor) -> torch.Tensor:
        """[B, T, c, h, w] (T = tf*k + 1) -> [B, tf*c, k + 1, h, w]: frame 0 repeated, then
        groups of tf frames along channels."""
        tf = self.config.temporal_factor
        first = per_frame[:, :1].expand(-1, tf, -1, -1, -1)  # [B, tf, c, h, w]
        groups = torch.cat([first, per_frame[:, 1:]], dim=1)  # [B, tf*(k+1), c, h, w]
        return rearrange(groups, "b (k g) c h w -> b (g c) k h w", g=tf)

    def _unstack(self, z: torch.Tensor) -> torch.Tensor:
        """[B, tf*c, T', h, w] -> per-frame latents [B, tf*(T'-1)+1, c, h, w]; latent frame 0's
        copies are averaged."""
        tf = self.config.temporal_factor
        frames = rearrange(z, "b (g c) k h w -> b k g c h w", g=tf)
        first = frames[:, :1].mean(dim=2)  # [B, 1, c, h, w]
        rest = rearrange(frames[:, 1:], "b k g c h w -> b (k g) c h w")
        return torch.cat([first, rest], dim=1)

    @property
    def uses_reference(self) -> bool:
        return self.decoder.reference is not None or self.decoder.reference_attention is not None

    def decode_raw(self, z: torch.Tensor, chunk: int | None = None,
                   reference: torch.Tensor | None = None) -> torch.Tensor:
        b = z.shape[0]
        per_frame = rearrange(self._unstack(z), "b t c h w -> (b t) c h w")
        frame_chunk = None if chunk is None else b * chunk * self.config.temporal_factor
        decoder = self.decoder
        attend = reference is not None and decoder.reference_attention is not None
        if decoder.temporal_mix is None and not attend:
            frames = self._frames_in_chunks(decoder, per_frame, frame_chunk)  # [B*T, 3, H, W]
        else:  # per-frame head, the clip-wide parts, per-frame tail: chunked == whole
            features = self._frames_in_chunks(decoder.head, per_frame, frame_chunk)  # [B*T, C, h, w]
            if decoder.temporal_mix is not None:
                features = rearrange(features, "(b t) c h w -> b c t h w", b=b)
                features = rearrange(decoder.temporal_mix(features), "b c t h w -> (b t) c h w")
            if attend:
                ref_features = self.encoder.features(reference)  # [B, C_enc, h, w]
                features = decoder.reference_attention(features, ref_features)
            frames = self._frames_in_chunks(decoder.tail, features, frame_chunk)
        if reference is not None and decoder.reference is not None:
            t = frames.shape[0] // b
            refs = reference[:, None].expand(-1, t, -1, -1, -1).flatten(0, 1)  # [B*T, 3, H, W]
            frames = self._frames_in_chunks(lambda x: decoder.reference(x[:, :3], x[:, 3:]),
                                            torch.cat([frames, refs], dim=1), frame_chunk)
        return rearrange(frames, "(b t) c h w -> b c t h w", b=b)

    @torch.no_grad()
    def with_addition(self, field: str, size: int) -> "FrameStackVAE":
        """A copy whose decoder gains the part of config ``field`` (a DECODER_ADDITIONS name) at
        ``size``, decoding exactly as this one until trained: every tensor copied, the new part
        at zero output."""
        what, module = _ADDITION_PARTS[field]
        if size < 1 or getattr(self.config, field):
            raise ValueError(f"{field}: this decoder has {what} {getattr(self.config, field)}; give "
                             f"a {what} >= 1 to add to a decoder without one, got {size}")
        grown = FrameStackVAE(replace(self.config, **{field: size}))
        missing, unexpected = grown.load_state_dict(self.state_dict(), strict=False)
        added = f"decoder.{module}."
        if unexpected or not missing or not all(k.startswith(added) for k in missing):
            raise RuntimeError(f"adding {added}: copying the decoder left {missing} missing and "
                               f"{unexpected} unexpected")
        return grown.to(next(self.parameters()).dtype)


# DECODER_ADDITIONS field -> (what its value counts, the FrameDecoder attribute it adds)
_ADDITION_PARTS = {"decoder_temporal_mix": ("reach", "temporal_mix"),
                   "decoder_refine_channels": ("width", "refine"),
                   "decoder_reference_channels": ("width", "reference"),
                   "decoder_reference_attention": ("heads", "reference_attention")}
