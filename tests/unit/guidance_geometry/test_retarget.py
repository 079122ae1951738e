import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from dreamactor_core.guidance.retarget import (
    bone_lengths, fit_weak_perspective, retarget_skeleton_3d, retarget_track)
from dreamactor_core.guidance.topology import BODY_BONES, J, ROOT

from .synthetic_pose import build_skeleton, make_track, standing_3d

NUM_BONES = len(BODY_BONES)


def random_directions(rng, t):
    d = rng.normal(size=(t, NUM_BONES, 3))
    return d / np.linalg.norm(d, axis=-1, keepdims=True)


def bone_vectors(joints):
    p, c = np.array(BODY_BONES).T
    return joints[:, c] - joints[:, p]


def angle_deg(a, b):
    return np.rad2deg(np.arctan2(np.linalg.norm(np.cross(a, b), axis=-1), (a * b).sum(-1)))


def test_retarget_skeleton_3d_scales_bones_and_keeps_directions():
    rng = np.random.default_rng(1)
    joints = build_skeleton(rng.uniform(0.05, 0.5, NUM_BONES), random_directions(rng, 4))
    ratio = rng.uniform(0.5, 2.0, NUM_BONES)
    out = retarget_skeleton_3d(joints, ratio)
    np.testing.assert_allclose(bone_lengths(out), bone_lengths(joints) * ratio, rtol=1e-9)
    assert angle_deg(bone_vectors(out), bone_vectors(joints)).max() < 1e-6
    np.testing.assert_allclose(out[:, ROOT], joints[:, ROOT])


def test_retarget_skeleton_3d_bridges_a_missing_parent():
    joints = standing_3d()[None]
    valid = np.ones((1, joints.shape[1]), bool)
    valid[0, J["r_elbow"]] = False
    out = retarget_skeleton_3d(joints, np.full(NUM_BONES, 2.0), valid, fallback_ratio=2.0)
    # The wrist is placed from the shoulder (nearest valid ancestor) with the fallback ratio.
    expected = out[0, J["r_shoulder"]] + 2.0 * (joints[0, J["r_wrist"]] - joints[0, J["r_shoulder"]])
    np.testing.assert_allclose(out[0, J["r_wrist"]], expected)


def test_retarget_skeleton_3d_rejects_bad_ratio():
    with pytest.raises(ValueError, match="bone_ratio"):
        retarget_skeleton_3d(standing_3d()[None], np.ones(3))


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), frames=st.integers(1, 4),
       ref_scale=st.floats(100, 600), drv_scale=st.floats(100, 600))
def test_retargeted_bones_have_reference_lengths_and_driver_directions(seed, frames, ref_scale, drv_scale):
    rng = np.random.default_rng(seed)
    ref_len = rng.uniform(0.05, 0.6, NUM_BONES)
    drv_len = rng.uniform(0.05, 0.6, NUM_BONES)
    driver_joints = build_skeleton(drv_len, random_directions(rng, frames))
    reference = make_track(build_skeleton(ref_len, random_directions(rng, 1)), ref_scale, (300, 200), rng=rng)
    driver = make_track(driver_joints, drv_scale, rng.uniform(100, 400, (frames, 2)), rng=rng)
    out = retarget_track(driver, reference)
    lengths = bone_lengths(out.body_3d.astype(np.float64))
    np.testing.assert_allclose(lengths, np.broadcast_to(ref_len, lengths.shape), rtol=0.01)
    assert angle_deg(bone_vectors(out.body_3d.astype(np.float64)), bone_vectors(driver_joints)).max() < 1.0
    # 2D is the reference's pixels-per-metre projection of the retargeted 3D.
    rel2d = out.body_2d - out.body_2d[:, ROOT:ROOT + 1]
    rel3d = out.body_3d[..., :2] - out.body_3d[:, ROOT:ROOT + 1, :2]
    np.testing.assert_allclose(rel2d, ref_scale * rel3d, atol=0.05 * ref_scale / 100)


def test_identity_when_reference_is_the_driver():
    rng = np.random.default_rng(3)
    lengths = rng.uniform(0.1, 0.5, NUM_BONES)
    joints = build_skeleton(lengths, random_directions(rng, 5))
    driver = make_track(joints, rng.uniform(200, 260, 5), rng.uniform(150, 350, (5, 2)), rng=rng)
    reference = driver.slice(0, 1)
    out = retarget_track(driver, reference)
    np.testing.assert_allclose(out.body_3d, driver.body_3d, atol=1e-5)
    np.testing.assert_allclose(out.body_2d, driver.body_2d, atol=1e-3)
    np.testing.assert_allclose(out.hands_2d, driver.hands_2d, atol=1e-3)
    assert out.report["retarget"]["global_ratio"] == pytest.approx(1.0)


def test_full_body_anchors_feet_and_follows_scaled_root_motion():
    joints = np.repeat(standing_3d()[None], 3, axis=0)
    driver = make_track(joints, 200.0, [(100, 100), (110, 100), (120, 104)])
    reference = make_track(2.0 * standing_3d()[None], 150.0, (256, 200), image_size=(600, 400))
    out = retarget_track(driver, reference)
    rep = out.report["retarget"]
    assert rep["mode"] == "full_body" and rep["anchor_joints"] == ["r_ankle", "l_ankle"]
    assert out.image_size == (600, 400)
    ankles = [J["r_ankle"], J["l_ankle"]]
    np.testing.assert_allclose(out.body_2d[0, ankles], reference.body_2d[0, ankles], atol=1e-3)
    # Root motion: driver pixels / driver px-per-m * body ratio (2) * reference px-per-m.
    step = (out.body_2d[1:, ROOT] - out.body_2d[0, ROOT])
    np.testing.assert_allclose(step, [(15.0, 0.0), (30.0, 6.0)], atol=1e-3)


