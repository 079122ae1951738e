"""TrainModules: every trainable component in one nn.Module, so DDP / FSDP wrap one object and
one forward call computes the stage's loss.

Components (also the tensor-name prefixes in checkpoints): ``vae``, ``pose_encoder``, ``dit``,
``face_encoder``, ``audio_encoder`` -- the names and layout of model/bundle.py's
DreamActorModel file, so a checkpoint's model/ema.safetensors loads with
``DreamActorModel.load`` (the motion-encoder configs travel in its metadata, see
``motion_config_json``).
"""

from __future__ import annotations

import json
from dataclasses import asdict

import torch
from torch import nn

from ..model.audio_motion import AudioToMotionEncoder
from ..model.dit import DreamActorDiT
from ..model.face_motion import FaceMotionEncoder
from ..model.pose_encoder import PoseEncoder
from ..model.vae import VideoVAE, build_vae
from .config import TrainConfig
from .stages import Draws, stage_loss

COMPONENTS = ("vae", "pose_encoder", "dit", "face_encoder", "audio_encoder")


class TrainModules(nn.Module):
    def __init__(self, config: TrainConfig):
        super().__init__()
        self.train_config = config
        self.model_config = config.model_config()
        self.vae = build_vae(self.model_config.vae)
        self.pose_encoder = PoseEncoder.from_config(self.model_config)
        self.dit = DreamActorDiT(self.model_config.dit)
        self.dit.gradient_checkpointing = config.gradient_checkpointing
        self.face_encoder = FaceMotionEncoder(config.face_motion_config())
        self.audio_encoder = AudioToMotionEncoder(config.audio_motion_config())

    def components(self) -> dict[str, nn.Module]:
        return {name: getattr(self, name) for name in COMPONENTS}

    def motion_config_json(self) -> str:
        """The motion encoders' configs, as model/bundle.py stores them in file metadata."""
        return json.dumps({"face": asdict(self.face_encoder.config),
                           "audio": asdict(self.audio_encoder.config)}, sort_keys=True)

    def forward(self, batch: dict, draws: Draws | None, stage: str) -> tuple[torch.Tensor, dict]:
        return stage_loss(self, batch, draws, stage, self.train_config)


def build_modules(config: TrainConfig, device: torch.device | str = "cpu") -> TrainModules:
    """All components, initialised deterministically from ``config.seed``."""
    state = torch.random.get_rng_state()
    torch.manual_seed(config.seed)
    try:
        modules = TrainModules(config)
    finally:
        torch.random.set_rng_state(state)
    return modules.to(device)


@torch.no_grad()
def estimate_latent_stats(vae: VideoVAE, videos: list[torch.Tensor]) -> None:
    """Sets the VAE's per-channel latent mean/std from posterior means of ``videos``
    ([3, T, H, W] each, -1..1), so the DiT sees roughly unit-variance latents."""
    device = vae.latent_mean.device
    means = [vae.encode_distribution(v[None].to(device)).mean for v in videos]  # [1, C, T', h, w]
    flat = torch.cat([m.transpose(0, 1).flatten(1) for m in means], dim=1)  # [C, N]
    vae.set_latent_stats(flat.mean(dim=1), flat.std(dim=1).clamp_min(1e-4))
