"""Where the optional pose backends' user-supplied model files live in ComfyUI, and how a
node's backend choice becomes a tracker object from dreamactor_core.guidance."""

from __future__ import annotations

import os

import folder_paths

from .model_loader import FOLDER

MEDIAPIPE = "mediapipe"
ONNX_PREFIX = "onnx/"
INSIGHTFACE = "insightface"


def backend_dir(kind: str) -> str:
    """models/dreamactor/<kind> (the first dreamactor models folder)."""
    return os.path.join(folder_paths.get_folder_paths(FOLDER)[0], kind)


def body_backends() -> list[str]:
    pose_dir = backend_dir("pose")
    onnx = sorted(f for f in os.listdir(pose_dir) if f.endswith(".onnx")) if os.path.isdir(pose_dir) else []
    return [MEDIAPIPE] + [ONNX_PREFIX + f for f in onnx]


def make_body_tracker(choice: str):
    """None for MediaPipe (the core's default), else an RTMPose/DWPose ONNX tracker."""
    if choice == MEDIAPIPE:
        return None
    if not choice.startswith(ONNX_PREFIX):
        raise ValueError(f"pose_backend {choice!r} is unknown: pick mediapipe or an .onnx file in {backend_dir('pose')}")
    from ..dreamactor_core.guidance.onnx_pose import OnnxPoseTracker

    return OnnxPoseTracker(choice[len(ONNX_PREFIX):], models_dir=backend_dir("pose"))


def make_head_source(choice: str):
    if choice == MEDIAPIPE:
        return None
    from ..dreamactor_core.guidance.face_onnx import InsightFaceSource

    return InsightFaceSource(models_dir=backend_dir("insightface"))
