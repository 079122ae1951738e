"""The SMPL-X backend against a tiny SMPL-X-like model file whose joints are known vertices."""

import json

import numpy as np
import pytest

from dreamactor_core.guidance.head_pose import pose_from_body_keypoints
from dreamactor_core.guidance.smplx_backend import (
    DEFAULT_MODEL_FOLDER, SMPLX_PARENTS, TIP_RATIO, SmplxPoseSource, axis_angle_to_matrix, load_params)
from dreamactor_core.guidance.topology import J

V, BETAS = 60, 10
FINGER_Z = (0.03, 0.01, -0.03, -0.01, 0.05)  # MANO order: index, middle, pinky, ring, thumb


def _rest_joints():
    """55 rest joints in SMPL-X's frame (metres; y up, z towards the viewer, x = the person's left)."""
    body = [(0, 0, 0), (0.06, -0.09, 0), (-0.06, -0.09, 0), (0, 0.11, 0), (0.1, -0.47, 0), (-0.1, -0.47, 0),
            (0, 0.25, 0), (0.09, -0.87, -0.04), (-0.09, -0.87, -0.04), (0, 0.31, 0), (0.11, -0.93, 0.08),
            (-0.11, -0.93, 0.08), (0, 0.52, 0), (0.07, 0.42, 0), (-0.07, 0.42, 0), (0, 0.6, 0.02),
            (0.17, 0.45, 0), (-0.17, 0.45, 0), (0.42, 0.45, 0), (-0.42, 0.45, 0), (0.67, 0.45, 0),
            (-0.67, 0.45, 0), (0, 0.6, 0.05), (0.03, 0.67, 0.09), (-0.03, 0.67, 0.09)]
    joints = np.zeros((55, 3))
    joints[:25] = body
    for side, sign in ((25, 1.0), (40, -1.0)):
        for f, z in enumerate(FINGER_Z):
            for k in range(3):
                joints[side + 3 * f + k] = (sign * (0.67 + 0.08 + 0.03 * k), 0.45, z)
    return joints


REST = _rest_joints()


@pytest.fixture
def model_file(tmp_path):
    return _write_model(tmp_path / "SMPLX_NEUTRAL.npz")


def _write_model(path, **extra):
    """V vertices, the first 55 at the rest joints; J_regressor picks them; small random shapedirs."""
    rng = np.random.default_rng(0)
    v_template = np.concatenate([REST, rng.normal(0, 0.1, (V - 55, 3))])
    regressor = np.zeros((55, V))
    regressor[np.arange(55), np.arange(55)] = 1.0
    kintree = np.stack([np.array(SMPLX_PARENTS, np.int64) % 2 ** 32, np.arange(55)])
    np.savez(path, v_template=v_template, shapedirs=rng.normal(0, 0.01, (V, 3, BETAS)), J_regressor=regressor,
             kintree_table=kintree, weights=np.full((V, 55), 1 / 55), f=np.array([[0, 1, 2]]),
             posedirs=np.zeros((V, 3, 486)), **extra)
    return path


def _params(t_len=1, **overrides):
    p = {"global_orient": np.zeros((t_len, 3)), "body_pose": np.zeros((t_len, 21, 3)),
         "betas": np.zeros((t_len, BETAS)), "transl": np.zeros((t_len, 3))}
    p.update(overrides)
    return p


def test_zero_pose_gives_the_regressed_rest_joints(model_file):
    source = SmplxPoseSource(model_file)
    betas = np.random.default_rng(1).normal(0, 1, (1, BETAS))
    joints, rotations = source.joints(_params(betas=betas, transl=np.array([[0.1, 0.2, 0.3]])))
    data = np.load(model_file)
    shaped = data["v_template"] + np.einsum("vcb,b->vc", data["shapedirs"], betas[0])
    np.testing.assert_allclose(joints[0], data["J_regressor"] @ shaped + [0.1, 0.2, 0.3], atol=1e-12)
    np.testing.assert_allclose(rotations, np.broadcast_to(np.eye(3), rotations.shape), atol=1e-12)


