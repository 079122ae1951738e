"""Long-video planning and stitching, independent of the model.

A causal video VAE with temporal factor f (4 here) encodes 1 + f*k pixel frames into 1 + k
latent frames: latent 0 is the first pixel frame alone, latent j >= 1 covers pixel frames
f*(j-1)+1 .. f*j. A segment is therefore valid only if its length is f*k + 1.

Long videos are generated segment by segment (paper: 73 frames). Segment k+1 starts from the
end of segment k (sequential image-to-video; the pipeline encodes segment k's last frame alone
as segment k+1's first latent, see pipeline.py). That first latent decodes, causally, to ONE
pixel frame, so with `overlap_latent` latents to start from, consecutive segments share

    overlap_frames = 1 + (overlap_latent - 1) * f        (1 frame for the default overlap_latent=1)

pixel frames of the driver: segment k+1 starts at stop_k - overlap_frames. Segment k covers
driver frames [start, stop); when fewer than a valid length remain, the last segment is padded
with `pad` copies of the driver's last frame (`segment_guidance`) and its output is trimmed back
to stop - start frames by `stitch_segments`, which also drops every segment's first `overlap`
frames so that each driver frame appears exactly once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch


@dataclass(frozen=True)
class Segment:
    index: int
    start: int  # first driver frame (inclusive)
    stop: int  # last driver frame (exclusive)
    pad: int  # copies of the driver's last frame appended to reach a valid length
    overlap: int = 0  # leading frames shared with the previous segment (0 for the first)

    @property
    def length(self) -> int:
        """Frames generated for this segment, padding included (always f*k + 1)."""
        return self.stop - self.start + self.pad

    @property
    def new_start(self) -> int:
        """First driver frame that this segment contributes to the stitched video."""
        return self.start + self.overlap


def overlap_frames(overlap_latent: int, temporal_factor: int = 4) -> int:
    return 0 if overlap_latent == 0 else 1 + (overlap_latent - 1) * temporal_factor


def _valid_length_at_least(n: int, temporal_factor: int) -> int:
    return 1 + temporal_factor * -(-(n - 1) // temporal_factor)  # ceil to f*k + 1


def plan_segments(num_frames: int, segment_frames: int, overlap_latent: int = 1,
                  temporal_factor: int = 4) -> list[Segment]:
    """Cuts num_frames driver frames into VAE-valid segments of at most segment_frames frames."""
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    if temporal_factor < 1:
        raise ValueError(f"temporal_factor must be >= 1, got {temporal_factor}")
    if segment_frames < 1 or (segment_frames - 1) % temporal_factor:
        lower = max(1, segment_frames - (segment_frames - 1) % temporal_factor)
        raise ValueError(f"segment_frames must be {temporal_factor}*k + 1 for the causal VAE, got "
                         f"{segment_frames}; use {lower} or {lower + temporal_factor}")
    if overlap_latent < 0:
        raise ValueError(f"overlap_latent must be >= 0, got {overlap_latent}")
    overlap = overlap_frames(overlap_latent, temporal_factor)
    if overlap >= segment_frames:
        raise ValueError(f"segment_frames ({segment_frames}) must be longer than the overlap of "
                         f"{overlap} frames ({overlap_latent} latent frames); raise segment_frames "
                         f"or lower overlap_latent")
    segments: list[Segment] = []
    start = 0
    while True:
        stop = min(start + segment_frames, num_frames)
        pad = _valid_length_at_least(stop - start, temporal_factor) - (stop - start)
        segments.append(Segment(len(segments), start, stop, pad, overlap if segments else 0))
        if stop == num_frames:
            return segments
        start = stop - overlap


def segment_guidance(frames: torch.Tensor, segment: Segment, dim: int = 0) -> torch.Tensor:
    """One segment's slice of any per-frame tensor along `dim` (0 for [T, H, W, C] maps, 1 for
    [B, T, N, D] motion tokens), padded by repeating the last frame."""
    if frames.shape[dim] < segment.stop:
        raise ValueError(f"frames has {frames.shape[dim]} frames but segment {segment.index} needs "
                         f"frames up to {segment.stop}; plan with the driver's frame count")
    part = frames.narrow(dim, segment.start, segment.stop - segment.start)
    if segment.pad == 0:
        return part
    last = part.narrow(dim, part.shape[dim] - 1, 1)
    return torch.cat([part, *([last] * segment.pad)], dim=dim)


def _channel_stats(frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std over all frames and pixels of [T, H, W, C]; float64, [C] each."""
    flat = frames.reshape(-1, frames.shape[-1]).to(torch.float64)
    return flat.mean(0), flat.std(0, unbiased=False)


