"""The driving side end to end on the real clip: lost frames, retargeting, errors."""

import numpy as np
import pytest

from dreamactor_core.guidance.driving import composite_over, extract_driving_pose
from dreamactor_core.guidance.reference import prepare_reference
from dreamactor_core.guidance.topology import J
from tests.real_media import astronaut, driver_frames


@pytest.fixture(scope="module")
def reference():
    return prepare_reference(astronaut(), (384, 288))


def test_person_lost_in_a_few_frames_is_interpolated_and_reported():
    frames = driver_frames()[:24].copy()
    frames[10:13] = 127  # the person vanishes for three frames
    measured, pose = extract_driving_pose(frames, fps=25, max_gap=8)
    assert measured.report["frames_without_person"] == [10, 11, 12]
    filled = measured.report["smoothing"]["body"]["filled"]
    nose = J["nose"]
    assert any(point == (nose,) and start <= 10 and stop >= 13 for point, start, stop in filled)
    # The filled nose lies between its neighbours' positions.
    before, after, middle = measured.body_2d[9, nose], measured.body_2d[13, nose], measured.body_2d[11, nose]
    assert np.linalg.norm(middle - (before + after) / 2) < 3.0
    assert measured.body_conf[11, nose] > 0.3
    assert pose is measured  # no reference: nothing to retarget


def test_long_gap_is_left_missing_and_reported():
    frames = driver_frames()[:24].copy()
    frames[6:18] = 127
    measured, _ = extract_driving_pose(frames, fps=25, max_gap=4)
    assert measured.body_conf[12, J["nose"]] < 0.3
    missing = measured.report["smoothing"]["body"]["missing"]
    assert any(point == (J["nose"],) and start <= 6 and stop >= 18 for point, start, stop in missing)


def test_retargeted_track_lives_in_the_reference_frame(reference):
    frames = driver_frames()[:8]
    measured, pose = extract_driving_pose(frames, fps=25, reference=reference.track)
    assert measured.image_size == (384, 288) and pose.image_size == reference.size
    # Anchored at the neck on the first frame (half-body reference).
    assert np.linalg.norm(pose.body_2d[0, J["neck"]] - reference.track.body_2d[0, J["neck"]]) < 2.0
    assert pose.head_rotation is not None and np.isfinite(pose.head_rotation).all()


def test_bad_fps_and_composite_shapes():
    with pytest.raises(ValueError, match="frame rate must be positive"):
        extract_driving_pose(driver_frames()[:2], fps=0)
    top = np.zeros((2, 4, 4, 3), np.uint8)
    top[0, 1, 1] = 255
    bottom = np.full((2, 4, 4, 3), 9, np.uint8)
    out = composite_over(top, bottom)
    assert (out[0, 1, 1] == 255).all() and (out[0, 0, 0] == 9).all()
    with pytest.raises(ValueError, match="cannot composite"):
        composite_over(top, bottom[:1])
