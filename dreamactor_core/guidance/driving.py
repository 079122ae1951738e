"""The driving side of the guidance stack, end to end: track -> fill gaps and smooth ->
head pose -> (optionally) retarget to the reference's anatomy.

The body tracker and the head-pose source are pluggable: MediaPipe by default, an RTMPose/
DWPose ONNX file (onnx_pose.OnnxPoseTracker), a track measured elsewhere (e.g. SMPL-X
parameters through smplx_backend), and insightface's 68-point 3D landmarks for the head
(face_onnx.InsightFaceSource)."""

from __future__ import annotations

from typing import Callable, Protocol, Sequence

import numpy as np

from .filtering import smooth_track
from .head_pose import estimate_head_pose
from .mediapipe_backend import MediaPipeTracker
from .pose_track import PoseTrack
from .retarget import retarget_track


class FrameTracker(Protocol):
    def track(self, frames, fps: float = 25.0, on_frame: Callable[[int], None] | None = None) -> PoseTrack: ...


def extract_driving_pose(frames: Sequence[np.ndarray], fps: float, reference: PoseTrack | None = None,
                         retarget_mode: str = "auto", max_gap: int = 8,
                         on_frame: Callable[[int], None] | None = None,
                         tracker: FrameTracker | None = None, head_source: FrameTracker | None = None,
                         measured: PoseTrack | None = None) -> tuple[PoseTrack, PoseTrack]:
    """Returns (measured, pose): the cleaned track in the driving frames' pixels, and the same
    motion retargeted to ``reference`` (a one-frame track) when given, else ``measured`` again.

    ``tracker`` defaults to MediaPipe Holistic; ``measured`` skips tracking altogether (a track
    from another source); ``head_source``, when given, replaces the head pose wherever it found
    a face. ``frames`` must be re-iterable when ``head_source`` is used."""
    if fps <= 0:
        raise ValueError(f"fps={fps}: the driving video's frame rate must be positive")
    if measured is not None:
        raw = measured
    elif tracker is not None:
        raw = tracker.track(frames, fps=fps, on_frame=on_frame)
    else:
        with MediaPipeTracker() as default_tracker:
            raw = default_tracker.track(frames, fps=fps, on_frame=on_frame)
    cleaned = estimate_head_pose(smooth_track(raw, max_gap=max_gap))
    if head_source is not None:
        from .face_onnx import merge_face_into

        cleaned = merge_face_into(cleaned, head_source.track(frames, fps=fps))
    if reference is None:
        return cleaned, cleaned
    if reference.head_rotation is None:
        reference = estimate_head_pose(reference, smooth=False)
    return cleaned, retarget_track(cleaned, reference, mode=retarget_mode)


def composite_over(top: np.ndarray, bottom: np.ndarray) -> np.ndarray:
    """Draws the non-black pixels of ``top`` over ``bottom`` (both uint8 [..., 3])."""
    if top.shape != bottom.shape:
        raise ValueError(f"cannot composite maps of shape {top.shape} over {bottom.shape}")
    return np.where(top.any(axis=-1, keepdims=True), top, bottom)
