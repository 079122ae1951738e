import numpy as np
import pytest

from dreamactor_core.guidance.head_pose import (
    BODY_HEAD_POINTS, HEAD_CENTER, HEAD_RADIUS_CM, PNP_LANDMARKS, PNP_POINTS, camera_matrix,
    estimate_head_pose, euler_to_matrix, pose_from_body_keypoints, pose_from_face_landmarks)
from dreamactor_core.guidance.pose_track import PoseTrack
from dreamactor_core.guidance.topology import J, NUM_BODY

SIZE = (480, 640)


def project_face(ypr, translation=(3.0, -2.0, 55.0), noise=0.0, rng=None):
    """468 landmarks (only the PnP ones meaningful) of the rotated canonical face, in pixels."""
    k = camera_matrix(SIZE)
    cam = PNP_POINTS @ euler_to_matrix(ypr).T + translation
    px = (cam @ k.T)[:, :2] / cam[:, 2:]
    if noise:
        px = px + rng.normal(0, noise, px.shape)
    face = np.zeros((468, 2))
    face[list(PNP_LANDMARKS)] = px
    return face


def test_face_landmarks_recover_known_angles():
    rng = np.random.default_rng(0)
    worst = 0.0
    for ypr in rng.uniform([-60, -35, -35], [60, 35, 35], (40, 3)):
        got, centre, radius = pose_from_face_landmarks(project_face(ypr, noise=0.3, rng=rng), SIZE)
        worst = max(worst, np.abs(got - ypr).max())
    assert worst < 3.0


def test_face_landmarks_centre_and_radius():
    ypr, trans = (20.0, -10.0, 5.0), np.array([3.0, -2.0, 55.0])
    _, centre, radius = pose_from_face_landmarks(project_face(ypr, trans), SIZE)
    k = camera_matrix(SIZE)
    head = euler_to_matrix(ypr) @ HEAD_CENTER + trans
    np.testing.assert_allclose(centre, (k @ head)[:2] / head[2], atol=0.1)
    assert radius == pytest.approx(k[0, 0] * HEAD_RADIUS_CM / head[2], rel=1e-3)


def test_face_yaw_sweep_is_monotonic():
    yaws = np.linspace(-70, 70, 29)
    got = [pose_from_face_landmarks(project_face((y, 5.0, -5.0)), SIZE)[0][0] for y in yaws]
    assert np.all(np.diff(got) > 0)


def body_from_head(ypr, scale=4.0, nose_px=(300.0, 200.0)):
    """Weak-perspective projection of BODY_HEAD_POINTS; returns body_2d [NUM_BODY, 2], conf."""
    rot = euler_to_matrix(ypr)
    nose = np.array(BODY_HEAD_POINTS["nose"])
    body, conf = np.zeros((NUM_BODY, 2)), np.zeros(NUM_BODY)
    for name, p in BODY_HEAD_POINTS.items():
        body[J[name]] = nose_px + scale * (rot @ (np.array(p) - nose))[:2]
        conf[J[name]] = 1.0
    return body, conf


def test_body_fallback_recovers_moderate_angles_and_monotonic_yaw():
    rng = np.random.default_rng(1)
    cases = rng.uniform([-50, -25, -25], [50, 25, 25], (30, 3))
    body, conf = map(np.stack, zip(*[body_from_head(c) for c in cases]))
    ypr, centre, radius, ok = pose_from_body_keypoints(body, conf)
    assert ok.all()
    assert np.abs(ypr - cases).max() < 1.0
    noisy = pose_from_body_keypoints(body + rng.normal(0, 0.5, body.shape), conf)[0]
    assert np.abs(noisy - cases).max() < 5.0
    np.testing.assert_allclose(radius, 4.0 * HEAD_RADIUS_CM, rtol=0.1)
    yaws = np.linspace(-60, 60, 25)
    body, conf = map(np.stack, zip(*[body_from_head((y, 0, 0)) for y in yaws]))
    got = pose_from_body_keypoints(body, conf)[0][:, 0]
    assert np.all(np.diff(got) > 0)
    # Eyes alone (ears hidden) still give the pose.
    conf[:, [J["r_ear"], J["l_ear"]]] = 0
    got_eyes, _, _, ok = pose_from_body_keypoints(body, conf)
    assert ok.all() and np.abs(got_eyes[:, 0] - yaws).max() < 3.0


def test_estimate_head_pose_mixes_sources_and_holds_gaps():
    track = PoseTrack.empty(5, SIZE, 25.0)
    track.face_2d = np.zeros((5, 468, 2), np.float32)
    track.face_conf = np.zeros(5, np.float32)
    for t in (0, 1):
        track.face_2d[t] = project_face((10.0 * t, 0.0, 0.0))
        track.face_conf[t] = 1.0
    body, conf = body_from_head((25.0, 0.0, 0.0))
    track.body_2d[3], track.body_conf[3] = body, conf
    out = estimate_head_pose(track, smooth=False)
    rep = out.report["head_pose"]
    assert rep["face_frames"] == 2 and rep["body_frames"] == 1 and rep["held_frames"] == [2, 4]
    np.testing.assert_allclose(out.head_rotation[1], (10, 0, 0), atol=0.5)
    np.testing.assert_allclose(out.head_rotation[4], out.head_rotation[3])  # held
    assert out.head_conf[2] == 0 and out.head_conf[3] == pytest.approx(0.5)
    assert out.validate() is out
    smoothed = estimate_head_pose(track)
    assert np.isfinite(smoothed.head_rotation).all()


def test_estimate_head_pose_without_evidence_reports_it():
    out = estimate_head_pose(PoseTrack.empty(3, SIZE, 25.0))
    assert "no head evidence" in out.report["head_pose"]["warning"]
    assert (out.head_radius == 0).all() and (out.head_conf == 0).all()
