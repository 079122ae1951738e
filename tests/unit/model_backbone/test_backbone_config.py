import json

import pytest

from dreamactor_core.model.config import (DiTConfig, ModelConfig, VAEConfig, count_parameters,
                                          estimate_activation_bytes, paper, preset, tiny)


@pytest.mark.parametrize("make", [tiny, paper])
def test_round_trip_through_json(make):
    config = make()
    text = json.dumps(config.to_dict())
    back = ModelConfig.from_dict(json.loads(text))
    assert back == config
    assert ModelConfig.from_json(config.to_json()) == config
    assert isinstance(back.vae.channel_mults, tuple) and isinstance(back.dit.patch_size, tuple)


def test_unknown_keys_are_rejected_with_their_name():
    data = tiny().to_dict()
    data["dit"]["cross_frobnicate"] = 3
    with pytest.raises(ValueError, match=r"cross_frobnicate.*ModelConfig\.dit"):
        ModelConfig.from_dict(data)
    data = tiny().to_dict()
    data["extra_top"] = 1
    with pytest.raises(ValueError, match="extra_top"):
        ModelConfig.from_dict(data)
    with pytest.raises(ValueError, match="not valid JSON"):
        ModelConfig.from_json("{nope")


def test_frame_counting_keeps_the_first_frame_alone():
    vae = VAEConfig()
    assert vae.num_latent_frames(73) == 19 and vae.num_video_frames(19) == 73
    assert vae.num_latent_frames(1) == 1 and vae.num_latent_frames(5) == 2
    assert VAEConfig(spatial_factor=4, channel_mults=(1, 2, 2)).num_spatial_downsamples == 2


@pytest.mark.parametrize("kwargs, match", [
    ({"spatial_factor": 6}, "power of two"),
    ({"channel_mults": (1, 2)}, "channel_mults"),
    ({"temporal_factor": 3}, "temporal_factor"),
    ({"spatial_factor": 2, "channel_mults": (1, 2), "temporal_factor": 4}, "cannot exceed"),
])
def test_bad_vae_configs(kwargs, match):
    with pytest.raises(ValueError, match=match):
        VAEConfig(**kwargs)


def test_bad_dit_and_model_configs():
    with pytest.raises(ValueError, match="divisible by heads"):
        DiTConfig(dim=100, heads=3)
    with pytest.raises(ValueError, match="patch_size"):
        DiTConfig(patch_size=(2, 2, 2))
    with pytest.raises(ValueError, match="segment_frames"):
        ModelConfig(segment_frames=72)
    with pytest.raises(ValueError, match="latent_channels"):
        ModelConfig(vae=VAEConfig(latent_channels=8))
    with pytest.raises(ValueError, match="frame_height"):
        ModelConfig(frame_height=100)
    with pytest.raises(ValueError, match="unknown model preset"):
        preset("huge")


def test_parameter_counts_on_meta_device():
    small = count_parameters(tiny())
    assert 4e6 <= small["total"] <= 8e6
    assert small["total"] == small["vae"] + small["dit"] + small["pose_encoder"]
    big = count_parameters(paper())
    assert 5e9 < big["dit"] < 8e9 and 1e8 < big["vae"] < 2e8


def test_activation_estimate_for_a_paper_segment():
    est = estimate_activation_bytes(paper(), num_refs=1)
    assert est["tokens"] == (19 + 1) * 60 * 40
    assert 1e9 < est["inference"] < est["training_checkpointed"] < 1e11
