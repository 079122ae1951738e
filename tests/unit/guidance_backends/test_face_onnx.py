"""The insightface ONNX backend against fixture SCRFD / 1k3d68 models with known constant outputs."""

import sys

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper  # noqa: E402

from dreamactor_core.guidance.face_onnx import (  # noqa: E402
    DEFAULT_MODEL_FOLDER, DETECTOR_FILE, LANDMARK_FILE, InsightFaceSource, ScrfdDetector, decode_scrfd,
    head_pose_from_landmarks, landmarks_to_track, merge_face_into, resolve_face_models)
from dreamactor_core.guidance.head_pose import CANONICAL_FACE, HEAD_CENTER, euler_to_matrix  # noqa: E402
from dreamactor_core.guidance.pose_track import PoseTrack  # noqa: E402

DET = 160  # fixture detector input side; a 320x240 frame is scaled by 0.5 into its top-left 160x120
FRAME_H, FRAME_W = 240, 320
FACE_BOX = np.array([100.0, 60.0, 180.0, 160.0])  # frame pixels
SMALL_BOX = np.array([240.0, 208.0, 272.0, 240.0])
FACE_KPS = np.array([[120, 90], [160, 90], [140, 110], [124, 136], [156, 136]], np.float64)
YPR = np.array([25.0, -10.0, 8.0])
PX_PER_CM, FACE_CENTRE = 4.0, np.array([140.0, 108.0, 200.0])
IBUG_CANONICAL = {27: 168, 30: 1, 36: 33, 39: 133, 42: 362, 45: 263, 0: 234, 16: 454}