def _affine_to(src: tuple[torch.Tensor, torch.Tensor], dst: tuple[torch.Tensor, torch.Tensor],
               max_gain: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(gain, bias) with gain * x + bias mapping src's mean/std to dst's, per channel."""
    (mu_s, sd_s), (mu_d, sd_d) = src, dst
    gain = (sd_d / sd_s.clamp_min(1e-6)).clamp(1 / max_gain, max_gain)
    gain = torch.where(sd_s < 1e-4, torch.ones_like(gain), gain)  # flat colour: shift only
    return gain, mu_d - gain * mu_s


def _check_inputs(segments_frames: Sequence[torch.Tensor], plan: Sequence[Segment],
                  reference: torch.Tensor | None, crossfade: int) -> None:
    if len(segments_frames) != len(plan) or not plan:
        raise ValueError(f"segments_frames has {len(segments_frames)} entries but the plan has "
                         f"{len(plan)} segments; pass one generated clip per planned segment")
    for k, seg in enumerate(plan):
        expected_start = plan[k - 1].stop - seg.overlap if k else 0
        if seg.index != k or seg.start != expected_start or seg.stop <= seg.start:
            raise ValueError(f"plan[{k}] = {seg} does not continue plan[{k - 1}]; build the plan "
                             f"with plan_segments(num_frames, segment_frames)")
    shape = None
    for seg, frames in zip(plan, segments_frames):
        if not isinstance(frames, torch.Tensor) or frames.ndim != 4:
            raise ValueError(f"segments_frames[{seg.index}] must be a [T, H, W, C] tensor, got "
                             f"{getattr(frames, 'shape', type(frames))}")
        if frames.shape[0] not in (seg.length, seg.stop - seg.start):
            raise ValueError(f"segments_frames[{seg.index}] has {frames.shape[0]} frames, expected "
                             f"{seg.length} (or {seg.stop - seg.start} with padding trimmed)")
        if shape is not None and frames.shape[1:] != shape:
            raise ValueError(f"segments_frames[{seg.index}] has frame shape {tuple(frames.shape[1:])},"
                             f" expected {tuple(shape)} like segment 0")
        shape = frames.shape[1:]
    if reference is not None:
        if reference.ndim == 4 and reference.shape[0] == 1:
            reference = reference[0]
        if reference.ndim != 3 or reference.shape[-1] != shape[-1]:
            raise ValueError(f"reference must be an image [H, W, {shape[-1]}] or [1, H, W, "
                             f"{shape[-1]}], got {tuple(reference.shape)}")
    if crossfade < 0:
        raise ValueError(f"crossfade must be >= 0 frames, got {crossfade}")


def stitch_segments(segments_frames: Sequence[torch.Tensor], plan: Sequence[Segment],
                    reference: torch.Tensor | None = None, colour_match: bool = True,
                    crossfade: int = 0, reference_strength: float = 0.5,
                    max_gain: float = 2.0) -> torch.Tensor:
    """Joins generated segments [T_k, H, W, C] (0..1) into one video [plan[-1].stop, H, W, C].

    * Padding frames are trimmed and the first `overlap` frames of every later segment (the
      frames it shares with the previous one) are dropped.
    * colour_match: segment k's per-channel mean/std on the shared frames is matched to the
      (already corrected) previous segment's on the same frames, so every segment is carried
      into segment 0's colours; without shared frames whole segments are compared. The gain is
      clamped to [1/max_gain, max_gain]. With a reference image, one global affine per channel
      then moves segment 0's statistics toward the reference's by reference_strength (0..1);
      being global it adds no seams.
    * crossfade = N > 0: at each seam the per-pixel difference between the previous segment's
      and this segment's version of the last shared frame is added to this segment's first N
      new frames with weights N/(N+1) .. 1/(N+1), a linear fade from the previous segment's
      rendering into this one's. Needs shared frames (overlap_latent >= 1).
    Segments are processed one at a time into a single preallocated output.
    """
    _check_inputs(segments_frames, plan, reference, crossfade)
    first = segments_frames[0]
    out = torch.empty((plan[-1].stop, *first.shape[1:]), dtype=first.dtype, device=first.device)
    prev_shared: torch.Tensor | None = None  # corrected previous segment, frames shared with next
    prev_stats = None
    for seg, frames in zip(plan, segments_frames):
        frames = frames[:seg.stop - seg.start]
        if colour_match and seg.index > 0:
            if seg.overlap > 0:
                gain, bias = _affine_to(_channel_stats(frames[:seg.overlap]),
                                        _channel_stats(prev_shared), max_gain)
            else:
                gain, bias = _affine_to(_channel_stats(frames), prev_stats, max_gain)
            frames = (frames.to(torch.float64) * gain + bias).clamp(0, 1).to(first.dtype)
        new = frames[seg.overlap:]
        if crossfade > 0 and seg.overlap > 0:
            offset = prev_shared[-1] - frames[seg.overlap - 1]  # [H, W, C]
            n = min(crossfade, new.shape[0])
            weights = torch.arange(crossfade, crossfade - n, -1, dtype=frames.dtype,
                                   device=frames.device) / (crossfade + 1)
            new = new.clone()
            new[:n] = (new[:n] + weights.view(-1, 1, 1, 1) * offset).clamp(0, 1)
        out[seg.new_start:seg.stop] = new
        next_overlap = plan[seg.index + 1].overlap if seg.index + 1 < len(plan) else 0
        prev_shared = out[seg.stop - next_overlap:seg.stop] if next_overlap else None
        if colour_match and next_overlap == 0:
            prev_stats = _channel_stats(frames)
    if reference is not None and colour_match and reference_strength > 0:
        _pull_toward_reference(out, plan[0], reference, reference_strength, max_gain)
    return out


def _pull_toward_reference(out: torch.Tensor, first: Segment, reference: torch.Tensor,
                           strength: float, max_gain: float) -> None:
    ref = reference[0] if reference.ndim == 4 else reference
    mu_0, sd_0 = _channel_stats(out[first.start:first.stop])
    mu_r, sd_r = _channel_stats(ref[None])
    strength = min(max(strength, 0.0), 1.0)
    target = (mu_0 + strength * (mu_r - mu_0), sd_0 + strength * (sd_r - sd_0))
    gain, bias = _affine_to((mu_0, sd_0), target, max_gain)
    for t in range(0, out.shape[0], 16):  # in place, a few frames at a time
        chunk = out[t:t + 16]
        chunk.copy_((chunk.to(torch.float64) * gain + bias).clamp(0, 1))