def test_elbow_rotation_swings_the_forearm_exactly(model_file):
    source = SmplxPoseSource(model_file)
    body_pose = np.zeros((1, 21, 3))
    body_pose[0, 18 - 1] = (0, np.pi / 2, 0)  # left elbow (joint 18) 90 degrees about +y
    joints, _ = source.joints(_params(body_pose=body_pose))
    forearm = REST[20] - REST[18]
    np.testing.assert_allclose(joints[0, 20], REST[18] + axis_angle_to_matrix([0, np.pi / 2, 0]) @ forearm,
                               atol=1e-12)
    np.testing.assert_allclose(joints[0, 20], REST[18] + [0, 0, -0.25], atol=1e-12)  # forearm now points back
    np.testing.assert_allclose(joints[0, :18], REST[:18], atol=1e-12)
    # The same pose given as rotation matrices.
    mats, _ = source.joints(_params(body_pose=axis_angle_to_matrix(body_pose)))
    np.testing.assert_allclose(mats, joints, atol=1e-12)


@pytest.mark.parametrize("axis, ypr", [((0, 1, 0), (30, 0, 0)), ((1, 0, 0), (0, -20, 0)), ((0, 0, 1), (0, 0, -25))])
def test_head_rotation_follows_the_project_convention(model_file, axis, ypr):
    """SMPL-X turning about up (+y) by 30 degrees turns the face to the image's right (yaw +30);
    about its left (+x) it looks down (pitch < 0); about forward (+z) it tilts counterclockwise."""
    angle = np.deg2rad(np.abs(sum(ypr)))
    track = SmplxPoseSource(model_file).track(_params(global_orient=np.array([axis]) * angle), (480, 640))
    np.testing.assert_allclose(track.head_rotation[0], ypr, atol=1e-4)
    assert track.report["up_axis"] == "y_up"
    # The derived nose / eyes / ears agree with head_pose's own body-keypoint estimate.
    from_keypoints, _, _, ok = pose_from_body_keypoints(track.body_2d, track.body_conf)
    assert ok[0]
    np.testing.assert_allclose(from_keypoints[0], ypr, atol=2.0)
    if axis == (0, 1, 0):  # the person's left shoulder (image right) swings away from the camera
        assert track.body_3d[0, J["l_shoulder"], 2] > 0.05 > -0.05 > track.body_3d[0, J["r_shoulder"], 2]
        nose, eyes = track.body_2d[0, J["nose"]], track.body_2d[0, [J["r_eye"], J["l_eye"]]].mean(0)
        assert nose[0] > eyes[0] + 1  # the nose points to the image's right


def test_track_layout_conventions_and_camera_frames(model_file):
    source = SmplxPoseSource(model_file)
    track = source.track(_params(2), image_size=(480, 640), fps=30)
    assert track.source == "smplx" and track.num_frames == 2 and track.image_size == (480, 640)
    b3 = track.body_3d[0]
    np.testing.assert_allclose(b3[J["pelvis"]], 0, atol=1e-7)
    np.testing.assert_allclose(b3[[J["neck"], J["r_ankle"]], 1], [-0.54, 0.78], atol=1e-6)  # y down, hip midpoint
    assert b3[J["l_shoulder"], 0] > 0 > b3[J["r_shoulder"], 0]  # facing the camera: left is image right
    assert b3[J["nose"], 2] < b3[J["l_eye"], 2] < b3[J["l_ear"], 2]  # z away from the camera
    np.testing.assert_allclose(track.head_rotation, 0, atol=1e-6)
    # Hands: 0 is the right hand; the tip continues the last bone.
    hands = track.hands_3d[0]
    assert hands[0, 0, 0] < 0 < hands[1, 0, 0]
    np.testing.assert_allclose(hands[:, 4] - hands[:, 3], TIP_RATIO * (hands[:, 3] - hands[:, 2]), atol=1e-6)
    np.testing.assert_allclose(hands[1, 1:5, 2], -FINGER_Z[4], atol=1e-6)  # thumb first (z flipped)
    np.testing.assert_allclose(hands[1, 17:21, 2], -FINGER_Z[2], atol=1e-6)  # little finger last
    # Default camera: the whole body fits inside the image, head above feet.
    assert (track.body_2d >= 0).all() and (track.body_2d[..., 0] <= 640).all() and (track.body_2d[..., 1] <= 480).all()
    assert track.body_2d[0, J["nose"], 1] < track.body_2d[0, J["r_ankle"], 1]
    assert track.head_radius[0] > 0 and track.body_conf[0, J["r_ear"]] > 0
    # The same body written in the camera frame (4DHumans style: 180 degrees about x) gives the same track.
    flipped = source.track(_params(2, global_orient=np.tile([[np.pi, 0, 0]], (2, 1))), (480, 640), 30)
    assert flipped.report["up_axis"] == "y_down"
    np.testing.assert_allclose(flipped.body_3d, track.body_3d, atol=1e-6)
    np.testing.assert_allclose(flipped.head_rotation, 0, atol=1e-5)


