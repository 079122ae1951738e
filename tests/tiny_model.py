"""A random-weight DreamActor bundle small enough for CPU integration tests (64x64 frames).

Its weights are random: it checks wiring, shapes, determinism and errors, not image quality."""

from __future__ import annotations

import pathlib

import torch

from dreamactor_core.model.audio_motion import AudioMotionConfig
from dreamactor_core.model.bundle import DreamActorModel
from dreamactor_core.model.config import DiTConfig, ModelConfig, VAEConfig
from dreamactor_core.model.face_motion import FaceMotionConfig


def tiny_model(seed: int = 0) -> DreamActorModel:
    config = ModelConfig(
        vae=VAEConfig(latent_channels=4, base_channels=8, channel_mults=(1, 1, 1), num_res_blocks=1,
                      spatial_factor=4, temporal_factor=4),
        dit=DiTConfig(latent_channels=4, temporal_factor=4, pose_latent_channels=4, pose_hidden_channels=8,
                      dim=64, depth=2, heads=4, face_token_dim=32, face_tokens_per_frame=2, time_freq_dim=64),
        segment_frames=9, frame_height=64, frame_width=64, name="tiny-random-test")
    face = FaceMotionConfig(token_dim=32, tokens_per_frame=2, image_size=32, channels=(8, 16), hidden_dim=32)
    audio = AudioMotionConfig(token_dim=32, tokens_per_frame=2, hidden_dim=32, num_heads=2,
                              window_layers=1, temporal_layers=1)
    torch.manual_seed(seed)
    model = DreamActorModel.from_config(config, face, audio).eval()
    with torch.no_grad():  # zero-initialised gates would make the output ignore its inputs
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model


def write_tiny_model(path: pathlib.Path, seed: int = 0) -> pathlib.Path:
    return tiny_model(seed).save(path)
