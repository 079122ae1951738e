"""Skeleton Extractor node: tracks the driving person, retargets them to the reference's
anatomy (bone-length normalisation) and draws the skeleton maps."""

from __future__ import annotations

import json

from comfy_api.latest import io

from ..dreamactor_core.guidance.driving import extract_driving_pose
from ..dreamactor_core.guidance.skeleton_render import render_skeleton
from .comfy_glue import Progress, frames_uint8, uint8_to_image_batch
from .pose_backends import INSIGHTFACE, MEDIAPIPE, body_backends, make_body_tracker, make_head_source
from .types import PoseTrackType, ReferenceType

CATEGORY = "DreamActor"


class DreamActorSkeletonExtractor(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="DreamActorSkeletonExtractor",
            display_name="DreamActor Skeleton Extractor",
            category=CATEGORY,
            description=(
                "Tracks the person in the driving frames (MediaPipe Holistic: 3D body, hands, face), "
                "fills short gaps, smooths, estimates head pose, and, when a reference is connected, "
                "retargets the motion to the reference's bone lengths and framing. Outputs the pose "
                "track and the line-skeleton maps."),
            inputs=[
                io.Image.Input("images", tooltip="Driving video frames (an IMAGE batch)."),
                io.Float.Input("fps", default=25.0, min=1.0, max=240.0, step=0.01,
                               tooltip="Frame rate of the driving video (GetVideoComponents gives it)."),
                io.Combo.Input("retarget_mode", options=["auto", "full_body", "half_body"], default="auto",
                               tooltip="Anchor for the retargeted skeleton: feet (full body) or "
                                       "neck/shoulders (half body, portraits); auto picks from the reference."),
                io.Int.Input("max_gap_frames", default=8, min=0, max=120,
                             tooltip="Joints lost for at most this many frames are interpolated; longer gaps are reported."),
                io.Combo.Input("pose_backend", options=body_backends(), default=MEDIAPIPE,
                               tooltip="MediaPipe Holistic, or an RTMPose/DWPose whole-body .onnx file placed in "
                                       "models/dreamactor/pose/."),
                io.Combo.Input("head_backend", options=[MEDIAPIPE, INSIGHTFACE], default=MEDIAPIPE,
                               tooltip="insightface: head pose from the buffalo_l det_10g.onnx + 1k3d68.onnx files "
                                       "placed in models/dreamactor/insightface/."),
                ReferenceType.Input("reference", optional=True,
                                    tooltip="From DreamActor Reference Loader: enables bone-length normalisation."),
                PoseTrackType.Input("external_pose", optional=True,
                                    tooltip="A pose measured elsewhere (e.g. DreamActor SMPL-X Pose) used instead of "
                                            "tracking the frames."),
            ],
            outputs=[
                PoseTrackType.Output("pose", display_name="pose", tooltip="Retargeted to the reference when one is connected; "
                                                     "drives the skeleton and head-sphere maps."),
                PoseTrackType.Output("measured_pose", display_name="measured_pose", tooltip="As measured on the driving frames; "
                                                              "feed it to Face Crop with the same frames."),
                io.Image.Output("skeleton_maps", display_name="skeleton_maps", tooltip="Line skeletons of body and hands, one per frame."),
                io.String.Output("report", display_name="report", tooltip="Gaps filled, frames lost and other notes, as JSON."),
            ],
        )

    @classmethod
    def execute(cls, images, fps, retarget_mode, max_gap_frames, pose_backend=MEDIAPIPE, head_backend=MEDIAPIPE,
                reference=None, external_pose=None) -> io.NodeOutput:
        frames = frames_uint8(images, "images")
        if external_pose is not None and len(external_pose) != len(frames):
            raise ValueError(f"external_pose has {len(external_pose)} frames but images has {len(frames)}: "
                             "they must describe the same video")
        progress = Progress(len(frames))
        measured, pose = extract_driving_pose(
            frames, fps=fps, reference=None if reference is None else reference.track,
            retarget_mode=retarget_mode, max_gap=max_gap_frames, on_frame=progress.step,
            tracker=make_body_tracker(pose_backend), head_source=make_head_source(head_backend),
            measured=external_pose)
        maps = render_skeleton(pose, size=pose.image_size)
        return io.NodeOutput(pose, measured, uint8_to_image_batch(maps), json.dumps(pose.report, default=str))


NODES = [DreamActorSkeletonExtractor]
