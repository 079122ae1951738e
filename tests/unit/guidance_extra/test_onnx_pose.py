"""The ONNX whole-body backend against a tiny fixture model whose SimCC peaks are known constants."""

import sys

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper  # noqa: E402

from dreamactor_core.guidance.head_pose import estimate_head_pose  # noqa: E402
from dreamactor_core.guidance.onnx_pose import (  # noqa: E402
    DEFAULT_MODEL_FOLDER, OnnxPoseTracker, crop_transform, decode_simcc, resolve_model_path)
from dreamactor_core.guidance.topology import J  # noqa: E402
from tests.real_media import astronaut  # noqa: E402

H, W, K, SPLIT = 64, 48, 133, 2


def _peaks(seed=0):
    """Known SimCC peak positions (in input pixels) for the 133 keypoints."""
    rng = np.random.default_rng(seed)
    return np.stack([rng.integers(4, W - 4, K), rng.integers(4, H - 4, K)], 1).astype(np.float32)


def _fixture_model(path, peaks, score=0.9, output_names=("simcc_x", "simcc_y")):
    """input [1, 3, H, W] -> simcc_x [1, K, 2W], simcc_y [1, K, 2H]: constant logits peaking at
    ``peaks`` * SPLIT, plus 0 * mean(input) so the graph does consume its input."""
    logits = []
    for axis, length in ((0, W * SPLIT), (1, H * SPLIT)):
        table = np.zeros((1, K, length), np.float32)
        table[0, np.arange(K), (peaks[:, axis] * SPLIT).astype(int)] = score
        logits.append(table)
    nodes = [helper.make_node("ReduceMean", ["input"], ["mean"], keepdims=0),
             helper.make_node("Mul", ["mean", "zero"], ["nothing"])]
    inits = [helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0])]
    outputs = []
    for name, table in zip(output_names, logits):
        nodes += [helper.make_node("Constant", [], [name + "_c"], value=helper.make_tensor(
                      name + "_t", TensorProto.FLOAT, table.shape, table.ravel())),
                  helper.make_node("Add", [name + "_c", "nothing"], [name])]
        outputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, table.shape))
    graph = helper.make_graph(nodes, "simcc_fixture",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, H, W])],
                              outputs, initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def test_decode_simcc_argmax_and_split_ratio():
    x = np.zeros((2, 96)); y = np.zeros((2, 128))
    x[0, 30], y[0, 100], x[1, 5], y[1, 7] = 0.8, 0.6, 0.2, 0.9
    xy, scores = decode_simcc(x, y, (H, W))
    np.testing.assert_allclose(xy, [[15, 50], [2.5, 3.5]])
    np.testing.assert_allclose(scores, [0.6, 0.2])


def test_keypoints_land_where_the_model_puts_them(tmp_path):
    peaks = _peaks()
    model = _fixture_model(tmp_path / "wholebody.onnx", peaks)
    frame = np.full((2 * H, 2 * W, 3), 90, np.uint8)  # same aspect as the input: crop = frame / 2
    with OnnxPoseTracker(model, person_box="full_frame") as tracker:
        assert tracker.input_size == (H, W)
        keypoints, scores = tracker.estimate(frame, np.array([0, 0, 2 * W, 2 * H]), padding=1.0)
        np.testing.assert_allclose(keypoints, peaks * 2, atol=1e-4)
        np.testing.assert_allclose(scores, 0.9)
        track = tracker.track([frame, frame], fps=30)
    assert track.source == "onnx-wholebody" and track.num_frames == 2 and track.image_size == (2 * H, 2 * W)
    p = peaks * 2
    np.testing.assert_allclose(track.body_2d[0, J["r_wrist"]], p[10], atol=1e-4)
    np.testing.assert_allclose(track.body_2d[1, J["l_eye"]], p[1], atol=1e-4)
    np.testing.assert_allclose(track.body_2d[0, J["neck"]], (p[5] + p[6]) / 2, atol=1e-4)
    np.testing.assert_allclose(track.body_2d[0, J["l_foot"]], p[17], atol=1e-4)
    np.testing.assert_allclose(track.hands_2d[0, 0], p[112:133], atol=1e-4)  # right hand
    np.testing.assert_allclose(track.hands_2d[0, 1], p[91:112], atol=1e-4)
    np.testing.assert_allclose(track.face_2d[0], p[23:91], atol=1e-4)
    np.testing.assert_allclose(track.body_conf, 0.9, rtol=1e-6)
    assert (track.hands_conf == 1).all() and (track.face_conf == 1).all()
    # 2D lifted: z = 0, pelvis at the origin, one metric scale for the whole track.
    assert (track.body_3d[..., 2] == 0).all()
    np.testing.assert_allclose(track.body_3d[:, J["pelvis"]], 0, atol=1e-6)
    scale = track.report["metres_per_pixel"]
    np.testing.assert_allclose(track.body_3d[0, J["nose"], :2], (p[0] - track.body_2d[0, J["pelvis"]]) * scale, rtol=1e-5)
    # Head pose: the 68-point face is not used; the body keypoints give one.
    posed = estimate_head_pose(track)
    assert posed.report["head_pose"]["face_frames"] == 0


def test_crop_keeps_aspect_ratio_for_wide_frames(tmp_path):
    peaks = _peaks(1)
    model = _fixture_model(tmp_path / "m.onnx", peaks, output_names=("out_a", "out_b"))
    frame = np.zeros((100, 300, 3), np.uint8)
    box = np.array([100, 20, 160, 80])  # 60x60 box, grown to the 3:4 input aspect around (130, 50)
    with OnnxPoseTracker(model, person_box="full_frame") as tracker:
        keypoints, _ = tracker.estimate(frame, box)
    side_w = 60 * 1.25
    s = W / side_w
    expected = (peaks - (W / 2, H / 2)) / s + (130, 50)
    np.testing.assert_allclose(keypoints, expected, atol=1e-3)
    m = crop_transform(box, (H, W), 1.25)
    np.testing.assert_allclose(m[:, :2] @ expected.T + m[:, 2:], peaks.T, atol=1e-3)


def test_mediapipe_person_box_places_the_crop_on_the_person(tmp_path):
    peaks = np.full((K, 2), (W / 2, H / 2), np.float32)  # every keypoint at the crop centre
    model = _fixture_model(tmp_path / "centre.onnx", peaks)
    with OnnxPoseTracker(model) as tracker:
        track = tracker.track([astronaut()])
    centre = track.body_2d[0, J["nose"]]
    # The crop centre is the middle of the astronaut's visible body (face, shoulders, torso).
    assert 150 < centre[0] < 350 and 150 < centre[1] < 450


def test_missing_model_names_folder_and_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="dw-ll_ucoco_384.onnx") as err:
        resolve_model_path("dw-ll_ucoco_384.onnx", models_dir=tmp_path)
    assert str(tmp_path) in str(err.value) and isinstance(err.value, ValueError)
    with pytest.raises(ValueError, match=DEFAULT_MODEL_FOLDER.replace("/", ".")):
        OnnxPoseTracker("rtmw-x.onnx")
    model = _fixture_model(tmp_path / "ok.onnx", _peaks())
    assert resolve_model_path("ok.onnx", models_dir=tmp_path) == str(model)
    with pytest.raises(ValueError, match="person_box"):
        OnnxPoseTracker(model, person_box="yolo")


def test_missing_onnxruntime_says_how_to_install(tmp_path, monkeypatch):
    model = _fixture_model(tmp_path / "ok.onnx", _peaks())
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(ImportError, match="pip install onnxruntime"):
        OnnxPoseTracker(model, person_box="full_frame")
