import pytest
import torch
from torch import nn

from dreamactor_core.model.config import DiTConfig
from dreamactor_core.model.dit import DiTBlock, DreamActorDiT, FaceAttention, face_windows
from dreamactor_core.model.layers import RoPE3D, apply_rope

torch.set_num_threads(1)

CFG = DiTConfig(latent_channels=4, temporal_factor=4, pose_latent_channels=3, dim=64, depth=2,
                heads=4, face_token_dim=16, face_tokens_per_frame=2)
B, T_LAT, H, W, R = 2, 3, 4, 6, 2
FRAMES = 4 * (T_LAT - 1) + 1


def _randomise_zero_inits(model: nn.Module, seed: int = 0) -> None:
    """adaLN-Zero makes a fresh model trivial; give every zero-initialised layer random weights."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if not p.any():
                p.copy_(torch.randn(p.shape, generator=g) * 0.05)


def _inputs(seed=1):
    g = torch.Generator().manual_seed(seed)
    return dict(
        x_t=torch.randn(B, 4, T_LAT, H, W, generator=g),
        timestep=torch.tensor([0.2, 0.9]),
        pose_latent=torch.randn(B, 3, T_LAT, H, W, generator=g),
        ref_latent=torch.randn(B, 4, R, H, W, generator=g),
        face_tokens=torch.randn(B, FRAMES, 2, 16, generator=g),
    )


@pytest.fixture(scope="module")
def dit():
    torch.manual_seed(0)
    model = DreamActorDiT(CFG).eval()
    _randomise_zero_inits(model)
    return model


@torch.no_grad()
def test_output_shape_with_and_without_conditions(dit):
    inp = _inputs()
    assert dit(**inp).shape == (B, 4, T_LAT, H, W)
    assert dit(inp["x_t"], 0.5).shape == (B, 4, T_LAT, H, W)
    assert dit(inp["x_t"][:, :, :1], 0.5, ref_latent=inp["ref_latent"][:, :, :1]).shape == (B, 4, 1, H, W)


@torch.no_grad()
def test_fresh_model_is_adaln_zero():
    torch.manual_seed(0)
    model = DreamActorDiT(CFG).eval()
    assert torch.equal(model(**_inputs()), torch.zeros(B, 4, T_LAT, H, W))
    block = DiTBlock(64, 4, 16, 4.0)
    x = torch.randn(B, 10, 64)
    cond = torch.randn(B, 2, 64)
    rope = RoPE3D(16)(torch.randint(-2, 3, (10, 3)))
    face = (torch.randn(B * 2, 4, 16), torch.ones(B * 2, 4, dtype=torch.bool))
    assert torch.equal(block(x, 8, cond, rope, None, face, 2), x)


@torch.no_grad()
def test_batched_drop_masks_equal_separate_unconditional_passes(dit):
    inp = _inputs()
    cond = dit(**inp)
    no_ref = dit(**{**inp, "ref_latent": None})
    no_motion = dit(**{**inp, "face_tokens": None, "pose_latent": None})
    neither = dit(inp["x_t"], inp["timestep"])
    assert not torch.allclose(cond, no_ref, atol=1e-3)
    assert not torch.allclose(cond, no_motion, atol=1e-3)

    stack = {k: torch.cat([v] * 4) for k, v in inp.items()}
    drop_ref = torch.tensor([False, False, True, True, False, False, True, True])
    drop_motion = torch.tensor([False, False, False, False, True, True, True, True])
    out = dit(**stack, drop_ref=drop_ref, drop_motion=drop_motion)
    for i, expected in enumerate([cond, no_ref, no_motion, neither]):
        assert torch.allclose(out[2 * i:2 * i + 2], expected, atol=1e-5), i


@torch.no_grad()
def test_face_mask_false_equals_no_face(dit):
    inp = _inputs()
    mask = torch.ones(B, FRAMES, dtype=torch.bool)
    mask[1] = False
    out = dit(**inp, face_mask=mask)
    assert torch.allclose(out[1], dit(**{**inp, "face_tokens": None})[1], atol=1e-5)
    assert torch.allclose(out[0], dit(**inp)[0], atol=1e-5)


def test_face_windows_cover_the_frames_folded_into_each_latent():
    tokens = torch.arange(9, dtype=torch.float32).view(1, 9, 1, 1).expand(1, 9, 2, 1)
    context, mask = face_windows(tokens, None, num_latent_frames=3, temporal_factor=4, window=4)
    assert context.shape == (3, 8, 1) and mask is None  # every slot is a real frame
    frames = [sorted({int(v) for v in context[k, :, 0]}) for k in range(3)]
    assert frames == [[0], [1, 2, 3, 4], [5, 6, 7, 8]]
    # With a frame lacking a face, that frame's slots are masked out.
    face_mask = torch.ones(1, 9, dtype=torch.bool)
    face_mask[0, 6] = False
    context, mask = face_windows(tokens, face_mask, 3, 4, 4)
    frames = [sorted({int(v) for v, m in zip(context[k, :, 0], mask[k]) if m}) for k in range(3)]
    assert frames == [[0], [1, 2, 3, 4], [5, 7, 8]]


def test_repeating_the_only_frame_equals_masking_the_empty_slots():
    torch.manual_seed(0)
    attn = FaceAttention(32, 8, 4)
    _randomise_zero_inits(attn)
    x = torch.randn(1, 6, 32)  # one latent frame of 6 tokens
    tokens = torch.randn(1, 1, 2, 8)  # its only real frame
    repeated, mask = face_windows(tokens, None, 1, 4, 4)
    assert mask is None
    once = attn(x, tokens[:, 0], None, 1)  # attend to the real frame's tokens once
    assert torch.allclose(attn(x, repeated, None, 1), once, atol=1e-6)


@torch.no_grad()
def test_face_attention_only_sees_its_own_window():
    torch.manual_seed(0)
    face = FaceAttention(64, 16, 4)
    _randomise_zero_inits(face)
    x = torch.randn(1, 3 * 5, 64)  # 3 latent frames x 5 tokens
    tokens = torch.randn(1, 9, 2, 16)
    out = face(x, *face_windows(tokens, None, 3, 4, 4), 3)
    changed = tokens.clone()
    changed[:, 5:] += 3.0  # the window of latent frame 2
    out2 = face(x, *face_windows(changed, None, 3, 4, 4), 3)
    assert torch.equal(out2[:, :10], out[:, :10])
    assert not torch.allclose(out2[:, 10:], out[:, 10:])


def test_rope_depends_only_on_relative_position():
    rope = RoPE3D(24)
    q, k = torch.randn(1, 1, 1, 24), torch.randn(1, 1, 1, 24)

    def score(pq, pk):
        cq, sq = rope(torch.tensor([pq], dtype=torch.float32))
        ck, sk = rope(torch.tensor([pk], dtype=torch.float32))
        return (apply_rope(q, cq, sq) * apply_rope(k, ck, sk)).sum()

    assert torch.allclose(score([3, 1, 2], [1, 0, 0]), score([-1, 5, 7], [-3, 4, 5]), atol=1e-4)
    assert not torch.allclose(score([3, 1, 2], [1, 0, 0]), score([3, 1, 2], [-1, 0, 0]), atol=1e-4)


def test_gradient_checkpointing_matches(dit):
    inp = _inputs()
    dit.zero_grad(set_to_none=True)
    dit(**inp).square().mean().backward()
    grad = dit.patch_embed.weight.grad.clone()
    dit.zero_grad(set_to_none=True)
    dit.gradient_checkpointing = True
    try:
        dit(**inp).square().mean().backward()
    finally:
        dit.gradient_checkpointing = False
    assert torch.allclose(dit.patch_embed.weight.grad, grad, atol=1e-6)
    dit.zero_grad(set_to_none=True)


def test_bad_inputs_raise_clear_errors(dit):
    inp = _inputs()
    with pytest.raises(ValueError, match="face_tokens must be"):
        dit(**{**inp, "face_tokens": inp["face_tokens"][:, :8]})
    with pytest.raises(ValueError, match="pose_latent must be"):
        dit(**{**inp, "pose_latent": inp["pose_latent"][:, :2]})
    with pytest.raises(ValueError, match="ref_latent must be"):
        dit(**{**inp, "ref_latent": inp["ref_latent"][..., :2]})
    with pytest.raises(ValueError, match="drop_ref must be a bool"):
        dit(**inp, drop_ref=torch.tensor([1, 0]))
    with pytest.raises(ValueError, match="timestep"):
        dit(**{**inp, "timestep": torch.tensor([0.1, 0.2, 0.3])})
    with pytest.raises(ValueError, match="patch size"):
        dit(inp["x_t"][..., :3], 0.5)


def test_inference_fast_path_equals_the_autograd_path_and_keeps_its_input(dit):
    """Without autograd the blocks modulate and gate in place; the result must equal the
    autograd path's and the block's input must not change."""
    inp = _inputs(seed=3)
    with torch.no_grad():
        fast = dit(**inp)
    with torch.enable_grad():
        slow = dit(**inp)
    assert torch.allclose(fast, slow, atol=1e-6)
    block = dit.blocks[0]
    g = torch.Generator().manual_seed(5)
    x = torch.randn(B, 10, 64, generator=g)
    before = x.clone()
    cond = torch.randn(B, 2, 64, generator=g)
    rope = RoPE3D(16)(torch.randint(-2, 3, (10, 3), generator=g))
    face = (torch.randn(B * 2, 4, 16, generator=g), None)
    with torch.no_grad():
        out = block(x, 8, cond, rope, None, face, 2)
    assert torch.equal(x, before)
    with torch.enable_grad():
        assert torch.allclose(out, block(x, 8, cond, rope, None, face, 2), atol=1e-6)


def test_clean_context_frames_take_the_clean_modulation(dit):
    """num_clean_frames=k gives the first k latent frames the t = 0 modulation of the
    reference: at t = 0 that is no change at all, at t > 0 it changes every frame's output
    (joint attention), and the autograd and in-place paths agree."""
    inp = _inputs(seed=4)
    with torch.no_grad():
        at_zero = {**inp, "timestep": torch.zeros(B)}
        assert torch.allclose(dit(**at_zero, num_clean_frames=1), dit(**at_zero), atol=1e-6)
        plain, clean = dit(**inp), dit(**inp, num_clean_frames=1)
        assert not torch.allclose(plain[:, :, 1:], clean[:, :, 1:], atol=1e-4)
        two = dit(**inp, num_clean_frames=2)
        assert not torch.allclose(two[:, :, 2:], clean[:, :, 2:], atol=1e-4)
    with torch.enable_grad():
        assert torch.allclose(dit(**inp, num_clean_frames=1), clean, atol=1e-6)
    for bad in (-1, T_LAT):
        with pytest.raises(ValueError, match="num_clean_frames must be"):
            dit(**inp, num_clean_frames=bad)


def test_a_deepened_dit_starts_as_the_original_and_its_added_blocks_learn(dit):
    deep = dit.deepened([0, 1, 1]).eval()
    assert deep.config.depth == 5 and len(deep.blocks) == 5
    with torch.no_grad():  # every condition on, clean context too: the added blocks are identities
        torch.testing.assert_close(deep(**_inputs(), num_clean_frames=1),
                                   dit(**_inputs(), num_clean_frames=1), atol=1e-6, rtol=0)
    added, source = deep.blocks[1], dit.blocks[0]  # [0, 0', 1, 1', 1'']
    gate_rows = torch.zeros(6, dtype=torch.bool)
    gate_rows[[2, 5]] = True
    weight = added.adaLN[1].weight.view(6, 64, 64)
    assert not weight[gate_rows].any() and not added.face.attn.proj.weight.any()
    torch.testing.assert_close(weight[~gate_rows], source.adaLN[1].weight.view(6, 64, 64)[~gate_rows])
    torch.testing.assert_close(added.mlp.fc1.weight, source.mlp.fc1.weight)
    deep.train()
    deep(**_inputs()).square().mean().backward()
    assert added.adaLN[1].weight.grad[2 * 64:3 * 64].abs().sum() > 0  # the gates open
    assert added.face.attn.proj.weight.grad.abs().sum() > 0
    for bad in ([], [2], [-1], [True]):
        with pytest.raises(ValueError, match=r"block indices in 0..1"):
            dit.deepened(bad)
