"""A DreamActorModel small enough for CPU tests: 32x32 frames, DiT dim 64 / depth 2, random
weights (the zero-initialised gates and projections are made non-zero so outputs depend on
every input)."""

import pytest
import torch

from dreamactor_core.model.audio_motion import AudioMotionConfig
from dreamactor_core.model.bundle import DreamActorModel
from dreamactor_core.model.config import DiTConfig, ModelConfig, VAEConfig
from dreamactor_core.model.face_motion import FaceMotionConfig

torch.set_num_threads(1)


def small_config() -> ModelConfig:
    return ModelConfig(
        vae=VAEConfig(latent_channels=4, base_channels=8, channel_mults=(1, 1, 1),
                      num_res_blocks=1, spatial_factor=4, temporal_factor=4),
        dit=DiTConfig(latent_channels=4, temporal_factor=4, pose_latent_channels=4,
                      pose_hidden_channels=8, dim=64, depth=2, heads=4, face_token_dim=32,
                      face_tokens_per_frame=2, time_freq_dim=64),
        segment_frames=9, frame_height=32, frame_width=32, name="test")


def build_model(seed: int = 0) -> DreamActorModel:
    torch.manual_seed(seed)
    face = FaceMotionConfig(token_dim=32, tokens_per_frame=2, image_size=32, channels=(8, 16),
                            hidden_dim=32)
    audio = AudioMotionConfig(token_dim=32, tokens_per_frame=2, hidden_dim=32, num_heads=2,
                              window_layers=1, temporal_layers=1)
    model = DreamActorModel.from_config(small_config(), face, audio).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model


@pytest.fixture(scope="session")
def model() -> DreamActorModel:
    return build_model()


@pytest.fixture
def inputs():
    """reference [32, 32, 3], guidance [21, 32, 32, 6] (3 segments of 9 frames), tokens."""
    g = torch.Generator().manual_seed(1)
    return (torch.rand(32, 32, 3, generator=g), torch.rand(21, 32, 32, 6, generator=g),
            torch.randn(21, 2, 32, generator=g))


@pytest.fixture(scope="session")
def make_model():
    """build_model as a fixture (test files cannot import conftest under importlib mode)."""
    return build_model


@pytest.fixture
def config() -> ModelConfig:
    return small_config()
