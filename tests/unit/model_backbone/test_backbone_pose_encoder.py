import pytest
import torch

from dreamactor_core.model.config import tiny
from dreamactor_core.model.pose_encoder import PoseEncoder

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def encoder():
    torch.manual_seed(0)
    return PoseEncoder.from_config(tiny()).eval()


def _maps(t=9, size=16, seed=0):
    return torch.rand(2, 6, t, size, size, generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def test_output_lives_on_the_latent_grid(encoder):
    out = encoder(_maps(9, 16))
    assert out.shape == (2, tiny().dit.pose_latent_channels, 3, 4, 4)  # same grid as the VAE latent
    assert encoder(_maps(1, 16)).shape[2] == 1


@torch.no_grad()
def test_chunked_equals_whole_and_is_causal(encoder):
    maps = _maps(13)
    whole = encoder(maps)
    assert torch.allclose(encoder(maps, chunk_frames=4), whole, atol=1e-5)
    later = maps.clone()
    later[:, :, 9:] = 0.0  # frames of latent frame 3 only
    out = encoder(later)
    assert torch.equal(out[:, :, :3], whole[:, :, :3])
    assert not torch.allclose(out[:, :, 3], whole[:, :, 3])


def test_bad_maps_raise(encoder):
    with pytest.raises(ValueError, match="6, T, H, W"):
        encoder(torch.rand(1, 3, 5, 16, 16))
    with pytest.raises(ValueError, match="0..1"):
        encoder(_maps(5) * 2 - 1)
    with pytest.raises(ValueError, match="frames"):
        encoder(_maps(6))
    with pytest.raises(ValueError, match="multiples of 4"):
        encoder(_maps(5, 18))
