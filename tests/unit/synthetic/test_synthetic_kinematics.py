"""Forward kinematics and sign conventions of the synthetic puppet."""

import numpy as np
import pytest

from dreamactor_core.guidance.topology import HAND_BONES, J
from dreamactor_core.synthetic.character import STREAM_MOTION, rng_for, sample_character
from dreamactor_core.synthetic.kinematics import forward_kinematics, head_rotation_matrix
from dreamactor_core.synthetic.motion import HEAD_LIMITS, sample_motion


@pytest.fixture(scope="module")
def posed():
    spec = sample_character(11)
    motion = sample_motion(rng_for(11, STREAM_MOTION), 200, 25.0)
    return spec, motion, forward_kinematics(spec, motion.pose)


def _length(points, a, b):
    return np.linalg.norm(points[..., a, :] - points[..., b, :], axis=-1)


def test_limb_bones_have_the_spec_lengths_in_every_frame(posed):
    spec, _, sk = posed
    expected = {("pelvis", "neck"): spec.torso_length, ("r_shoulder", "r_elbow"): spec.upper_arm,
                ("l_elbow", "l_wrist"): spec.forearm, ("r_hip", "r_knee"): spec.thigh,
                ("l_knee", "l_ankle"): spec.shin, ("r_ankle", "r_foot"): spec.foot_length,
                ("r_hip", "l_hip"): spec.hip_width}
    for (a, b), length in expected.items():
        np.testing.assert_allclose(_length(sk.body, J[a], J[b]), length, rtol=1e-9, err_msg=f"{a}-{b}")


def test_hand_and_head_bones_are_rigid_over_the_clip(posed):
    _, _, sk = posed
    for a, b in HAND_BONES:
        lengths = _length(sk.hands, a, b)  # [T, 2]
        assert np.ptp(lengths) < 1e-9, (a, b)
        assert lengths.min() > 0.005
    for a, b in (("nose", "r_eye"), ("r_eye", "r_ear"), ("nose", "l_eye"), ("l_eye", "l_ear")):
        assert np.ptp(_length(sk.body, J[a], J[b])) < 1e-9


def test_pelvis_is_origin_and_hip_midpoint(posed):
    _, _, sk = posed
    np.testing.assert_allclose(sk.body[:, J["pelvis"]], 0.0, atol=1e-12)
    np.testing.assert_allclose(sk.body[:, J["r_hip"]] + sk.body[:, J["l_hip"]], 0.0, atol=1e-12)


def test_motion_is_smooth_and_within_head_limits(posed):
    _, motion, sk = posed
    for name in ("yaw", "pitch", "roll"):
        values = getattr(motion.pose, f"head_{name}")
        assert np.abs(values).max() <= HEAD_LIMITS[name] + 1e-9
    # 25 fps: no joint jumps more than 10 cm between frames.
    assert np.linalg.norm(np.diff(sk.body, axis=0), axis=-1).max() < 0.1
    assert 0.0 <= motion.blink.min() and motion.blink.max() <= 1.0


def test_person_faces_camera_with_right_side_on_image_left():
    spec = sample_character(0)
    pose = sample_motion(rng_for(0, STREAM_MOTION), 1, 25.0).pose
    for name in ("body_yaw", "torso_roll", "torso_pitch", "head_yaw", "head_pitch", "head_roll"):
        setattr(pose, name, np.zeros(1))
    sk = forward_kinematics(spec, pose)
    assert sk.body[0, J["r_shoulder"], 0] < 0 < sk.body[0, J["l_shoulder"], 0]
    assert sk.body[0, J["nose"], 2] < sk.head_center[0, 2]  # nose towards the camera (-z)
    assert sk.body[0, J["neck"], 1] < 0 < sk.body[0, J["r_knee"], 1]  # y down


def test_head_rotation_signs_follow_pose_track_convention():
    forward, up = np.array([0.0, 0.0, -1.0]), np.array([0.0, -1.0, 0.0])
    assert (head_rotation_matrix(30, 0, 0) @ forward)[0] > 0.4  # yaw > 0: faces image right
    assert (head_rotation_matrix(0, 20, 0) @ forward)[1] < -0.3  # pitch > 0: looks up (y down)
    assert (head_rotation_matrix(0, 0, 20) @ up)[0] > 0.3  # roll > 0: top tilts clockwise
    r = head_rotation_matrix(np.array([40.0]), np.array([-15.0]), np.array([10.0]))[0]
    np.testing.assert_allclose(r @ r.T, np.eye(3), atol=1e-12)


def test_bad_motion_arguments_raise():
    with pytest.raises(ValueError, match="num_frames"):
        sample_motion(rng_for(0, STREAM_MOTION), 0, 25.0)
    with pytest.raises(ValueError, match="fps"):
        sample_motion(rng_for(0, STREAM_MOTION), 5, 0.0)
    with pytest.raises(ValueError, match="seed"):
        rng_for(-1, STREAM_MOTION)
