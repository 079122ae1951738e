import pytest
import torch

from dreamactor_core.model.config import VAEConfig
from dreamactor_core.model.vae import CausalVAE
from dreamactor_core.model.vae_widen import widen_decoder

torch.set_num_threads(1)


def _vae(decoder_base_channels=None) -> CausalVAE:
    """Small VAE with patch (un)shuffle, two temporal and one spatial level transitions."""
    torch.manual_seed(0)
    cfg = VAEConfig(latent_channels=4, base_channels=8, channel_mults=(1, 2, 2), num_res_blocks=1,
                    spatial_factor=4, temporal_factor=4, patch_size=2,
                    decoder_base_channels=decoder_base_channels)
    vae = CausalVAE(cfg)
    with torch.no_grad():  # away from the init, norms included, so every path carries signal
        for p in vae.parameters():
            p.add_(torch.randn_like(p) * 0.1)
        vae.set_latent_stats(torch.randn(4) * 0.1, torch.rand(4) + 0.5)
    return vae.eval()


def _latent(t=3, seed=1):
    return torch.randn(1, 4, t, 4, 4, generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def test_widened_decoder_decodes_the_same():
    vae = _vae()
    wide = widen_decoder(vae, 16)
    assert wide.config.decoder_base_channels == 16 and wide.config.base_channels == 8
    n_old = sum(p.numel() for p in vae.decoder.parameters())
    n_new = sum(p.numel() for p in wide.decoder.parameters())
    assert n_new > 3 * n_old  # conv weights grow 4x
    z = _latent()
    ref = vae.decode(z)
    assert ref.std() > 0.05
    torch.testing.assert_close(wide.decode(z), ref, atol=1e-5, rtol=1e-5)
    # streamed decoding (causal cache, TemporalUpsample's first-chunk path) agrees too
    torch.testing.assert_close(wide.decode(z, chunk=1), ref, atol=1e-5, rtol=1e-5)
    # four times as wide, from the already widened decoder
    torch.testing.assert_close(widen_decoder(wide, 32, seed=3).decode(z), ref, atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_encoder_and_latent_stats_are_kept():
    vae = _vae()
    wide = widen_decoder(vae, 16)
    video = torch.rand(1, 3, 5, 16, 16) * 2 - 1
    torch.testing.assert_close(wide.encode(video), vae.encode(video), atol=0, rtol=0)
    assert torch.equal(wide.latent_mean, vae.latent_mean)
    assert torch.equal(wide.latent_std, vae.latent_std)


def test_copies_receive_different_gradients():
    """A plain halving would give both copies the same gradient forever; the random split
    must not."""
    wide = widen_decoder(_vae(), 16, seed=5).train()
    wide.decode(_latent()).pow(2).mean().backward()
    conv = wide.decoder.mid[0].conv1.conv  # 32 -> 32 channels, copies at j and j + 16
    grad = conv.weight.grad
    assert grad.abs().sum() > 0
    assert not torch.allclose(grad[:16], grad[16:])
    # the forward values of the copies are equal (same rows), the split columns differ
    assert torch.equal(conv.bias[:16], conv.bias[16:])
    assert not torch.allclose(conv.weight[:, :16], conv.weight[:, 16:])


def test_split_is_seeded():
    vae = _vae()
    a, b, c = widen_decoder(vae, 16, seed=1), widen_decoder(vae, 16, seed=1), widen_decoder(vae, 16, seed=2)
    wa, wb, wc = (m.decoder.conv_out.conv.weight for m in (a, b, c))
    assert torch.equal(wa, wb) and not torch.equal(wa, wc)


@pytest.mark.parametrize("width", [7, 12, 4])
def test_width_must_be_a_multiple(width):
    with pytest.raises(ValueError, match="multiple of the current decoder width 8"):
        widen_decoder(_vae(), width)


def test_config_rejects_a_bad_decoder_width():
    with pytest.raises(ValueError, match="decoder_base_channels must be >= 1"):
        VAEConfig(decoder_base_channels=0)
    assert VAEConfig(base_channels=32).decoder_width == 32
    assert VAEConfig(base_channels=32, decoder_base_channels=64).decoder_width == 64