def test_perspective_and_weak_cameras(model_file):
    source = SmplxPoseSource(model_file)
    cam_t = np.array([[0.05, 0.1, 3.0]])
    track = source.track(_params(global_orient=np.array([[np.pi, 0, 0]]), cam_t=cam_t, focal_length=1000.0),
                         (480, 640))
    joints, _ = source.joints(_params(global_orient=np.array([[np.pi, 0, 0]])))
    wrist = joints[0, 21] + cam_t[0]
    np.testing.assert_allclose(track.body_2d[0, J["r_wrist"]], 1000 * wrist[:2] / wrist[2] + [320, 240], atol=1e-3)
    assert track.report["camera"] == "perspective"
    assert 0.09 * 1000 / 3.2 < track.head_radius[0] < 0.1 * 1000 / 2.8
    with pytest.raises(ValueError, match="behind the camera"):
        source.track(_params(focal_length=1000.0), (480, 640))
    weak = source.track(_params(global_orient=np.array([[np.pi, 0, 0]]), weak_cam=[[0.5, 0.1, 0.0]]), (480, 640))
    np.testing.assert_allclose(weak.body_2d[0, J["r_wrist"]], [320, 240] + 320 * 0.5 * (joints[0, 21, :2] + [0.1, 0]),
                               atol=1e-3)


def test_param_files_npz_json_and_folder_give_the_same_track(model_file, tmp_path):
    rng = np.random.default_rng(2)
    p = _params(3, global_orient=rng.normal(0, 0.3, (3, 3)), body_pose=rng.normal(0, 0.3, (3, 63)),
                betas=rng.normal(0, 1, (3, BETAS)), left_hand_pose=rng.normal(0, 0.3, (3, 45)),
                right_hand_pose=rng.normal(0, 0.3, (3, 15, 3)))
    np.savez(tmp_path / "all.npz", image_size=[480, 640], **p)
    (tmp_path / "all.json").write_text(json.dumps({"img_size": [640, 480], **{k: v.tolist() for k, v in p.items()}}))
    folder = tmp_path / "frames"
    folder.mkdir()
    for t in (0, 1, 2):  # frame_10 must sort after frame_2
        name = f"frame_{[1, 2, 10][t]}.json"
        (folder / name).write_text(json.dumps({"pred_smpl_params": {k: v[t].tolist() for k, v in p.items()}}))
    source = SmplxPoseSource(models_dir=model_file.parent)
    tracks = [source.track(load_params(tmp_path / "all.npz"), fps=25), source.track(tmp_path / "all.json"),
              source.track(folder, image_size=(480, 640))]
    assert all(t.num_frames == 3 for t in tracks)
    for other in tracks[1:]:
        np.testing.assert_allclose(other.body_2d, tracks[0].body_2d, atol=1e-4)
        np.testing.assert_allclose(other.hands_3d, tracks[0].hands_3d, atol=1e-6)
        np.testing.assert_allclose(other.head_rotation, tracks[0].head_rotation, atol=1e-4)
    with pytest.raises(ValueError, match="body_pose.*shape"):
        source.track({"body_pose": np.zeros((2, 20)), "global_orient": np.zeros(3)}, (480, 640))


