import pytest
import torch

from dreamactor_core.model.face_motion import FaceMotionConfig, FaceMotionEncoder

SMALL = dict(token_dim=16, tokens_per_frame=3, channels=(4, 8, 8, 8, 8), hidden_dim=32)


def _crops(b, t, seed=0):
    return torch.rand(b, t, 3, 224, 224, generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def test_output_shape_and_normalised_tokens():
    torch.manual_seed(0)
    enc = FaceMotionEncoder(FaceMotionConfig(**SMALL)).eval()
    tokens = enc(_crops(2, 3))
    assert tokens.shape == (2, 3, 3, 16)
    assert torch.isfinite(tokens).all()
    # Different faces give different tokens.
    assert not torch.allclose(tokens[0, 0], tokens[1, 0], atol=1e-3)


@torch.no_grad()
def test_chunking_does_not_change_result():
    torch.manual_seed(0)
    small = FaceMotionEncoder(FaceMotionConfig(**SMALL, chunk_frames=1)).eval()
    big = FaceMotionEncoder(FaceMotionConfig(**SMALL, chunk_frames=8)).eval()
    big.load_state_dict(small.state_dict())
    crops = _crops(1, 4, seed=1)
    torch.testing.assert_close(small(crops), big(crops), atol=1e-5, rtol=1e-4)


@torch.no_grad()
def test_temporal_smoothing_reach():
    torch.manual_seed(0)
    crops = _crops(1, 5, seed=2)
    changed = crops.clone()
    changed[0, 4] = torch.rand(3, 224, 224, generator=torch.Generator().manual_seed(9))
    for kernel, reached in [(1, {4}), (3, {3, 4})]:
        enc = FaceMotionEncoder(FaceMotionConfig(**SMALL, temporal_kernel=kernel)).eval()
        diff = (enc(crops) - enc(changed)).abs().amax(dim=(0, 2, 3))  # [T]
        assert {t for t in range(5) if diff[t] > 1e-5} == reached


def test_smoothing_starts_as_binomial_lowpass_and_trains():
    enc = FaceMotionEncoder(FaceMotionConfig(**SMALL, temporal_kernel=3))
    torch.testing.assert_close(enc.smooth.conv.weight[0, 0], torch.tensor([0.25, 0.5, 0.25]))
    tokens = enc(_crops(1, 2))
    tokens.square().mean().backward()
    assert enc.smooth.conv.weight.grad is not None and enc.stem.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("bad,match", [
    (torch.rand(2, 3, 224, 224), r"face_crops must have shape \[B, T, 3, 224, 224\]"),
    (torch.rand(1, 2, 1, 224, 224), r"face_crops must have shape"),
    (torch.rand(1, 2, 3, 112, 112), r"224x224"),
    (torch.rand(1, 2, 3, 224, 224) * 255, r"face_crops values must be finite and in 0..1"),
    (torch.full((1, 1, 3, 224, 224), float("nan")), r"face_crops values"),
    (torch.zeros(1, 0, 3, 224, 224), r"face_crops is empty"),
    (torch.zeros(1, 1, 3, 224, 224, dtype=torch.uint8), r"face_crops must be a float"),
])
def test_bad_face_crops_raise_value_error(bad, match):
    enc = FaceMotionEncoder(FaceMotionConfig(**SMALL))
    with pytest.raises(ValueError, match=match):
        enc(bad)


def test_config_validation():
    with pytest.raises(ValueError, match="temporal_kernel"):
        FaceMotionConfig(temporal_kernel=2)
