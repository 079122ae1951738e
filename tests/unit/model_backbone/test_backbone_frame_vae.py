import pytest
import torch

from dreamactor_core.model.config import VAEConfig
from dreamactor_core.model.frame_vae import FrameStackVAE
from dreamactor_core.model.vae import VideoVAE, build_vae

torch.set_num_threads(1)


def _config(**kw) -> VAEConfig:
    base = dict(architecture="frame_stack", latent_channels=8, base_channels=8,
                channel_mults=(1, 2), num_res_blocks=1, spatial_factor=4, temporal_factor=4,
                patch_size=2)
    return VAEConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def vae():
    torch.manual_seed(0)
    vae = build_vae(_config())
    with torch.no_grad():  # away from the init, so every path carries signal
        for p in vae.parameters():
            p.add_(torch.randn_like(p) * 0.05)
        vae.set_latent_stats(torch.randn(8) * 0.1, torch.rand(8) + 0.5)
    return vae.eval()


def _video(t=9, size=16, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(1, 3, t, size, size, generator=g) * 2 - 1


def test_build_vae_picks_the_architecture():
    assert isinstance(build_vae(_config()), FrameStackVAE)
    assert isinstance(build_vae(_config()), VideoVAE)
    assert type(build_vae(VAEConfig(latent_channels=4, base_channels=8))).__name__ == "CausalVAE"


@torch.no_grad()
def test_shapes_match_the_causal_contract(vae):
    z = vae.encode(_video(9))
    assert z.shape == (1, 8, 3, 4, 4)  # 8 channels = 4 frames x 2 per frame
    assert vae.decode(z).shape == (1, 3, 9, 16, 16)
    image = vae.encode(_video(1))
    assert image.shape == (1, 8, 1, 4, 4)
    assert vae.decode(image).shape == (1, 3, 1, 16, 16)


@torch.no_grad()
def test_latent_frames_stack_the_frames_they_cover(vae):
    video = _video(9)
    z = vae.encode(video)
    alone = [vae.encode(video[:, :, i:i + 1]) for i in range(9)]  # each frame as a 1-frame video
    c = 2
    # latent frame 0: frame 0 in every group
    for g in range(4):
        torch.testing.assert_close(vae.denormalize(z)[:, g * c:(g + 1) * c, 0],
                                   vae.denormalize(alone[0])[:, :c, 0])
    # latent frame k >= 1, group g: frame 4(k-1) + 1 + g
    for k in (1, 2):
        for g in range(4):
            frame = 4 * (k - 1) + 1 + g
            torch.testing.assert_close(vae.denormalize(z)[:, g * c:(g + 1) * c, k],
                                       vae.denormalize(alone[frame])[:, :c, 0])


def _decoded_change(vae, frames: int, channels: slice, latent_frame: int) -> torch.Tensor:
    """Max change of each decoded frame [T] when some latent channels of one latent frame move."""
    z = vae.encode(_video(frames))
    poked = z.clone()
    poked[:, channels, latent_frame] += 3.0
    return (vae.decode(poked) - vae.decode(z)).abs().amax(dim=(0, 1, 3, 4))


@torch.no_grad()
def test_each_frame_decodes_from_its_own_group(vae):
    diff = _decoded_change(vae, 9, slice(2, 4), 1)  # group 1 of latent frame 1 = frame 2
    assert diff[2] > 0.01
    assert torch.equal(diff[[0, 1, 3, 4, 5, 6, 7, 8]], torch.zeros(8))


@torch.no_grad()
def test_first_latent_copies_are_averaged(vae):
    z = vae.denormalize(vae.encode(_video(1)))  # raw latent
    spread = z.clone()
    spread[:, :2] += 1.0  # copy 0 up, copy 1 down: same mean
    spread[:, 2:4] -= 1.0
    torch.testing.assert_close(vae.decode(spread, normalized=False),
                               vae.decode(z, normalized=False), atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_chunked_equals_whole_and_frames_are_independent(vae):
    video = _video(13)
    z = vae.encode(video)
    torch.testing.assert_close(vae.encode(video, chunk_frames=4), z, atol=1e-5, rtol=0)
    torch.testing.assert_close(vae.decode(z, chunk=1), vae.decode(z), atol=1e-5, rtol=0)
    later = video.clone()
    later[:, :, 5:] = _video(8, seed=7)
    assert torch.equal(vae.encode(later)[:, :, :2], z[:, :, :2])  # causal: no later frame leaks


@torch.no_grad()
def test_posterior_stacks_mean_and_logvar(vae):
    posterior = vae.encode_distribution(_video(5))
    assert posterior.mean.shape == posterior.logvar.shape == (1, 8, 2, 4, 4)
    assert posterior.kl().shape == (1,)


@pytest.mark.parametrize("kwargs, match", [
    ({"latent_channels": 6}, "multiple of temporal_factor"),
    ({"channel_mults": (1, 2, 2)}, "channel_mults needs 2"),
    ({"architecture": "unet"}, "architecture must be one of"),
])
def test_bad_configs(kwargs, match):
    with pytest.raises(ValueError, match=match):
        _config(**kwargs)


def test_bad_inputs_are_clear_errors(vae):
    with pytest.raises(ValueError, match="4\\*k\\+1 frames"):
        vae.encode(_video(4))
    with pytest.raises(ValueError, match="chunk_frames must be a positive multiple"):
        vae.encode(_video(9), chunk_frames=3)
    with pytest.raises(ValueError, match="latent must be"):
        vae.decode(torch.zeros(1, 4, 2, 4, 4))


def test_widening_tools_refuse_it(vae):
    from dreamactor_core.model.vae_widen import widen_decoder

    with pytest.raises(ValueError, match="needs the causal3d VAE"):
        widen_decoder(vae, 16)


@pytest.fixture(scope="module")
def mixed(vae):
    mixed = vae.with_addition("decoder_temporal_mix", 2)
    with torch.no_grad():  # a trained mix: every weight carries signal
        for p in mixed.decoder.temporal_mix.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return mixed.eval()


@pytest.mark.parametrize("start, field, what", [("vae", "decoder_temporal_mix", "reach"),
                                                 ("mixed", "decoder_refine_channels", "width"),
                                                 ("mixed", "decoder_reference_channels", "width"),
                                                 ("mixed", "decoder_reference_attention", "heads")])
@torch.no_grad()
def test_an_added_decoder_part_starts_as_the_identity(request, start, field, what):
    base = request.getfixturevalue(start)
    z = base.encode(_video(9))
    grown = base.with_addition(field, 2)
    assert getattr(grown.config, field) == 2 and getattr(base.config, field) == 0
    assert grown.config.decoder_temporal_mix == 2  # a refiner keeps the mix it was added to
    reference = _video(1, seed=5)[:, :, 0]  # [1, 3, H, W]: read only by a reference refiner
    torch.testing.assert_close(grown.decode(z, reference=reference), base.decode(z),
                               atol=1e-6, rtol=0)
    torch.testing.assert_close(grown.encode(_video(9)), z, atol=0, rtol=0)  # encoder untouched
    with pytest.raises(ValueError, match=f"{what} >= 1"):
        grown.with_addition(field, 1)


@torch.no_grad()
def test_the_mix_reaches_back_across_latent_frames_and_never_forward(mixed):
    diff = _decoded_change(mixed, 13, slice(6, 8), 1)  # group 3 of latent frame 1 = frame 4
    assert torch.equal(diff[:4], torch.zeros(4))  # causal: no earlier frame changes
    assert diff[4] > 0.01 and diff[5] > 1e-4 and diff[6] > 1e-4  # frames 5, 6: latent frame 2
    assert torch.equal(diff[7:], torch.zeros(6))  # reach 2: frame 7 does not see frame 4
    z = mixed.encode(_video(13))
    torch.testing.assert_close(mixed.decode(z, chunk=1), mixed.decode(z), atol=1e-5, rtol=0)


@pytest.mark.parametrize("field", ["decoder_temporal_mix", "decoder_refine_channels",
                                   "decoder_reference_channels", "decoder_reference_attention"])
def test_decoder_addition_configs(field):
    assert getattr(_config(**{field: 2}), field) == 2
    with pytest.raises(ValueError, match=f"{field} must be >= 0"):
        _config(**{field: -1})
    with pytest.raises(ValueError, match="needs the frame_stack VAE"):
        VAEConfig(latent_channels=4, base_channels=8, **{field: 1})


@torch.no_grad()
def test_a_trained_refiner_refines_at_full_resolution(mixed):
    z = mixed.encode(_video(9))
    refined = mixed.with_addition("decoder_refine_channels", 4)
    for p in refined.decoder.refine.parameters():  # a trained refiner
        p.add_(torch.randn_like(p) * 0.05)
    coarse, fine = mixed.decode(z), refined.decode(z)
    assert fine.shape == coarse.shape and (fine - coarse).abs().mean() > 1e-3
    # the correction varies inside each 2x2 patch, which the coarse decoder emits as one
    # linear function of its features: check it is not constant over a patch
    delta = (fine - coarse)[0, :, 0]  # [3, 16, 16]
    assert (delta[:, 0::2, 0::2] - delta[:, 1::2, 1::2]).abs().mean() > 1e-4
    torch.testing.assert_close(refined.decode(z, chunk=1), fine, atol=1e-5, rtol=0)


def test_a_refiner_learns_from_the_start():
    # its output conv starts at zero; the gradient must still reach it on the first step
    refined = FrameStackVAE(_config(decoder_refine_channels=4))
    refined.decode(refined.encode(_video(5))).square().mean().backward()
    assert refined.decoder.refine.conv_out.weight.grad.abs().sum() > 0


def test_a_refiner_needs_patches_to_refine():
    with pytest.raises(ValueError, match="patch_size >= 2"):
        _config(patch_size=1, channel_mults=(1, 2, 4), decoder_refine_channels=8)


@torch.no_grad()
def test_a_trained_reference_refiner_reads_the_reference_where_it_is_given(mixed):
    z = mixed.encode(_video(9))
    grown = mixed.with_addition("decoder_reference_channels", 4)
    assert grown.uses_reference and not mixed.uses_reference
    for p in grown.decoder.reference.parameters():  # a trained refiner
        p.add_(torch.randn_like(p) * 0.05)
    ref_a, ref_b = _video(1, seed=5)[:, :, 0], _video(1, seed=6)[:, :, 0]
    plain = mixed.decode(z)
    torch.testing.assert_close(grown.decode(z), plain, atol=1e-6, rtol=0)  # no reference given
    with_a, with_b = grown.decode(z, reference=ref_a), grown.decode(z, reference=ref_b)
    assert with_a.shape == plain.shape
    assert (with_a - plain).abs().mean() > 1e-3 and (with_a - with_b).abs().mean() > 1e-4
    torch.testing.assert_close(grown.decode(z, chunk=1, reference=ref_a), with_a, atol=1e-5, rtol=0)
    for bad in (ref_a[:, :, :8], ref_a[:, :2], ref_a[0], torch.cat([ref_a, ref_b])):
        with pytest.raises(ValueError, match=r"reference must be \[B, 3, H, W\] = \[1, 3, 16, 16\]"):
            grown.decode(z, reference=bad)


@torch.no_grad()
def test_the_reference_refiners_gate_pulls_the_frame_to_the_reference():
    from dreamactor_core.model.frame_vae import ReferenceRefiner

    refiner = ReferenceRefiner(4)
    frames, reference = _video(1, seed=3)[:, :, 0], _video(1, seed=4)[:, :, 0]  # [1, 3, 16, 16]
    torch.testing.assert_close(refiner(frames, reference), frames, atol=0, rtol=0)  # zero start
    refiner.conv_out.bias[3] = 20.0  # gate tanh(20) = 1: the reference itself
    torch.testing.assert_close(refiner(frames, reference), reference, atol=1e-6, rtol=0)
    refiner.conv_out.bias[3] = torch.atanh(torch.tensor(0.25))  # a quarter of the way there
    torch.testing.assert_close(refiner(frames, reference), frames + 0.25 * (reference - frames),
                               atol=1e-6, rtol=0)
    refiner.conv_out.bias[:] = torch.tensor([0.1, -0.2, 0.3, 0.0])  # no gate: the residual
    torch.testing.assert_close(refiner(frames, reference),
                               frames + torch.tensor([0.1, -0.2, 0.3])[None, :, None, None],
                               atol=1e-6, rtol=0)


def test_a_reference_refiner_learns_from_the_start():
    vae = FrameStackVAE(_config(decoder_reference_channels=4))
    reference = _video(1, seed=5)[:, :, 0]
    vae.decode(vae.encode(_video(5)), reference=reference).square().mean().backward()
    assert vae.decoder.reference.conv_out.weight.grad.abs().sum() > 0


def _trained_attention(mixed, heads=2):
    grown = mixed.with_addition("decoder_reference_attention", heads)
    with torch.no_grad():  # a trained attention: every weight carries signal
        for p in grown.decoder.reference_attention.parameters():
            p.add_(torch.randn_like(p) * 0.2)
    return grown.eval()


@torch.no_grad()
def test_a_trained_reference_attention_reads_each_clips_own_reference(mixed):
    torch.manual_seed(3)
    grown = _trained_attention(mixed)
    assert grown.uses_reference and not mixed.uses_reference
    video = torch.cat([_video(9, seed=1), _video(9, seed=2)])  # two clips
    z = grown.encode(video)
    ref_a, ref_b = _video(1, seed=5)[:, :, 0], _video(1, seed=6)[:, :, 0]
    plain = mixed.decode(z)
    torch.testing.assert_close(grown.decode(z), plain, atol=1e-6, rtol=0)  # no reference given
    ab = grown.decode(z, reference=torch.cat([ref_a, ref_b]))
    ba = grown.decode(z, reference=torch.cat([ref_b, ref_a]))
    assert (ab - plain).abs().mean() > 1e-3 and (ab[0] - ba[0]).abs().mean() > 1e-4
    # each clip reads its own reference and no other clip's: clip 0 alone, with ref_a, decodes
    # as clip 0 of the pair did; and every frame of a clip reads it
    torch.testing.assert_close(grown.decode(z[:1], reference=ref_a), ab[:1], atol=1e-5, rtol=0)
    torch.testing.assert_close(grown.decode(z[1:], reference=ref_a), ba[1:], atol=1e-5, rtol=0)
    assert ((ab - plain).abs().mean(dim=(0, 1, 3, 4)) > 1e-4).all()
    torch.testing.assert_close(grown.decode(z, chunk=1, reference=torch.cat([ref_a, ref_b])), ab,
                               atol=1e-5, rtol=0)


@torch.no_grad()
def test_the_reference_attention_can_fetch_from_another_place():
    # keys carry their place (RoPE) but can match by content: a query that matches one reference
    # token's content takes that token's value from wherever it sits
    from dreamactor_core.model.frame_vae import ReferenceAttention

    attn = ReferenceAttention(channels=8, ref_channels=8, heads=1)
    eye = torch.eye(8)
    for lin in (attn.attn.q, attn.attn.proj):
        lin.weight.copy_(eye), lin.bias.zero_()
    attn.attn.kv.weight.copy_(torch.cat([eye, eye])), attn.attn.kv.bias.zero_()
    attn.attn.q_norm.weight.fill_(10.0)  # sharp scores
    # content in channels 0-3: the rotation pairs RoPE gives time, which is 0 for every token
    ref = torch.zeros(1, 8, 4, 4)
    ref[0, 0] = 1.0  # every reference token is "background" (channel 0)...
    ref[0, :, 3, 2] = torch.eye(8)[2]  # ...but the one at (3, 2), which is "limb" (channel 2)
    x = torch.zeros(1, 8, 4, 4)
    x[0, 2, 0, 0] = 1.0  # the frame's token at (0, 0) is looking for "limb"
    out = attn(x, ref) - x  # [1, 8, 4, 4]: what the attention added
    assert out[0, 2, 0, 0] > 0.9 * 8 ** 0.5 and out[0, 0, 0, 0].abs() < 0.05
    x[0, 2, 0, 0], x[0, 0, 0, 0] = 0.0, 1.0  # now it looks for "background": the mean of the rest
    out = attn(x, ref) - x
    assert out[0, 0, 0, 0] > 0.9 * 8 ** 0.5 and out[0, 2, 0, 0].abs() < 0.05


def test_a_reference_attention_learns_from_the_start():
    vae = FrameStackVAE(_config(decoder_reference_attention=2))
    reference = _video(1, seed=5)[:, :, 0]
    vae.decode(vae.encode(_video(5)), reference=reference).square().mean().backward()
    assert vae.decoder.reference_attention.attn.proj.weight.grad.abs().sum() > 0


def test_the_reference_attention_heads_must_split_the_decoder_width():
    assert _config(decoder_reference_attention=4).decoder_reference_attention == 4  # 16 = 4 x 4
    for heads in (3, 16):  # 16 / 3 is not whole; 16 / 16 = 1 is odd, RoPE needs pairs
        with pytest.raises(ValueError, match="decoder_reference_attention .* heads of an even size"):
            _config(decoder_reference_attention=heads)
