"""Configuration of the generator: VAE, DiT (with its pose encoder) and the whole model.

Configs are plain dataclasses that round-trip through JSON (``to_dict`` / ``from_dict``) so they
can travel in a safetensors file's metadata. ``from_dict`` rejects unknown keys, so a file written
by a newer or different model never loads silently into the wrong architecture.

Presets
-------
``tiny``  64x64 frames, spatial factor 4 (16x16x8 latent), DiT dim 192 / depth 6 / heads 6.
          About 7.5M parameters in all (VAE 2.6M, DiT 4.9M); trains and samples on a CPU.
``paper`` 960x640 frames, Wan2.1-like VAE (factor 8x4, 16 latent channels, base 96, mults
          1/2/4/4), DiT dim 3072 / depth 32 / heads 24 (head dim 128), 73-frame segments.
          ``count_parameters(paper())`` builds it on the ``meta`` device (instant):
          VAE 130.5M, pose encoder 0.36M, DiT 6.17B (per block ~192M: joint attention 4D^2,
          face cross-attention 2D^2 + 2*D*D_face, MLP 8D^2, per-block adaLN 6D^2), total 6.30B.
          ``estimate_activation_bytes(paper())`` for one 73-frame segment with one reference:
          (19 + 1) latent frames x 60x40 patches = 48,000 tokens; ~4.4 GB of bf16 activations
          for an inference pass (one block's working set, SDPA keeps no L^2 matrix) and
          ~13.9 GB for training with per-block gradient checkpointing, before weights
          (12.6 GB in bf16), gradients and optimizer state. Its face-token sizes (512-d,
          32 per frame) are our assumption; the paper does not state them.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any


VAE_ARCHITECTURES = ("causal3d", "frame_stack")


def _is_power_of_two(n: int) -> bool:
    return n >= 1 and (n & (n - 1)) == 0


# VAEConfig fields naming a part that a trained decoder can gain at zero (train.widen), so the
# runs that continue such a model must set them as its file does (train.config).
DECODER_ADDITIONS = ("decoder_temporal_mix", "decoder_refine_channels",
                     "decoder_reference_channels", "decoder_reference_attention")


@dataclass
class VAEConfig:
    """Causal 3D VAE: video [B, 3, T, H, W] in -1..1 <-> latent [B, C, (T-1)//tf+1, H/sf, W/sf]."""

    in_channels: int = 3
    out_channels: int = 3
    latent_channels: int = 16
    base_channels: int = 96
    # One entry per resolution level. Between consecutive levels the first
    # log2(spatial_factor / patch_size) transitions halve H and W and the last
    # log2(temporal_factor) halve time (a transition may do both), so there are
    # max(those two counts) + 1 levels.
    channel_mults: tuple[int, ...] = (1, 2, 4, 4)
    num_res_blocks: int = 2
    spatial_factor: int = 8
    temporal_factor: int = 4
    # Pixel (un)shuffle at the input / output (Wan2.2-VAE style): the first level already runs
    # at H/patch_size, which makes small CPU-trained VAEs several times cheaper.
    patch_size: int = 1
    # The decoder's width (None: base_channels). A decoder widened after training (see
    # vae_widen) keeps the encoder, hence the latent space the DiT was trained on.
    decoder_base_channels: int | None = None
    # "causal3d": 3D causal convolutions throughout, time compressed inside the network (vae.py).
    # "frame_stack": a 2D autoencoder per frame to latent_channels / temporal_factor channels,
    # temporal_factor frames stacked along channels per latent frame (frame_vae.py); its levels
    # are the spatial ones only: log2(spatial_factor / patch_size) + 1 channel_mults.
    architecture: str = "causal3d"
    # frame_stack only: how many earlier frames each decoded frame also sees, through one causal
    # temporal convolution in the decoder's first level (0: every frame decoded alone). A
    # per-frame decoder cannot smooth the jumps between latent frames that a DiT samples slightly
    # apart; added to a trained decoder (train.widen --decoder-temporal-mix) it starts at zero.
    decoder_temporal_mix: int = 0
    # frame_stack only: width of a full-resolution refinement head after the decoder's last
    # level (0: none). That level runs at H/patch_size and emits each patch_size x patch_size
    # patch through one linear conv; the head upsamples the features back to H x W and adds a
    # correction to those frames. Added to a trained decoder (train.widen --decoder-refine) it
    # starts at zero.
    decoder_refine_channels: int = 0
    # frame_stack only: width of a full-resolution head that corrects every decoded frame from
    # the reference image being animated (0: none; frame_vae.ReferenceRefiner). The latent
    # cannot carry fine texture; on a still camera the reference holds most of it. Added to a
    # trained decoder (train.widen --decoder-reference) it starts at zero.
    decoder_reference_channels: int = 0
    # frame_stack only: heads of an attention from the decoder's first-level features to the
    # reference image's encoder features (0: none; frame_vae.ReferenceAttention), which fetches
    # texture from wherever the same part sits in the reference. Added to a trained decoder
    # (train.widen --decoder-reference-attention) it starts at zero.
    decoder_reference_attention: int = 0

    def __post_init__(self) -> None:
        self.channel_mults = tuple(int(m) for m in self.channel_mults)
        for name in ("in_channels", "out_channels", "latent_channels", "base_channels",
                     "num_res_blocks", "patch_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"VAEConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.decoder_base_channels is not None and int(self.decoder_base_channels) < 1:
            raise ValueError(f"VAEConfig.decoder_base_channels must be >= 1 (or null for "
                             f"base_channels), got {self.decoder_base_channels}")
        if not _is_power_of_two(self.spatial_factor) or self.spatial_factor < 2:
            raise ValueError(f"VAEConfig.spatial_factor must be a power of two >= 2 (4 or 8), "
                             f"got {self.spatial_factor}")
        if self.temporal_factor not in (1, 2, 4):
            raise ValueError(f"VAEConfig.temporal_factor must be 1, 2 or 4, got {self.temporal_factor}")
        if not _is_power_of_two(self.patch_size) or self.patch_size > self.spatial_factor:
            raise ValueError(f"VAEConfig.patch_size must be a power of two <= spatial_factor "
                             f"({self.spatial_factor}), got {self.patch_size}")
        if self.architecture not in VAE_ARCHITECTURES:
            raise ValueError(f"VAEConfig.architecture must be one of {VAE_ARCHITECTURES}, got "
                             f"{self.architecture!r}")
        for name in DECODER_ADDITIONS:  # each a size, 0 for none, of a frame_stack decoder part
            value = int(getattr(self, name))
            if value < 0:
                raise ValueError(f"VAEConfig.{name} must be >= 0 (0: none), got {value}")
            if value and self.architecture != "frame_stack":
                raise ValueError(f"VAEConfig.{name} needs the frame_stack VAE; set it to 0")
        if self.decoder_refine_channels and self.patch_size < 2:
            raise ValueError("VAEConfig.decoder_refine_channels needs patch_size >= 2 (a decoder "
                             "whose last level runs below the frame size); set it to 0")
        if self.architecture == "frame_stack":
            if self.latent_channels % self.temporal_factor:
                raise ValueError(f"VAEConfig.latent_channels ({self.latent_channels}) must be a "
                                 f"multiple of temporal_factor ({self.temporal_factor}) for the "
                                 "frame_stack VAE: each latent frame stacks that many frames")
            n_levels = self.num_spatial_downsamples + 1
            rule = "log2(spatial_factor / patch_size) + 1"
        else:
            if self.num_temporal_downsamples > int(math.log2(self.spatial_factor)):
                raise ValueError("VAEConfig.temporal_factor cannot exceed spatial_factor "
                                 f"({self.temporal_factor} > {self.spatial_factor})")
            n_levels = max(self.num_spatial_downsamples, self.num_temporal_downsamples) + 1
            rule = "max(log2(spatial_factor / patch_size), log2(temporal_factor)) + 1"
        if len(self.channel_mults) != n_levels:
            raise ValueError(f"VAEConfig.channel_mults needs {n_levels} entries (one per level: "
                             f"{rule}) for the {self.architecture} VAE with spatial_factor "
                             f"{self.spatial_factor}, patch_size {self.patch_size}, "
                             f"temporal_factor {self.temporal_factor}; "
                             f"got {len(self.channel_mults)}: {self.channel_mults}")
        heads = int(self.decoder_reference_attention)
        width = self.decoder_width * self.channel_mults[-1]
        if heads and (width % heads or (width // heads) % 2):
            raise ValueError(f"VAEConfig.decoder_reference_attention ({heads} heads) must split the "
                             f"decoder's first-level width {width} into heads of an even size "
                             f"(e.g. {max(1, width // 32)})")

    @property
    def decoder_width(self) -> int:
        return self.base_channels if self.decoder_base_channels is None else self.decoder_base_channels

    @property
    def num_spatial_downsamples(self) -> int:
        """Spatial halvings inside the network (after the input pixel unshuffle)."""
        return int(math.log2(self.spatial_factor // self.patch_size))

    @property
    def num_temporal_downsamples(self) -> int:
        return int(math.log2(self.temporal_factor))

    def level_transitions(self) -> list[tuple[bool, bool]]:
        """(halves space, halves time) for each transition between levels, encoder order."""
        n = len(self.channel_mults) - 1
        n_s, n_t = self.num_spatial_downsamples, self.num_temporal_downsamples
        return [(i < n_s, i >= n - n_t) for i in range(n)]

    def num_latent_frames(self, num_frames: int) -> int:
        """T frames -> (T-1)//tf + 1 latent frames (the first frame is kept alone, causally)."""
        return (int(num_frames) - 1) // self.temporal_factor + 1

    def num_video_frames(self, num_latent_frames: int) -> int:
        """Inverse of ``num_latent_frames`` for valid lengths: T' latent -> tf*(T'-1)+1 frames."""
        return self.temporal_factor * (int(num_latent_frames) - 1) + 1


@dataclass
class DiTConfig:
    """DreamActor DiT and its pose encoder.

    Face window: latent frame k attends to the face tokens of video frames
    max(0, tf*k - face_window + 1) .. tf*k, i.e. exactly the frames the VAE folded into it when
    face_window == temporal_factor.
    """

    latent_channels: int = 16  # must equal VAEConfig.latent_channels
    temporal_factor: int = 4  # must equal VAEConfig.temporal_factor (face windows)
    pose_channels: int = 6  # skeleton-map RGB + head-sphere RGB
    pose_latent_channels: int = 16  # pose encoder output, concatenated with the noisy latent
    pose_hidden_channels: int = 128
    dim: int = 3072
    depth: int = 32
    heads: int = 24
    patch_size: tuple[int, int, int] = (1, 2, 2)  # over latent (t, h, w)
    mlp_ratio: float = 4.0
    face_token_dim: int = 512
    face_tokens_per_frame: int = 32  # N the face-motion encoder emits; the DiT accepts any N
    face_window: int = 4
    time_freq_dim: int = 256
    rope_theta: float = 10000.0
    # Trained to continue from clean context frames (DreamActorDiT's num_clean_frames): the
    # pipeline then holds each later segment's first latent (the previous segment's last frame,
    # encoded alone) clean instead of noising it.
    clean_context: bool = False

    def __post_init__(self) -> None:
        self.patch_size = tuple(int(p) for p in self.patch_size)
        self.clean_context = bool(self.clean_context)
        if len(self.patch_size) != 3 or min(self.patch_size) < 1:
            raise ValueError(f"DiTConfig.patch_size must be three positive ints (t, h, w), "
                             f"got {self.patch_size}")
        if self.patch_size[0] != 1:
            raise ValueError("DiTConfig.patch_size[0] (temporal) must be 1: references and face "
                             f"windows are per latent frame; got {self.patch_size}")
        if self.dim % self.heads:
            raise ValueError(f"DiTConfig.dim ({self.dim}) must be divisible by heads ({self.heads})")
        if (self.dim // self.heads) % 2:
            raise ValueError(f"DiTConfig head dim ({self.dim // self.heads}) must be even for RoPE")
        for name in ("latent_channels", "pose_channels", "pose_latent_channels",
                     "pose_hidden_channels", "depth", "face_token_dim", "face_tokens_per_frame",
                     "face_window", "temporal_factor"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"DiTConfig.{name} must be >= 1, got {getattr(self, name)}")

    @property
    def head_dim(self) -> int:
        return self.dim // self.heads


@dataclass
class ModelConfig:
    vae: VAEConfig = field(default_factory=VAEConfig)
    dit: DiTConfig = field(default_factory=DiTConfig)
    segment_frames: int = 73
    frame_height: int = 960
    frame_width: int = 640
    name: str = "custom"

    def __post_init__(self) -> None:
        if isinstance(self.vae, dict):
            self.vae = dataclass_from_dict(VAEConfig, self.vae, "ModelConfig.vae")
        if isinstance(self.dit, dict):
            self.dit = dataclass_from_dict(DiTConfig, self.dit, "ModelConfig.dit")
        if self.dit.latent_channels != self.vae.latent_channels:
            raise ValueError(f"dit.latent_channels ({self.dit.latent_channels}) must equal "
                             f"vae.latent_channels ({self.vae.latent_channels})")
        if self.dit.temporal_factor != self.vae.temporal_factor:
            raise ValueError(f"dit.temporal_factor ({self.dit.temporal_factor}) must equal "
                             f"vae.temporal_factor ({self.vae.temporal_factor})")
        tf = self.vae.temporal_factor
        if self.segment_frames < 1 or (self.segment_frames - 1) % tf:
            raise ValueError(f"segment_frames must be {tf}*k+1 (e.g. 73), got {self.segment_frames}")
        step = self.frame_multiple
        for name in ("frame_height", "frame_width"):
            value = getattr(self, name)
            if value < step or value % step:
                raise ValueError(f"{name} must be a positive multiple of {step} "
                                 f"(VAE factor x patch size), got {value}")

    @property
    def frame_multiple(self) -> int:
        """Frame sides must be multiples of this (VAE spatial factor times DiT patch size)."""
        return self.vae.spatial_factor * max(self.dit.patch_size[1], self.dit.patch_size[2])

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(asdict(self)))  # tuples -> lists, plain JSON types only

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelConfig":
        return dataclass_from_dict(cls, data, "ModelConfig")

    @classmethod
    def from_json(cls, text: str) -> "ModelConfig":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"model config is not valid JSON: {exc}") from None
        return cls.from_dict(data)


def dataclass_from_dict(cls, data: Any, where: str, lists_to_tuples: bool = False):
    """Builds dataclass ``cls`` from JSON data; unknown keys and invalid values raise a
    ValueError naming ``where`` (a typo must never train or load silently with a default)."""
    if not isinstance(data, dict):
        raise ValueError(f"{where} must be a JSON object, got {type(data).__name__}")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"unknown key(s) {unknown} in {where}; known keys: {sorted(known)}. "
                         "A file may have been written for a different model version.")
    if lists_to_tuples:
        data = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
    try:
        return cls(**data)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"invalid {where}: {exc}") from None


def tiny() -> ModelConfig:
    """CPU-sized model: 64x64 frames, 16x16x8 latent, ~7.5M parameters."""
    return ModelConfig(
        vae=VAEConfig(latent_channels=8, base_channels=32, channel_mults=(1, 2, 2),
                      num_res_blocks=1, spatial_factor=4, temporal_factor=4),
        dit=DiTConfig(latent_channels=8, temporal_factor=4, pose_latent_channels=8,
                      pose_hidden_channels=32, dim=192, depth=6, heads=6,
                      face_token_dim=128, face_tokens_per_frame=4),
        segment_frames=17, frame_height=64, frame_width=64, name="tiny")


def paper() -> ModelConfig:
    """Paper-scale model (960x640, 73-frame segments); far too large for a CPU."""
    return ModelConfig(vae=VAEConfig(), dit=DiTConfig(), segment_frames=73,
                       frame_height=960, frame_width=640, name="paper")


PRESETS = {"tiny": tiny, "paper": paper}


def preset(name: str) -> ModelConfig:
    if name not in PRESETS:
        raise ValueError(f"unknown model preset {name!r}; choose one of {sorted(PRESETS)}")
    return PRESETS[name]()


def count_parameters(config: ModelConfig) -> dict[str, int]:
    """Parameter counts per component, built on the ``meta`` device (no memory, no init cost)."""
    import torch

    from .dit import DreamActorDiT
    from .pose_encoder import PoseEncoder
    from .vae import build_vae

    with torch.device("meta"):
        modules = {"vae": build_vae(config.vae), "pose_encoder": PoseEncoder.from_config(config),
                   "dit": DreamActorDiT(config.dit)}
    counts = {name: sum(p.numel() for p in m.parameters()) for name, m in modules.items()}
    counts["total"] = sum(counts.values())
    return counts


def estimate_activation_bytes(config: ModelConfig, num_frames: int | None = None,
                              num_refs: int = 1, bytes_per_value: int = 2) -> dict[str, int]:
    """Rough DiT activation memory for one segment (a planning number, not a measurement).

    inference: one block's working set: the residual stream, qkv (3x), attention output,
      the MLP hidden (mlp_ratio x) and its activation copy, all [L, D]; SDPA/flash attention
      keeps no [L, L] matrix.
    training_checkpointed: the above plus every block's saved input [L, D] (gradient
      checkpointing per block), i.e. depth x L x D more.
    """
    frames = config.segment_frames if num_frames is None else int(num_frames)
    d = config.dit
    t_lat = config.vae.num_latent_frames(frames)
    h = config.frame_height // config.vae.spatial_factor // d.patch_size[1]
    w = config.frame_width // config.vae.spatial_factor // d.patch_size[2]
    tokens = (t_lat + num_refs) * h * w
    per_block = tokens * d.dim * (1 + 3 + 1 + 2 * d.mlp_ratio + 2)
    inference = int(per_block * bytes_per_value)
    saved = tokens * d.dim * d.depth * bytes_per_value
    return {"tokens": tokens, "inference": inference,
            "training_checkpointed": int(inference + saved)}
