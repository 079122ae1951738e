"""Shared fixtures of the training tests: a tiny model, tiny synthetic clips (32x32, 5 frames)."""

import pytest
import torch

from dreamactor_core.train.config import TrainConfig


def tiny_train_config(**overrides) -> TrainConfig:
    base = dict(
        model="tiny",
        model_overrides={
            "vae": {"latent_channels": 4, "base_channels": 8, "channel_mults": [1, 2, 2],
                    "num_res_blocks": 1, "spatial_factor": 4, "temporal_factor": 4},
            "dit": {"latent_channels": 4, "pose_latent_channels": 4, "pose_hidden_channels": 8,
                    "dim": 32, "depth": 1, "heads": 2, "face_token_dim": 16,
                    "face_tokens_per_frame": 2, "time_freq_dim": 32},
            "segment_frames": 5, "frame_height": 32, "frame_width": 32,
        },
        face_motion={"image_size": 32, "channels": [8, 16], "hidden_dim": 32},
        audio_motion={"hidden_dim": 16, "num_heads": 2, "window": 4, "window_layers": 1,
                      "temporal_layers": 1},
        data={"kind": "synthetic", "num_clips": 8, "frames": [5, 5], "fps": 25.0},
        batch_size=2, lr=1e-3, warmup_steps=1, latent_stats_clips=2, checkpoint_every=1000,
        log_every=1, ema_decay=0.9,
    )
    base.update(overrides)
    return TrainConfig(**base)


@pytest.fixture
def tiny_config():
    return tiny_train_config


@pytest.fixture(scope="session")
def stage1_run(tmp_path_factory):
    """A run folder of 3 stage-1 steps: the --init for stages 2 and audio (a fresh DiT's
    zero-initialised output would pass no gradient to the face parts)."""
    from dreamactor_core.train.trainer import Trainer

    out = tmp_path_factory.mktemp("stage1")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    Trainer(tiny_train_config(), "1", out, 3, device="cpu").run()
    torch.set_num_threads(threads)
    return out


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
