import pytest
import torch

from dreamactor_core.model.causal_layers import CausalConv3d
from dreamactor_core.model.config import VAEConfig, tiny
from dreamactor_core.model.vae import CausalVAE

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def vae():
    torch.manual_seed(0)
    return CausalVAE(tiny().vae).eval()  # spatial factor 4, temporal factor 4, 8 latent channels


def _video(t=9, size=16, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(1, 3, t, size, size, generator=g) * 2 - 1


@torch.no_grad()
def test_shapes(vae):
    z = vae.encode(_video(9, 16))
    assert z.shape == (1, 8, 3, 4, 4)
    assert vae.decode(z).shape == (1, 3, 9, 16, 16)
    image = vae.encode(_video(1, 16))  # an image is a one-frame video
    assert image.shape == (1, 8, 1, 4, 4)
    assert vae.decode(image).shape == (1, 3, 1, 16, 16)


@torch.no_grad()
def test_spatial_factor_8_shapes():
    torch.manual_seed(0)
    cfg = VAEConfig(latent_channels=4, base_channels=8, channel_mults=(1, 1, 2, 2),
                    num_res_blocks=1, spatial_factor=8, temporal_factor=4)
    vae = CausalVAE(cfg).eval()
    z = vae.encode(_video(5, 16))
    assert z.shape == (1, 4, 2, 2, 2)
    assert vae.decode(z).shape == (1, 3, 5, 16, 16)


@pytest.fixture(scope="module")
def patched_vae():
    """Pixel-unshuffle 2 at the input, one spatial halving, two temporal halvings: the last
    level transition halves time only (the demo model's layout)."""
    torch.manual_seed(0)
    cfg = VAEConfig(latent_channels=4, base_channels=8, channel_mults=(1, 2, 2), num_res_blocks=1,
                    spatial_factor=4, temporal_factor=4, patch_size=2)
    assert cfg.level_transitions() == [(True, True), (False, True)]
    return CausalVAE(cfg).eval()


@torch.no_grad()
def test_patched_vae_shapes_causality_and_chunking(patched_vae):
    video = _video(13, 16)
    z = patched_vae.encode(video)
    assert z.shape == (1, 4, 4, 4, 4)
    assert patched_vae.decode(z).shape == (1, 3, 13, 16, 16)
    assert torch.allclose(patched_vae.encode(video, chunk_frames=4), z, atol=1e-5)
    assert torch.allclose(patched_vae.decode(z, chunk=1), patched_vae.decode(z), atol=1e-5)
    later = video.clone()
    later[:, :, 9:] = 0.3  # frames of latent frame 3 only
    z2 = patched_vae.encode(later)
    assert torch.equal(z2[:, :, :3], z[:, :, :3]) and not torch.allclose(z2[:, :, 3], z[:, :, 3])


@torch.no_grad()
def test_patched_vae_keeps_pixel_positions(patched_vae):
    """Unshuffle and shuffle must be inverse: a change in one pixel's 2x2 cell reaches the
    decoded output around that cell, not a mirrored or transposed place."""
    cfg = patched_vae.config
    assert patched_vae.encoder.conv_in.conv.in_channels == 3 * cfg.patch_size ** 2
    assert patched_vae.decoder.conv_out.conv.out_channels == 3 * cfg.patch_size ** 2
    z = patched_vae.encode(_video(1, 32))
    poked = z.clone()
    poked[:, :, :, 1, 6] += 5.0  # latent cell (row 1, col 6) covers pixels rows 4-7, cols 24-27
    diff = (patched_vae.decode(poked) - patched_vae.decode(z)).abs().sum(dim=(0, 1, 2))  # [H, W]
    row, col = divmod(int(diff.argmax()), diff.shape[1])
    assert abs(row - 5.5) <= 6 and abs(col - 25.5) <= 6


@pytest.mark.parametrize("kwargs, match", [
    ({"patch_size": 3}, "patch_size"),
    ({"patch_size": 16}, "patch_size"),
    ({"patch_size": 2, "channel_mults": (1, 2, 2, 2)}, "channel_mults needs 3"),
])
def test_bad_patch_configs(kwargs, match):
    with pytest.raises(ValueError, match=match):
        VAEConfig(**kwargs)


@torch.no_grad()
def test_encoder_is_causal(vae):
    video = _video(9)
    z = vae.encode(video)
    later = video.clone()
    later[:, :, 5:] = _video(4, seed=7)  # frames of latent frame 2 only
    z2 = vae.encode(later)
    assert torch.equal(z2[:, :, :2], z[:, :, :2])
    assert not torch.allclose(z2[:, :, 2], z[:, :, 2])
    frame4 = video.clone()
    frame4[:, :, 4] = 0.5  # the last frame of latent frame 1
    z3 = vae.encode(frame4)
    assert torch.equal(z3[:, :, 0], z[:, :, 0])
    assert not torch.allclose(z3[:, :, 1], z[:, :, 1])


@torch.no_grad()
def test_decoder_is_causal(vae):
    z = vae.encode(_video(9))
    out = vae.decode(z)
    z2 = z.clone()
    z2[:, :, 2] += 1.0
    out2 = vae.decode(z2)
    assert torch.equal(out2[:, :, :5], out[:, :, :5])  # frames 0..4 come from latents 0, 1
    assert not torch.allclose(out2[:, :, 5:], out[:, :, 5:])


@torch.no_grad()
@pytest.mark.parametrize("chunk_frames", [4, 8])
def test_chunked_encode_equals_whole(vae, chunk_frames):
    video = _video(13)
    whole = vae.encode(video)
    assert torch.allclose(vae.encode(video, chunk_frames=chunk_frames), whole, atol=1e-5)


@torch.no_grad()
@pytest.mark.parametrize("chunk", [1, 2])
def test_chunked_decode_equals_whole(vae, chunk):
    z = torch.randn(1, 8, 4, 4, 4, generator=torch.Generator().manual_seed(3))
    assert torch.allclose(vae.decode(z, chunk=chunk), vae.decode(z), atol=1e-5)


@torch.no_grad()
def test_stream_cache_holds_at_most_two_frames(vae):
    video = _video(13)
    cache = {}
    vae.encoder(video[:, :, :1], cache)
    for s in range(1, 13, 4):
        vae.encoder(video[:, :, s:s + 4], cache)
    frames = [v.shape[2] for k, v in cache.items() if isinstance(k, CausalConv3d)]
    assert frames and max(frames) <= 2


@torch.no_grad()
def test_posterior_mean_sampling_and_normalisation(vae):
    video = _video(5)
    post = vae.encode_distribution(video)
    assert torch.equal(vae.encode(video), vae.normalize(post.mean))
    a = vae.encode(video, sample=True, generator=torch.Generator().manual_seed(0))
    b = vae.encode(video, sample=True, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a, b) and not torch.equal(a, vae.encode(video))
    assert post.kl().shape == (1,) and bool((post.kl() >= 0).all())

    norm_vae = CausalVAE(tiny().vae).eval()
    norm_vae.load_state_dict(vae.state_dict())
    mean, std = torch.linspace(-1, 1, 8), torch.linspace(0.5, 2, 8)
    norm_vae.set_latent_stats(mean, std)
    z = norm_vae.encode(video)
    expected = (post.mean - mean.view(1, -1, 1, 1, 1)) / std.view(1, -1, 1, 1, 1)
    assert torch.allclose(z, expected, atol=1e-6)
    assert torch.allclose(norm_vae.decode(z), vae.decode(post.mean, normalized=False), atol=1e-5)
    with pytest.raises(ValueError, match="positive"):
        norm_vae.set_latent_stats(mean, -std)


def test_training_pass_has_gradients(vae):
    recon, post = vae(_video(5), generator=torch.Generator().manual_seed(0))
    assert recon.shape == (1, 3, 5, 16, 16)
    loss = (recon - _video(5)).abs().mean() + 1e-6 * post.kl().mean()
    loss.backward()
    assert vae.encoder.conv_in.conv.weight.grad is not None
    vae.zero_grad(set_to_none=True)


def test_bad_inputs_raise_clear_errors(vae):
    with pytest.raises(ValueError, match="4\\*k\\+1 frames"):
        vae.encode(_video(8))
    with pytest.raises(ValueError, match="multiples of 4"):
        vae.encode(_video(5, 18))
    with pytest.raises(ValueError, match="-1..1"):
        vae.encode(_video(5) * 100)
    with pytest.raises(ValueError, match="chunk_frames"):
        vae.encode(_video(5), chunk_frames=3)
    with pytest.raises(ValueError, match="latent must be"):
        vae.decode(torch.zeros(1, 4, 2, 4, 4))
