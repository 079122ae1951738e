import pytest
import torch

from dreamactor_core.model.segments import Segment, plan_segments, segment_guidance, stitch_segments


@pytest.mark.parametrize("num_frames", [1, 2, 5, 20, 73, 74, 145, 146, 300])
@pytest.mark.parametrize("segment_frames,overlap_latent", [(73, 1), (9, 1), (17, 2), (13, 0), (5, 1)])
def test_plan_covers_every_frame_once_with_valid_lengths(num_frames, segment_frames, overlap_latent):
    plan = plan_segments(num_frames, segment_frames, overlap_latent)
    kept = [f for seg in plan for f in range(seg.new_start, seg.stop)]
    assert kept == list(range(num_frames))
    overlap = 0 if overlap_latent == 0 else 1 + 4 * (overlap_latent - 1)
    for k, seg in enumerate(plan):
        assert seg.index == k
        assert (seg.length - 1) % 4 == 0 and seg.length <= segment_frames
        if seg.pad:
            assert k == len(plan) - 1  # only the last segment is padded
        else:
            assert (seg.stop - seg.start - 1) % 4 == 0
        if k > 0:
            assert seg.overlap == overlap and seg.start == plan[k - 1].stop - overlap
    assert plan[0].start == 0 and plan[0].overlap == 0 and plan[-1].stop == num_frames


def test_plan_shares_last_latent_as_first_latent():
    # 73 frames = 19 latents; the next segment starts at the last frame (its causal first latent).
    plan = plan_segments(200, 73)
    assert [(s.start, s.stop, s.pad) for s in plan] == [(0, 73, 0), (72, 145, 0), (144, 200, 1)]


def test_plan_rejects_invalid_lengths():
    with pytest.raises(ValueError, match="4\\*k \\+ 1.*use 69 or 73"):
        plan_segments(100, 72)
    with pytest.raises(ValueError, match="num_frames"):
        plan_segments(0, 73)
    with pytest.raises(ValueError, match="overlap"):
        plan_segments(100, 5, overlap_latent=2)


def test_segment_guidance_pads_with_last_frame():
    frames = torch.arange(10.0).view(10, 1, 1, 1)
    seg = Segment(1, 8, 10, 3, 1)
    out = segment_guidance(frames, seg)
    assert out.flatten().tolist() == [8, 9, 9, 9, 9]
    with pytest.raises(ValueError, match="frames"):
        segment_guidance(frames[:9], seg)
    tokens = torch.arange(10.0).view(1, 10, 1, 1).expand(2, 10, 3, 4)  # [B, T, N, D]
    out = segment_guidance(tokens, seg, dim=1)
    assert out.shape == (2, 5, 3, 4) and out[1, :, 2, 3].tolist() == [8, 9, 9, 9, 9]


def _video(num_frames, seed=0):
    g = torch.Generator().manual_seed(seed)
    return 0.1 + 0.7 * torch.rand(num_frames, 6, 5, 3, generator=g)


def _cut(video, plan):
    return [segment_guidance(video, seg).clone() for seg in plan]


@pytest.mark.parametrize("overlap_latent", [0, 1, 2])
def test_stitch_reproduces_original_without_colour_match(overlap_latent):
    video = _video(47)
    plan = plan_segments(47, 17, overlap_latent)
    out = stitch_segments(_cut(video, plan), plan, colour_match=False)
    assert torch.equal(out, video)
    # trimmed segments (padding already removed) are accepted too
    trimmed = [s[:seg.stop - seg.start] for s, seg in zip(_cut(video, plan), plan)]
    assert torch.equal(stitch_segments(trimmed, plan, colour_match=False), video)


def test_stitch_identity_with_colour_match_when_no_drift():
    video = _video(40)
    plan = plan_segments(40, 13)
    out = stitch_segments(_cut(video, plan), plan, colour_match=True)
    torch.testing.assert_close(out, video, atol=1e-5, rtol=0)


@pytest.mark.parametrize("overlap_latent", [0, 1])
def test_colour_matching_removes_drift(overlap_latent):
    video = _video(50, seed=1)
    plan = plan_segments(50, 17, overlap_latent)
    assert len(plan) >= 3
    parts = _cut(video, plan)
    parts[1] = parts[1] * 1.2
    parts[2] = parts[2] * 1.2 + 0.03  # drift accumulates
    drifted = stitch_segments(parts, plan, colour_match=False)
    fixed = stitch_segments(parts, plan, colour_match=True)
    assert (drifted - video).abs().max() > 0.05
    # With shared frames the match is exact; without, whole-segment statistics differ slightly.
    tol = 1e-5 if overlap_latent else 0.03
    assert (fixed - video).abs().mean() < tol


def test_reference_pulls_colours_toward_reference():
    video = _video(30, seed=2)
    plan = plan_segments(30, 13)
    reference = (video[0] * 0.5 + 0.4)[None]  # brighter, lower contrast
    plain = stitch_segments(_cut(video, plan), plan)
    pulled = stitch_segments(_cut(video, plan), plan, reference=reference, reference_strength=1.0)
    half = stitch_segments(_cut(video, plan), plan, reference=reference, reference_strength=0.5)
    ref_mean = reference.mean((0, 1, 2))
    gap = lambda v: (v.mean((0, 1, 2)) - ref_mean).abs().max().item()  # noqa: E731
    assert gap(pulled) < 0.02 < gap(half) < gap(plain)
    with pytest.raises(ValueError, match="reference"):
        stitch_segments(_cut(video, plan), plan, reference=torch.zeros(4, 4, 1))


def test_crossfade_fades_seam_offset_linearly():
    video = _video(25, seed=3)
    plan = plan_segments(25, 13)  # seams: segment 1 starts at frame 12 (shared), new frames 13..
    parts = _cut(video, plan)
    parts[1] = (parts[1] + 0.05).clamp(0, 1)  # per-pixel offset, no colour matching
    out = stitch_segments(parts, plan, colour_match=False, crossfade=4)
    offsets = [(out[t] - video[t]).mean().item() for t in range(12, 19)]
    assert offsets[0] == pytest.approx(0.0, abs=1e-6)  # shared frame kept from segment 0
    assert offsets[1:6] == pytest.approx([0.05 * (1 - w) for w in (0.8, 0.6, 0.4, 0.2, 0.0)], abs=1e-5)
    assert offsets[6] == pytest.approx(0.05, abs=1e-5)


def test_stitch_validates_inputs():
    video = _video(20)
    plan = plan_segments(20, 9)
    parts = _cut(video, plan)
    with pytest.raises(ValueError, match="segments_frames has"):
        stitch_segments(parts[:-1], plan)
    with pytest.raises(ValueError, match=r"segments_frames\[1\] has 4 frames"):
        stitch_segments([parts[0], parts[1][:4], *parts[2:]], plan)
    with pytest.raises(ValueError, match="frame shape"):
        stitch_segments([parts[0], parts[1][:, :3], *parts[2:]], plan)
    with pytest.raises(ValueError, match="crossfade"):
        stitch_segments(parts, plan, crossfade=-1)
    broken = [plan[0], Segment(1, 9, 17, 0, 1), *plan[2:]]
    with pytest.raises(ValueError, match="does not continue"):
        stitch_segments(parts, broken)