def test_half_body_anchors_neck_when_ankles_unseen():
    driver = make_track(standing_3d()[None], 200.0, (200, 150))
    reference = make_track(1.1 * standing_3d()[None], 300.0, (256, 400))
    lower = [J[n] for n in ("r_knee", "l_knee", "r_ankle", "l_ankle", "r_foot", "l_foot")]
    reference.body_conf[:, lower] = 0.0
    out = retarget_track(driver, reference)
    assert out.report["retarget"]["mode"] == "half_body"
    np.testing.assert_allclose(out.body_2d[0, J["neck"]], reference.body_2d[0, J["neck"]], atol=1e-3)
    # Legs unseen in the reference keep the driver's length times the global ratio (1.1).
    shin = np.linalg.norm(out.body_3d[0, J["r_ankle"]] - out.body_3d[0, J["r_knee"]])
    driver_shin = np.linalg.norm(driver.body_3d[0, J["r_ankle"]] - driver.body_3d[0, J["r_knee"]])
    assert shin == pytest.approx(1.1 * driver_shin, rel=1e-4)
    with pytest.raises(ValueError, match="half_body"):
        retarget_track(driver, reference, mode="full_body")


def test_missing_reference_limb_uses_mirror_and_driver_gaps_stay_missing():
    driver = make_track(np.repeat(standing_3d()[None], 2, axis=0), 200.0, (200, 150))
    driver.body_conf[1, J["l_wrist"]] = 0.0
    ref_joints = standing_3d()[None].copy()
    ref_joints[0, J["l_elbow"]] += (0.0, -0.02, 0.0)  # longer left upper arm in the reference
    reference = make_track(ref_joints, 300.0, (256, 200))
    reference.body_conf[0, J["r_elbow"]] = 0.0
    out = retarget_track(driver, reference)
    assert "r_shoulder-r_elbow" in out.report["retarget"]["bones_from_mirror"]
    lengths = bone_lengths(out.body_3d.astype(np.float64))
    b_r = BODY_BONES.index((J["r_shoulder"], J["r_elbow"]))
    b_l = BODY_BONES.index((J["l_shoulder"], J["l_elbow"]))
    np.testing.assert_allclose(lengths[:, b_r], lengths[:, b_l], rtol=1e-5)
    assert out.body_conf[1, J["l_wrist"]] == 0.0


def test_bad_inputs_raise_clear_errors():
    driver = make_track(standing_3d()[None], 200.0, (200, 150))
    with pytest.raises(ValueError, match="mode"):
        retarget_track(driver, driver, mode="sideways")
    empty = make_track(standing_3d()[None], 200.0, (200, 150))
    empty.body_conf[:] = 0.0
    with pytest.raises(ValueError, match="reference"):
        retarget_track(driver, empty)


def test_weak_perspective_fit_recovers_scale_and_translation():
    joints = np.repeat(standing_3d()[None], 2, axis=0)
    track = make_track(joints, [150.0, 220.0], [(10, 20), (-5, 40)])
    scale, trans = fit_weak_perspective(track.body_3d, track.body_2d, track.body_conf)
    np.testing.assert_allclose(scale, [150, 220], rtol=1e-5)
    np.testing.assert_allclose(trans, [(10, 20), (-5, 40)], atol=1e-3)


def test_head_follows_the_neck_and_takes_the_reference_radius():
    driver = make_track(np.repeat(standing_3d()[None], 2, axis=0), [200.0, 250.0], (200, 150))
    driver.head_rotation = np.array([[10, 0, 0], [20, 5, 0]], np.float32)
    driver.head_center = driver.body_2d[:, J["neck"]] + np.float32((0, -40))
    driver.head_radius = np.array([20, 25], np.float32)
    driver.head_conf = np.ones(2, np.float32)
    reference = make_track(standing_3d()[None], 400.0, (256, 200))
    out = retarget_track(driver, reference)
    np.testing.assert_allclose(out.head_rotation, driver.head_rotation)
    # Same anatomy: offsets scale with reference px-per-m times the driver's zoom.
    np.testing.assert_allclose(out.head_center - out.body_2d[:, J["neck"]], [(0, -80), (0, -80)], atol=1e-3)
    reference.head_radius = np.array([33.0], np.float32)
    out = retarget_track(driver, reference)
    np.testing.assert_allclose(out.head_radius, [33.0, 33.0 * 1.25], rtol=1e-5)


def test_nan_coordinates_of_missing_joints_do_not_leak():
    driver = make_track(np.repeat(standing_3d()[None], 2, axis=0), 200.0, (200, 150))
    driver.body_2d[:, J["l_wrist"]] = np.nan
    driver.body_3d[:, J["l_wrist"]] = np.nan
    driver.body_conf[:, J["l_wrist"]] = 0.0
    out = retarget_track(driver, make_track(standing_3d()[None], 300.0, (256, 200)))
    seen = out.body_conf >= 0.3
    assert np.isfinite(out.body_2d[seen]).all() and np.isfinite(out.body_3d[seen]).all()
