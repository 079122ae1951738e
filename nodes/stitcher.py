"""Segment Stitcher node: segments -> one video without seams or colour drift."""

from __future__ import annotations

import torch
from comfy_api.latest import io

import comfy.model_management as mm

from ..dreamactor_core.model.segments import stitch_segments
from .types import ReferenceType, SegmentsType

CATEGORY = "DreamActor"


class DreamActorSegmentStitcher(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="DreamActorSegmentStitcher",
            display_name="DreamActor Segment Stitcher",
            category=CATEGORY,
            description=(
                "Assembles the sampler's segments into one video: drops the frames segments share, "
                "matches each segment's colours to the previous one (and optionally pulls them toward the "
                "reference), and can crossfade the seams."),
            inputs=[
                SegmentsType.Input("segments"),
                io.Boolean.Input("colour_match", default=True),
                io.Int.Input("crossfade_frames", default=0, min=0, max=32),
                io.Float.Input("reference_strength", default=0.5, min=0.0, max=1.0, step=0.05,
                               tooltip="How far colours are pulled toward the reference (needs reference)."),
                ReferenceType.Input("reference", optional=True),
            ],
            outputs=[io.Image.Output("frames", display_name="frames")],
        )

    @classmethod
    def execute(cls, segments, colour_match, crossfade_frames, reference_strength, reference=None) -> io.NodeOutput:
        ref = None if reference is None else torch.from_numpy(reference.image).float() / 255.0
        video = stitch_segments(segments.segment_videos, segments.segments, reference=ref,
                                colour_match=colour_match, crossfade=crossfade_frames,
                                reference_strength=reference_strength)
        return io.NodeOutput(video.to(mm.intermediate_device()))


NODES = [DreamActorSegmentStitcher]
