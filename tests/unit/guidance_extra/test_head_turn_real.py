"""The head-turn clip (a real photo, head rotated in 3D) through the tracking + head-pose stack."""

import av
import numpy as np
import pytest
from scipy.stats import spearmanr

from dreamactor_core.guidance.filtering import smooth_track
from dreamactor_core.guidance.head_pose import estimate_head_pose
from dreamactor_core.guidance.mediapipe_backend import MediaPipeTracker
from dreamactor_core.guidance.topology import J
from make_head_turn import FPS, FRAMES, OUT, SIZE, yaw_degrees
from tests.real_media import astronaut


def _frames() -> np.ndarray:
    with av.open(str(OUT)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


@pytest.fixture(scope="module")
def head_track():
    with MediaPipeTracker() as tracker:
        raw = tracker.track(_frames(), fps=FPS)
    return estimate_head_pose(smooth_track(raw))


def test_asset_is_small_and_shaped_as_documented():
    assert OUT.stat().st_size < 400 * 1024
    frames = _frames()
    assert frames.shape == (FRAMES, *SIZE, 3)
    # Real photo content: the hair/background corner is the photo's own pixels, untouched.
    photo = astronaut()
    assert np.abs(frames[0, -40:, -40:].astype(int) - frames[-1, -40:, -40:].astype(int)).mean() < 4
    assert photo.std() > 40 and frames.std() > 40


def test_yaw_ground_truth_sweeps_smoothly():
    yaw = yaw_degrees(np.arange(FRAMES))
    assert yaw[0] == pytest.approx(-25) and yaw[-1] == pytest.approx(25)
    assert (np.diff(yaw) > 0).all()


def test_head_pose_found_in_nearly_every_frame(head_track):
    assert (head_track.head_conf > 0).mean() >= 0.95


def test_estimated_yaw_follows_the_sweep(head_track):
    truth = yaw_degrees(np.arange(FRAMES))
    yaw = head_track.head_rotation[:, 0]
    assert spearmanr(truth, yaw).statistic > 0.95
    assert yaw.max() - yaw.min() > 20
    # PoseTrack convention: yaw > 0 turns the face to the image's right, so the nose moves
    # right of the eyes' midpoint as yaw grows.
    assert yaw[-1] > yaw[0]
    nose = head_track.body_2d[:, J["nose"], 0]
    eyes = head_track.body_2d[:, [J["r_eye"], J["l_eye"]], 0].mean(axis=1)
    offset = nose - eyes
    assert offset[-5:].mean() > offset[:5].mean() + 3