def test_pickles_are_refused_with_a_conversion_hint(model_file, tmp_path):
    (tmp_path / "SMPLX_MALE.pkl").write_bytes(b"not read")
    with pytest.raises(ValueError, match="pickle.*convert"):
        SmplxPoseSource(tmp_path / "SMPLX_MALE.pkl")
    (tmp_path / "demo.pkl").write_bytes(b"not read")
    with pytest.raises(ValueError, match="pickle.*joblib"):
        load_params(tmp_path / "demo.pkl")
    np.savez(tmp_path / "objects.npz", global_orient=np.array([{"a": 1}], dtype=object))
    with pytest.raises(ValueError, match="pickled objects"):
        load_params(tmp_path / "objects.npz")


def test_missing_model_names_folder_and_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="SMPLX_FEMALE.npz") as err:
        SmplxPoseSource(models_dir=tmp_path, gender="female")
    message = str(err.value)
    assert str(tmp_path) in message and "SMPLX_NEUTRAL.npz" in message and isinstance(err.value, ValueError)
    with pytest.raises(ValueError, match=DEFAULT_MODEL_FOLDER.replace("/", ".")):
        SmplxPoseSource()
    with pytest.raises(ValueError, match="gender"):
        SmplxPoseSource(gender="other")


def test_4dhumans_rotation_matrices_smpl_body_pose_and_hand_pca(tmp_path):
    rng = np.random.default_rng(4)
    components = np.linalg.qr(rng.normal(size=(45, 45)))[0]
    mean = rng.normal(0, 0.1, 45)
    path = _write_model(tmp_path / "SMPLX_MALE.npz", hands_componentsl=components, hands_meanl=mean,
                        hands_componentsr=components, hands_meanr=mean)
    source = SmplxPoseSource(models_dir=tmp_path, gender="male")
    smpl_pose = rng.normal(0, 0.3, (2, 23, 3))  # SMPL's 23 body joints: the last 2 (hands) are dropped
    four_d = {"global_orient": axis_angle_to_matrix(np.tile([[[np.pi, 0, 0]]], (2, 1, 1))),
              "body_pose": axis_angle_to_matrix(smpl_pose), "betas": np.zeros((2, BETAS)),
              "pred_cam_t_full": np.array([[0, 0, 4.0], [0.1, 0, 4.0]]), "focal_length": 1500.0,
              "img_size": [640, 480]}
    track = source.track(four_d)
    assert track.image_size == (480, 640) and track.report["up_axis"] == "y_down"
    axis_angle = {"global_orient": np.tile([[np.pi, 0, 0]], (2, 1)), "body_pose": smpl_pose[:, :21],
                  "cam_t": four_d["pred_cam_t_full"], "focal_length": [1500.0, 1500.0]}
    np.testing.assert_allclose(source.track(axis_angle, (480, 640)).body_2d, track.body_2d, atol=1e-6)

    coeffs = rng.normal(0, 0.5, (1, 6))
    pca, _ = source.joints({"left_hand_pose": coeffs})
    full, _ = source.joints({"left_hand_pose": coeffs @ components[:6]})  # the mean hand is added to both
    np.testing.assert_allclose(pca, full, atol=1e-12)
    flat = SmplxPoseSource(path, flat_hand_mean=True)
    np.testing.assert_allclose(flat.joints({"left_hand_pose": coeffs @ components[:6] + mean})[0], full, atol=1e-12)
    assert not np.allclose(source.joints({"left_hand_pose": np.zeros((1, 45))})[0][0, 25:40], REST[25:40])
    with pytest.raises(ValueError, match="PCA.*hands_components"):
        SmplxPoseSource(_write_model(tmp_path / "plain.npz")).joints({"right_hand_pose": coeffs})
