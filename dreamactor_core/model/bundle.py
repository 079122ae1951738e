"""DreamActorModel: every network of the generator in one module, saved as ONE safetensors file.

Components (tensor name prefixes in the file): ``vae``, ``pose_encoder``, ``dit``,
``face_encoder`` (FaceMotionEncoder: face crops -> motion tokens) and ``audio_encoder``
(AudioToMotionEncoder: speech -> the same tokens).

The file is a weights.py bundle (same tensor names, ``format``, ``components``, ``dtype`` and
``dreamactor_config`` metadata, so ``weights.read_config`` / ``weights.load_into`` read it) with
one more metadata entry, ``dreamactor_motion_config``: JSON ``{"face": FaceMotionConfig,
"audio": AudioMotionConfig}``. ModelConfig has no slot for the motion encoders and rejects
unknown keys, hence a separate entry rather than extra keys inside ``dreamactor_config``.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path

import torch
from safetensors import safe_open
from torch import nn

from . import weights
from .audio_motion import AudioMotionConfig, AudioToMotionEncoder
from .config import ModelConfig, dataclass_from_dict
from .dit import DreamActorDiT
from .face_motion import FaceMotionConfig, FaceMotionEncoder
from .pose_encoder import PoseEncoder
from .vae import build_vae

MOTION_CONFIG_KEY = "dreamactor_motion_config"
COMPONENTS = ("vae", "pose_encoder", "dit", "face_encoder", "audio_encoder")


def default_face_config(config: ModelConfig) -> FaceMotionConfig:
    """FaceMotionConfig emitting the tokens the DiT expects (other sizes: the module defaults)."""
    return FaceMotionConfig(token_dim=config.dit.face_token_dim,
                            tokens_per_frame=config.dit.face_tokens_per_frame)


def default_audio_config(config: ModelConfig) -> AudioMotionConfig:
    return AudioMotionConfig(token_dim=config.dit.face_token_dim,
                             tokens_per_frame=config.dit.face_tokens_per_frame)


def check_motion_configs(config: ModelConfig, face: FaceMotionConfig,
                         audio: AudioMotionConfig) -> None:
    """Both motion encoders must emit [T, face_tokens_per_frame, face_token_dim] tokens."""
    want = (config.dit.face_tokens_per_frame, config.dit.face_token_dim)
    for name, cfg in (("face", face), ("audio", audio)):
        got = (cfg.tokens_per_frame, cfg.token_dim)
        if got != want:
            raise ValueError(f"{name} motion encoder emits {got[0]} tokens of width {got[1]} per "
                             f"frame, but the DiT expects {want[0]} of width {want[1]} "
                             f"(dit.face_tokens_per_frame, dit.face_token_dim); build the "
                             f"{name} config with tokens_per_frame={want[0]}, token_dim={want[1]}")


class DreamActorModel(nn.Module):
    """The whole generator. Build with ``from_config``; ``save`` / ``load`` one bundle file."""

    def __init__(self, config: ModelConfig, face_config: FaceMotionConfig | None = None,
                 audio_config: AudioMotionConfig | None = None):
        super().__init__()
        face_config = face_config or default_face_config(config)
        audio_config = audio_config or default_audio_config(config)
        check_motion_configs(config, face_config, audio_config)
        self.config = config
        self.face_config = face_config
        self.audio_config = audio_config
        self.vae = build_vae(config.vae)
        self.pose_encoder = PoseEncoder.from_config(config)
        self.dit = DreamActorDiT(config.dit)
        self.face_encoder = FaceMotionEncoder(face_config)
        self.audio_encoder = AudioToMotionEncoder(audio_config)

    @classmethod
    def from_config(cls, config: ModelConfig, face_config: FaceMotionConfig | None = None,
                    audio_config: AudioMotionConfig | None = None) -> "DreamActorModel":
        return cls(config, face_config, audio_config)

    @property
    def device(self) -> torch.device:
        return next(self.dit.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.dit.parameters()).dtype

    def components(self) -> dict[str, nn.Module]:
        return {name: getattr(self, name) for name in COMPONENTS}

    def motion_config_json(self) -> str:
        return json.dumps({"face": asdict(self.face_config), "audio": asdict(self.audio_config)},
                          sort_keys=True)

    # -- files --------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike, dtype=None) -> Path:
        """Writes every component and all configs to one safetensors file, atomically.

        ``dtype`` "fp16"/"bf16" stores floating tensors in half precision.
        """
        return weights.save_bundle(path, self.components(), self.config, dtype,
                                   extra_metadata={MOTION_CONFIG_KEY: self.motion_config_json()})

    @classmethod
    def read_configs(cls, path: str | os.PathLike
                     ) -> tuple[ModelConfig, FaceMotionConfig, AudioMotionConfig]:
        """The three configs stored in a bundle, validated, without loading any tensor."""
        config = weights.read_config(path)  # also rejects missing / corrupt files clearly
        with safe_open(str(path), framework="pt", device="cpu") as f:
            text = (f.metadata() or {}).get(MOTION_CONFIG_KEY)
        if text is None:
            raise ValueError(f"{path} has no '{MOTION_CONFIG_KEY}' metadata: it holds only the "
                             "backbone (VAE, pose encoder, DiT); load it with "
                             "weights.load_bundle, or save the full model with "
                             "DreamActorModel.save")
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: '{MOTION_CONFIG_KEY}' is not valid JSON: {exc}") from None
        if not isinstance(data, dict) or set(data) != {"face", "audio"}:
            raise ValueError(f"{path}: '{MOTION_CONFIG_KEY}' must be an object with keys "
                             f"'face' and 'audio'")
        face = dataclass_from_dict(FaceMotionConfig, data["face"], f"{path}: face motion config",
                                   lists_to_tuples=True)
        audio = dataclass_from_dict(AudioMotionConfig, data["audio"], f"{path}: audio motion config",
                                    lists_to_tuples=True)
        try:
            check_motion_configs(config, face, audio)
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from None
        return config, face, audio

    @classmethod
    def load(cls, path: str | os.PathLike, device: str | torch.device = "cpu") -> "DreamActorModel":
        """Builds the model from the stored configs and loads every tensor strictly (all
        present, none unexpected, shapes equal; errors name the tensor). Returns it in eval
        mode on ``device``, in float32 whatever the storage dtype."""
        config, face, audio = cls.read_configs(path)
        model = cls(config, face, audio)
        weights.load_into(path, model.components())
        return model.to(device).eval()
