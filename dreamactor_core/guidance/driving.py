"""The driving side of the guidance stack, end to end: track -> fill gaps and smooth ->
head pose -> (optionally) retarget to the reference's anatomy."""

from __future__ import annotations

from typing import Callable, Iterable

import numpy as np

from .filtering import smooth_track
from .head_pose import estimate_head_pose
from .mediapipe_backend import MediaPipeTracker
from .pose_track import PoseTrack
from .retarget import retarget_track


def extract_driving_pose(frames: Iterable[np.ndarray], fps: float, reference: PoseTrack | None = None,
                         retarget_mode: str = "auto", model_complexity: int = 1, max_gap: int = 8,
                         on_frame: Callable[[int], None] | None = None) -> tuple[PoseTrack, PoseTrack]:
    """Returns (measured, pose): the cleaned track in the driving frames' pixels, and the same
    motion retargeted to ``reference`` (a one-frame track) when given, else ``measured`` again."""
    if fps <= 0:
        raise ValueError(f"fps={fps}: the driving video's frame rate must be positive")
    with MediaPipeTracker(model_complexity=model_complexity) as tracker:
        raw = tracker.track(frames, fps=fps, on_frame=on_frame)
    measured = estimate_head_pose(smooth_track(raw, max_gap=max_gap))
    if reference is None:
        return measured, measured
    if reference.head_rotation is None:
        reference = estimate_head_pose(reference, smooth=False)
    return measured, retarget_track(measured, reference, mode=retarget_mode)


def composite_over(top: np.ndarray, bottom: np.ndarray) -> np.ndarray:
    """Draws the non-black pixels of ``top`` over ``bottom`` (both uint8 [..., 3])."""
    if top.shape != bottom.shape:
        raise ValueError(f"cannot composite maps of shape {top.shape} over {bottom.shape}")
    return np.where(top.any(axis=-1, keepdims=True), top, bottom)
