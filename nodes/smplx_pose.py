"""SMPL-X Pose node: a pose track from SMPL-X parameters (4DHumans / HaMeR / SMPLer-X output,
converted to .npz or .json) and a user-supplied SMPL-X model file."""

from __future__ import annotations

import json
import os

from comfy_api.latest import io

from ..dreamactor_core.guidance.smplx_backend import SmplxPoseSource
from .pose_backends import backend_dir
from .types import PoseTrackType

CATEGORY = "DreamActor"


class DreamActorSmplxPose(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="DreamActorSmplxPose",
            display_name="DreamActor SMPL-X Pose",
            category=CATEGORY,
            description=(
                "Builds a pose track from per-frame SMPL-X parameters (a .npz/.json file with a leading frame "
                "axis, or a folder of per-frame files; pickles are refused, see the module docs to convert) "
                "and the SMPL-X model (SMPLX_NEUTRAL/MALE/FEMALE.npz in models/dreamactor/smplx/). Feed it to "
                "the Skeleton Extractor's external_pose."),
            inputs=[
                io.String.Input("params_path", default="", tooltip="File or folder of SMPL-X parameters."),
                io.Combo.Input("gender", options=["neutral", "male", "female"], default="neutral"),
                io.Int.Input("width", default=0, min=0, max=8192, tooltip="Frame width; 0 = from the parameter file."),
                io.Int.Input("height", default=0, min=0, max=8192, tooltip="Frame height; 0 = from the parameter file."),
                io.Float.Input("fps", default=25.0, min=1.0, max=240.0, step=0.01),
            ],
            outputs=[PoseTrackType.Output("pose", display_name="pose"),
                     io.String.Output("report", display_name="report")],
        )

    @classmethod
    def execute(cls, params_path, gender, width, height, fps) -> io.NodeOutput:
        if not params_path or not os.path.exists(params_path):
            raise ValueError(f"params_path {params_path!r} does not exist: give the .npz/.json file or the folder "
                             "of per-frame files written by 4DHumans / HaMeR / SMPLer-X (converted from .pkl)")
        source = SmplxPoseSource(models_dir=backend_dir("smplx"), gender=gender)
        size = (height, width) if width and height else None
        track = source.track(params_path, image_size=size, fps=fps)
        return io.NodeOutput(track, json.dumps(track.report, default=str))


NODES = [DreamActorSmplxPose]
