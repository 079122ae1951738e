"""Face Crop node: aligned 224x224 face crops per frame for the face-motion encoder."""

from __future__ import annotations

import json

from comfy_api.latest import io

from ..dreamactor_core.guidance.face_align import face_crops
from .comfy_glue import frames_uint8, uint8_to_image_batch
from .types import PoseTrackType

CATEGORY = "DreamActor"


class DreamActorFaceCrop(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="DreamActorFaceCrop",
            display_name="DreamActor Face Crop",
            category=CATEGORY,
            description=(
                "Cuts an aligned, temporally smoothed face crop out of every frame (similarity "
                "transform from the face landmarks of the pose track). Frames without a face reuse "
                "the nearest transform and are listed in the report."),
            inputs=[
                io.Image.Input("images", tooltip="The frames the pose track was measured on."),
                PoseTrackType.Input("pose", tooltip="The Skeleton Extractor's measured_pose for these frames."),
                io.Int.Input("size", default=224, min=64, max=1024, step=8,
                             tooltip="Crop size in pixels; the face-motion encoder expects 224."),
            ],
            outputs=[io.Image.Output("face_crops", display_name="face_crops"), io.String.Output("report", display_name="report")],
        )

    @classmethod
    def execute(cls, images, pose, size) -> io.NodeOutput:
        frames = frames_uint8(images, "images")
        if len(frames) != len(pose):
            raise ValueError(
                f"images has {len(frames)} frames but the pose track has {len(pose)}: connect the "
                "frames the Skeleton Extractor was given")
        if frames[0].shape[:2] != tuple(pose.image_size):
            raise ValueError(
                f"images are {frames[0].shape[1]}x{frames[0].shape[0]} but the pose track was measured on "
                f"{pose.image_size[1]}x{pose.image_size[0]} frames: connect the Skeleton Extractor's "
                "measured_pose (not the retargeted pose)")
        crops, _, report = face_crops(frames, pose, size=size)
        return io.NodeOutput(uint8_to_image_batch(crops), json.dumps(report, default=str))


NODES = [DreamActorFaceCrop]