def _constant_model(path, input_shape, outputs):
    """input -> each output a constant table (+ 0 * mean(input), so the graph consumes its input)."""
    nodes = [helper.make_node("ReduceMean", ["input"], ["mean"], keepdims=0),
             helper.make_node("Mul", ["mean", "zero"], ["nothing"])]
    infos = []
    for name, table in outputs:
        table = np.asarray(table, np.float32)
        nodes += [helper.make_node("Constant", [], [name + "_c"], value=helper.make_tensor(
                      name + "_t", TensorProto.FLOAT, table.shape, table.ravel())),
                  helper.make_node("Add", [name + "_c", "nothing"], [name])]
        infos.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, table.shape))
    inputs = [helper.make_tensor_value_info("input", TensorProto.FLOAT, input_shape)]
    graph = helper.make_graph(nodes, "fixture", inputs, infos,
                              initializer=[helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def _scrfd_maps(with_kps=True, batched=False, faces=True):
    """Score / box / keypoint maps for strides 8, 16, 32 (2 anchors): the face box at stride 16,
    location (row 3, col 4), anchor 0; a weaker duplicate on anchor 1 (NMS removes it); a small
    face at stride 8, location (row 14, col 16)."""
    scores, boxes, kps = [], [], []
    for stride in (8, 16, 32):
        n = (DET // stride) ** 2 * 2
        scores.append(np.full((n, 1), 0.01))
        boxes.append(np.ones((n, 4)))
        kps.append(np.zeros((n, 10)))
    if faces:
        placed = [(1, 3, 4, 0, FACE_BOX / 2, 0.9), (1, 3, 4, 1, FACE_BOX / 2 + 2, 0.7),
                  (0, 14, 16, 0, SMALL_BOX / 2, 0.8)]
        for level, row, col, anchor, box, score in placed:
            stride = 8 * 2 ** level
            i = (row * (DET // stride) + col) * 2 + anchor
            centre = np.array([col, row]) * stride
            scores[level][i] = score
            boxes[level][i] = np.concatenate([centre - box[:2], box[2:] - centre]) / stride
            kps[level][i] = ((FACE_KPS / 2 - centre) / stride).ravel()
    maps = scores + boxes + (kps if with_kps else [])
    return [m[None] if batched else m for m in maps]


def _scrfd_model(path, **kw):
    maps = _scrfd_maps(**kw)
    return _constant_model(path, [1, 3, DET, DET], [(f"out{i}", m) for i, m in enumerate(maps)])


def _face_3d(ypr=YPR):
    """68 landmarks [68, 3] in frame pixels (z away from the camera): head_pose's canonical points
    for the fitted ones, fixed arbitrary points elsewhere; rotated by ``ypr``."""
    pts = np.random.default_rng(3).uniform([-6, -8, -4], [6, 8, 2], (68, 3))
    for ibug, mp in IBUG_CANONICAL.items():
        pts[ibug] = CANONICAL_FACE[mp]
    rot = euler_to_matrix(ypr)
    return PX_PER_CM * pts @ rot.T + FACE_CENTRE, rot


def _landmark_model(path, face, z_towards_camera=True):
    """1k3d68-like: [1, 3, 192, 192] -> [1, 3309], the last 68 x 3 being ``face`` in the crop that
    the FACE_BOX detection gives (centre to 96, scale 192 / (1.5 * 100)), normalised to [-1, 1]."""
    s = 192 / (1.5 * 100)
    crop = np.concatenate([s * (face[:, :2] - [140, 110]) + 96, s * face[:, 2:]], 1)
    pred = crop / 96 - (1, 1, 0)
    if z_towards_camera:
        pred[:, 2] *= -1
    out = np.zeros((1103, 3))
    out[-68:] = pred
    return _constant_model(path, [1, 3, 192, 192], [("fc1", out.reshape(1, 3309))])


@pytest.fixture
def models_dir(tmp_path):
    _scrfd_model(tmp_path / DETECTOR_FILE)
    _landmark_model(tmp_path / LANDMARK_FILE, _face_3d()[0])
    return tmp_path


def _frame():
    return np.full((FRAME_H, FRAME_W, 3), 120, np.uint8)


@pytest.mark.parametrize("with_kps, batched", [(True, False), (False, True)])
def test_scrfd_decoding_nms_and_frame_coordinates(tmp_path, with_kps, batched):
    path = _scrfd_model(tmp_path / "det.onnx", with_kps=with_kps, batched=batched)
    detector = ScrfdDetector(str(path))
    assert detector.input_size == (DET, DET)
    boxes, scores, kps = detector.detect(_frame())
    np.testing.assert_allclose(scores, [0.9, 0.8], rtol=1e-6)  # the duplicate is suppressed
    np.testing.assert_allclose(boxes, [FACE_BOX, SMALL_BOX], atol=1e-3)
    if with_kps:
        np.testing.assert_allclose(kps[0], FACE_KPS, atol=1e-3)
    else:
        assert kps is None
    with pytest.raises(ValueError, match="7 outputs"):
        decode_scrfd(_scrfd_maps()[:7], (DET, DET))


@pytest.mark.parametrize("z_towards_camera", [True, False])
def test_landmarks_and_head_pose_from_fixture_models(tmp_path, z_towards_camera):
    face, rot = _face_3d()
    _scrfd_model(tmp_path / DETECTOR_FILE)
    _landmark_model(tmp_path / LANDMARK_FILE, face, z_towards_camera)
    track = InsightFaceSource(tmp_path).track([_frame(), _frame()], fps=30)
    assert track.source == "insightface" and track.num_frames == 2 and track.image_size == (FRAME_H, FRAME_W)
    np.testing.assert_allclose(track.face_2d, np.broadcast_to(face[:, :2], (2, 68, 2)), atol=1.0)
    np.testing.assert_allclose(track.face_conf, 0.9, rtol=1e-6)
    np.testing.assert_allclose(track.head_rotation, np.broadcast_to(YPR, (2, 3)), atol=3.0)
    np.testing.assert_allclose(track.head_center[0], (PX_PER_CM * rot @ HEAD_CENTER + FACE_CENTRE)[:2], atol=1.0)
    np.testing.assert_allclose(track.head_radius, PX_PER_CM * 9.5, rtol=0.02)
    assert track.report["landmark_z_towards_camera"] is z_towards_camera
    assert (track.body_conf == 0).all() and (track.hands_conf == 0).all()


@pytest.mark.parametrize("ypr", [(0, 0, 0), (-40, 15, -12), (60, 0, 0)])
def test_head_pose_fit_recovers_rotations_exactly(ypr):
    face, _ = _face_3d(np.array(ypr, float))
    got, _, radius, towards = head_pose_from_landmarks(face[None])
    np.testing.assert_allclose(got[0], ypr, atol=1e-6)
    np.testing.assert_allclose(radius, PX_PER_CM * 9.5, rtol=1e-9)
    assert towards is False


def test_frames_without_a_face_and_merge_into_a_body_track(tmp_path):
    _scrfd_model(tmp_path / "empty.onnx", faces=False)
    _landmark_model(tmp_path / LANDMARK_FILE, _face_3d()[0])
    empty = InsightFaceSource(tmp_path, detector="empty.onnx").track([_frame()])
    assert empty.face_conf[0] == 0 and empty.head_conf[0] == 0 and empty.report["frames_without_face"] == [0]
    assert "no face" in empty.report["warning"]

    face, _ = _face_3d()
    face_track = landmarks_to_track(np.stack([face, np.full((68, 3), np.nan)]), np.array([0.9, 0.0]),
                                    (FRAME_H, FRAME_W), 25)
    body = PoseTrack.empty(2, (2 * FRAME_H, 2 * FRAME_W), 25, source="mediapipe-holistic")
    body.head_rotation = np.tile(np.float32([1, 2, 3]), (2, 1))
    body.head_center = np.full((2, 2), 50, np.float32)
    body.head_radius = np.full(2, 10, np.float32)
    body.head_conf = np.full(2, 0.5, np.float32)
    merged = merge_face_into(body, face_track)
    np.testing.assert_allclose(merged.head_rotation[0], YPR, atol=1e-3)
    np.testing.assert_allclose(merged.head_rotation[1], [1, 2, 3])  # no face: the body's pose stays
    np.testing.assert_allclose(merged.head_center[0], 2 * face_track.head_center[0], atol=1e-3)  # rescaled
    np.testing.assert_allclose(merged.head_radius, [2 * face_track.head_radius[0], 10], rtol=1e-5)
    np.testing.assert_allclose(merged.head_conf, [0.9, 0.5], rtol=1e-6)
    assert merged.report["head_pose_insightface_frames"] == 1 and body.head_rotation[0, 0] == 1
    bare = merge_face_into(PoseTrack.empty(2, (FRAME_H, FRAME_W), 25), face_track)  # no head pose yet
    np.testing.assert_allclose(bare.head_conf, [0.9, 0.0], rtol=1e-6)
    with pytest.raises(ValueError, match="frames"):
        merge_face_into(PoseTrack.empty(3, (FRAME_H, FRAME_W), 25), face_track)


def test_missing_models_name_the_folder_and_files(tmp_path):
    with pytest.raises(FileNotFoundError, match=f"{DETECTOR_FILE}, {LANDMARK_FILE}") as err:
        InsightFaceSource(tmp_path)
    assert str(tmp_path) in str(err.value) and isinstance(err.value, ValueError)
    _scrfd_model(tmp_path / DETECTOR_FILE)
    with pytest.raises(ValueError, match=f"file\\(s\\) {LANDMARK_FILE} not found"):
        resolve_face_models(tmp_path)
    with pytest.raises(ValueError, match=DEFAULT_MODEL_FOLDER.replace("/", ".")):
        resolve_face_models()


def test_missing_onnxruntime_says_how_to_install(models_dir, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(ImportError, match="pip install onnxruntime"):
        InsightFaceSource(models_dir)
