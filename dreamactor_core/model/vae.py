"""Video VAEs: video [B, 3, T, H, W] in -1..1 <-> latent [B, C, T', H/sf, W/sf].

``VideoVAE`` is what the pipeline and the trainer use of any VAE (checks, latent normalisation,
encode / decode); ``build_vae(config)`` makes the one ``config.architecture`` names:
``causal3d``, this file's CausalVAE (Wan2.1 / CogVideoX style), or ``frame_stack``
(frame_vae.FrameStackVAE: a 2D autoencoder per frame, tf frames stacked per latent frame).

Causal 3D VAE (``causal3d``):

Latent: [B, C, T', H/sf, W/sf] with T' = (T-1)//tf + 1; the first frame is encoded alone so an
image is a 1-frame video and the DiT's references share the video's latent space. T must be
tf*k + 1. Everything is causal in time (see causal_layers), so ``encode(video, chunk_frames=n)``
and ``decode(latent, chunk=n)`` stream over time with a feature cache and return what the
whole-video call returns, with memory bounded by the chunk.

Latents handed to / taken from the DiT are normalised per channel: (z - latent_mean) / latent_std,
both stored as buffers (set them from data with ``set_latent_stats``).
Unlike Wan2.1's VAE there is no attention in the middle block: every layer is a causal conv or a
per-position op, which keeps chunked == whole exact and the model small.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from .causal_layers import (CausalCache, CausalConv3d, ChannelRMSNorm, Downsample3d, ResBlock3d,
                            Upsample3d, run_in_chunks)
from .config import VAEConfig


class DiagonalGaussian:
    """Posterior N(mean, exp(logvar)) over raw (un-normalised) latents [B, C, T', h, w]."""

    def __init__(self, moments: torch.Tensor):
        self.mean, logvar = moments.chunk(2, dim=1)
        self.logvar = logvar.clamp(-30.0, 20.0)

    @property
    def std(self) -> torch.Tensor:
        return torch.exp(0.5 * self.logvar)

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        noise = torch.randn(self.mean.shape, generator=generator, device=self.mean.device,
                            dtype=self.mean.dtype)
        return self.mean + self.std * noise

    def kl(self) -> torch.Tensor:
        """KL to N(0, 1), summed over all but the batch dimension: [B]."""
        kl = 0.5 * (self.mean.pow(2) + self.logvar.exp() - 1.0 - self.logvar)
        return kl.flatten(1).sum(dim=1)


class Encoder3d(nn.Module):
    def __init__(self, config: VAEConfig):
        super().__init__()
        chans = [config.base_channels * m for m in config.channel_mults]
        transitions = config.level_transitions()
        self.patch_size = config.patch_size
        self.conv_in = CausalConv3d(config.in_channels * config.patch_size ** 2, chans[0], 3)
        self.down = nn.ModuleList()
        ch = chans[0]
        for level, ch_out in enumerate(chans):
            for _ in range(config.num_res_blocks):
                self.down.append(ResBlock3d(ch, ch_out))
                ch = ch_out
            if level < len(chans) - 1:
                spatial, temporal = transitions[level]
                self.down.append(Downsample3d(ch, temporal, spatial))
        self.mid = nn.ModuleList([ResBlock3d(ch, ch), ResBlock3d(ch, ch)])
        self.norm_out = ChannelRMSNorm(ch)
        self.conv_out = CausalConv3d(ch, 2 * config.latent_channels, 3)  # mean, logvar

    def forward(self, x: torch.Tensor, cache: CausalCache | None = None) -> torch.Tensor:
        # x: [B, 3, T, H, W] -> moments [B, 2C, T', H/sf, W/sf]
        p = self.patch_size
        x = rearrange(x, "b c t (h p) (w q) -> b (c p q) t h w", p=p, q=p)  # [B, 3p^2, T, H/p, W/p]
        x = self.conv_in(x, cache)
        for layer in self.down:
            x = layer(x, cache)
        for layer in self.mid:
            x = layer(x, cache)
        return self.conv_out(F.silu(self.norm_out(x)), cache)


class Decoder3d(nn.Module):
    def __init__(self, config: VAEConfig):
        super().__init__()
        chans = [config.decoder_width * m for m in config.channel_mults]
        transitions = config.level_transitions()
        self.patch_size = config.patch_size
        ch = chans[-1]
        self.conv_in = CausalConv3d(config.latent_channels, ch, 3)
        self.mid = nn.ModuleList([ResBlock3d(ch, ch), ResBlock3d(ch, ch)])
        self.up = nn.ModuleList()
        for level in reversed(range(len(chans))):
            for _ in range(config.num_res_blocks + 1):
                self.up.append(ResBlock3d(ch, chans[level]))
                ch = chans[level]
            if level > 0:
                spatial, temporal = transitions[level - 1]
                self.up.append(Upsample3d(ch, temporal, spatial))
        self.norm_out = ChannelRMSNorm(ch)
        self.conv_out = CausalConv3d(ch, config.out_channels * config.patch_size ** 2, 3)

    def forward(self, z: torch.Tensor, cache: CausalCache | None = None) -> torch.Tensor:
        # z: [B, C, T', h, w] -> video [B, 3, tf*(T'-1)+1, h*sf, w*sf]
        x = self.conv_in(z, cache)
        for layer in self.mid:
            x = layer(x, cache)
        for layer in self.up:
            x = layer(x, cache)
        x = self.conv_out(F.silu(self.norm_out(x)), cache)  # [B, 3p^2, T, H/p, W/p]
        p = self.patch_size
        return rearrange(x, "b (c p q) t h w -> b c t (h p) (w q)", p=p, q=p)


class VideoVAE(nn.Module):
    """A VAE as the rest of the model sees it. Subclasses implement ``encode_distribution``
    (posterior over raw latents) and ``decode_raw`` (raw latent -> video); the T = tf*k + 1
    frame contract, chunking and the latent normalisation are shared."""

    def __init__(self, config: VAEConfig):
        super().__init__()
        self.config = config
        self.register_buffer("latent_mean", torch.zeros(config.latent_channels))
        self.register_buffer("latent_std", torch.ones(config.latent_channels))

    # -- validation ---------------------------------------------------------------------------
    def _check_video(self, video: torch.Tensor) -> None:
        c = self.config
        if video.ndim != 5 or video.shape[1] != c.in_channels:
            raise ValueError(f"video must be [B, {c.in_channels}, T, H, W], got {tuple(video.shape)}")
        t, h, w = video.shape[2:]
        if (t - 1) % c.temporal_factor:
            raise ValueError(f"video has {t} frames; the VAE needs {c.temporal_factor}*k+1 frames "
                             f"(e.g. {c.num_video_frames(c.num_latent_frames(t))} or "
                             f"{c.num_video_frames(c.num_latent_frames(t) + 1)}): trim or pad it")
        if h % c.spatial_factor or w % c.spatial_factor:
            raise ValueError(f"video frames are {h}x{w}; height and width must be multiples of "
                             f"{c.spatial_factor}: resize or crop them")
        lo, hi = float(video.min()), float(video.max())
        if lo < -1.5 or hi > 1.5:
            raise ValueError(f"video values must be in -1..1, got {lo:.3g}..{hi:.3g}; convert "
                             "0..1 images with x * 2 - 1")

    def _check_latent(self, latent: torch.Tensor) -> None:
        c = self.config.latent_channels
        if latent.ndim != 5 or latent.shape[1] != c:
            raise ValueError(f"latent must be [B, {c}, T', h, w], got {tuple(latent.shape)}")

    # -- latent normalisation -----------------------------------------------------------------
    def _stat(self, stat: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return stat.to(like.dtype).view(1, -1, 1, 1, 1)

    def normalize(self, z: torch.Tensor) -> torch.Tensor:
        return (z - self._stat(self.latent_mean, z)) / self._stat(self.latent_std, z)

    def denormalize(self, latent: torch.Tensor) -> torch.Tensor:
        return latent * self._stat(self.latent_std, latent) + self._stat(self.latent_mean, latent)

    @torch.no_grad()
    def set_latent_stats(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Per-channel statistics of raw latents (e.g. posterior means over a dataset)."""
        if mean.shape != self.latent_mean.shape or std.shape != self.latent_std.shape:
            raise ValueError(f"latent stats must have shape {tuple(self.latent_mean.shape)}, got "
                             f"{tuple(mean.shape)} and {tuple(std.shape)}")
        if (std <= 0).any():
            raise ValueError("latent std must be positive in every channel")
        self.latent_mean.copy_(mean)
        self.latent_std.copy_(std)

    @property
    def has_latent_stats(self) -> bool:
        """False while the stats are unset (mean 0, std 1: a fresh VAE or a reset one)."""
        return not bool((self.latent_mean == 0).all() and (self.latent_std == 1).all())

    @torch.no_grad()
    def reset_latent_stats(self) -> None:
        """Back to unset (mean 0, std 1): for an encoder whose latent space has moved."""
        self.latent_mean.zero_()
        self.latent_std.fill_(1.0)

    # -- encode / decode ----------------------------------------------------------------------
    def encode_distribution(self, video: torch.Tensor,
                            chunk_frames: int | None = None) -> DiagonalGaussian:
        """Posterior over raw latents; ``chunk_frames`` (multiple of tf) bounds memory."""
        self._check_video(video)
        tf = self.config.temporal_factor
        if chunk_frames is not None and (chunk_frames < 1 or chunk_frames % tf):
            raise ValueError(f"{type(self).__name__}.encode: chunk_frames must be a positive "
                             f"multiple of the temporal factor {tf}, got {chunk_frames}")
        return DiagonalGaussian(self.encode_moments(video, chunk_frames))

    def encode_moments(self, video: torch.Tensor, chunk_frames: int | None) -> torch.Tensor:
        """Checked video -> posterior moments [B, 2C, T', h, w] (mean, then log-variance)."""
        raise NotImplementedError

    def decode_raw(self, z: torch.Tensor, chunk: int | None = None,
                   reference: torch.Tensor | None = None) -> torch.Tensor:
        """Raw (un-normalised) latent [B, C, T', h, w] -> video; ``chunk`` latent frames at a
        time; ``reference`` [B, 3, H, W] for a decoder that uses_reference, else None."""
        raise NotImplementedError

    @property
    def uses_reference(self) -> bool:
        """Whether the decoder also reads the reference image (frame_vae.ReferenceRefiner)."""
        return False

    def encode(self, video: torch.Tensor, chunk_frames: int | None = None, sample: bool = False,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """video [B, 3, T, H, W] in -1..1 -> normalised latent [B, C, T', H/sf, W/sf].

        ``sample=False`` returns the posterior mean (deterministic); a ``generator`` for
        ``sample=True`` must live on the video's device.
        """
        posterior = self.encode_distribution(video, chunk_frames)
        z = posterior.sample(generator) if sample else posterior.mean
        return self.normalize(z)

    def decode(self, latent: torch.Tensor, chunk: int | None = None,
               normalized: bool = True, reference: torch.Tensor | None = None) -> torch.Tensor:
        """latent [B, C, T', h, w] -> video [B, 3, tf*(T'-1)+1, h*sf, w*sf], nominally -1..1
        (not clamped). ``chunk`` latent frames are decoded per step with a causal cache.
        ``reference`` [B, 3, H, W] (-1..1), the image being animated, is read by a decoder that
        uses_reference and ignored by any other; without it such a decoder decodes as it did
        before it gained the reference."""
        self._check_latent(latent)
        if chunk is not None and chunk < 1:
            raise ValueError(f"{type(self).__name__}.decode: chunk must be >= 1 latent frame, "
                             f"got {chunk}")
        z = self.denormalize(latent) if normalized else latent
        if reference is None or not self.uses_reference:
            return self.decode_raw(z, chunk)
        size = (z.shape[-2] * self.config.spatial_factor, z.shape[-1] * self.config.spatial_factor)
        if reference.ndim != 4 or reference.shape[0] != z.shape[0] or reference.shape[1] != 3 \
                or tuple(reference.shape[-2:]) != size:
            raise ValueError(f"{type(self).__name__}.decode: reference must be [B, 3, H, W] = "
                             f"[{z.shape[0]}, 3, {size[0]}, {size[1]}] for this latent, got "
                             f"{list(reference.shape)}")
        return self.decode_raw(z, chunk, reference=reference.to(z.dtype))

    def forward(self, video: torch.Tensor, generator: torch.Generator | None = None):
        """Training pass: (reconstruction, posterior); the reconstruction decodes a sample."""
        posterior = self.encode_distribution(video)
        return self.decode(posterior.sample(generator), normalized=False), posterior


class CausalVAE(VideoVAE):
    """Causal 3D VAE (``architecture`` "causal3d"), see the module docstring."""

    def __init__(self, config: VAEConfig):
        super().__init__(config)
        self.encoder = Encoder3d(config)
        self.decoder = Decoder3d(config)

    def encode_moments(self, video: torch.Tensor, chunk_frames: int | None) -> torch.Tensor:
        return run_in_chunks(self.encoder, video, chunk_frames, self.config.temporal_factor,
                             "CausalVAE.encode")

    def decode_raw(self, z: torch.Tensor, chunk: int | None = None) -> torch.Tensor:
        if chunk is None:
            return self.decoder(z, None)
        cache: CausalCache = {}
        return torch.cat([self.decoder(z[:, :, s:s + chunk], cache)
                          for s in range(0, z.shape[2], chunk)], dim=2)


def build_vae(config: VAEConfig) -> VideoVAE:
    """The VAE ``config.architecture`` names."""
    if config.architecture == "frame_stack":
        from .frame_vae import FrameStackVAE

        return FrameStackVAE(config)
    return CausalVAE(config)
