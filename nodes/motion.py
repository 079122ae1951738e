"""Face-motion drivers: face crops of a video, or an audio track, -> motion tokens of one shape.

Swapping the sampler's driver between video and audio is swapping which of these two nodes
feeds its ``face_motion`` input."""

from __future__ import annotations

import json

import torch
from comfy_api.latest import io

from ..dreamactor_core.model.motion_tokens import encode_audio, encode_face_crops
from .comfy_glue import Progress
from .types import FaceMotionType, ModelType, PoseTrackType

CATEGORY = "DreamActor"


class DreamActorFaceMotionEncoder(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="DreamActorFaceMotionEncoder",
            display_name="DreamActor Face-Motion Encoder",
            category=CATEGORY,
            description=("Encodes aligned face crops (DreamActor Face Crop) into implicit face-motion "
                         "tokens, one set per frame, for the sampler's face attention."),
            inputs=[
                ModelType.Input("model"),
                io.Image.Input("face_crops", tooltip="Aligned crops, one per driving frame."),
                io.Float.Input("fps", default=25.0, min=1.0, max=240.0, step=0.01),
            ],
            outputs=[FaceMotionType.Output("face_motion", display_name="face_motion")],
        )

    @classmethod
    def execute(cls, model, face_crops, fps) -> io.NodeOutput:
        progress = Progress(1)
        motion = encode_face_crops(model, face_crops.to(torch.float32), fps)
        progress.step()
        return io.NodeOutput(motion)


class DreamActorAudioToMotion(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="DreamActorAudioToMotion",
            display_name="DreamActor Audio-to-Motion Encoder",
            category=CATEGORY,
            description=("Maps speech to face-motion tokens of exactly the shape the Face-Motion Encoder "
                         "gives, aligned to the video's frames: any sample rate and channel count "
                         "(downmixed, resampled to 16 kHz); audio shorter than the video is padded with "
                         "silence, longer audio is cut (both reported)."),
            inputs=[
                ModelType.Input("model"),
                io.Audio.Input("audio"),
                io.Int.Input("num_frames", default=49, min=1, max=100000,
                             tooltip="Frames to produce; ignored when a pose is connected (its length is used)."),
                io.Float.Input("fps", default=25.0, min=1.0, max=240.0, step=0.01,
                               tooltip="Ignored when a pose is connected (its fps is used)."),
                PoseTrackType.Input("pose", optional=True,
                                    tooltip="Align to this pose track's frame count and fps."),
            ],
            outputs=[FaceMotionType.Output("face_motion", display_name="face_motion"),
                     io.String.Output("report", display_name="report")],
        )

    @classmethod
    def execute(cls, model, audio, num_frames, fps, pose=None) -> io.NodeOutput:
        if pose is not None:
            num_frames, fps = len(pose), pose.fps
        progress = Progress(1)
        motion = encode_audio(model, audio, num_frames, fps)
        progress.step()
        return io.NodeOutput(motion, json.dumps(motion.info, default=str))


NODES = [DreamActorFaceMotionEncoder, DreamActorAudioToMotion]
