"""Optional face backend: insightface's ``buffalo_l`` models run directly through onnxruntime.

The user supplies ``det_10g.onnx`` (SCRFD face detector) and ``1k3d68.onnx`` (68 3D face
landmarks) from the buffalo_l pack, by default in ``models/dreamactor/insightface/``; the
insightface package itself is not needed (nothing is downloaded).

SCRFD layout assumed (as insightface's ``scrfd.py``): an RGB input normalised as
(x - 127.5) / 128, the frame resized into the input's top-left corner keeping its aspect ratio
(640x640 when the model's input size is dynamic). Outputs, in session order: the score maps of
every stride, then the box maps, then (if present) the 5-keypoint maps; 6 / 9 outputs mean
strides 8, 16, 32 with 2 anchors per location, 10 / 15 outputs strides 8..128 with 1 anchor.
Each map is [N, C] (or [1, N, C]) with N = (H / stride) * (W / stride) * anchors, locations
row-major and anchors innermost; boxes are distances (left, top, right, bottom) and keypoints
offsets (x, y) from the anchor's location (col * stride, row * stride), in units of the stride.

1k3d68 layout: a 192x192 crop centred on the detected box with scale 192 / (1.5 * max side),
raw RGB 0..255 (insightface logs mean 0, std 1 for this model); the output's 3309 values are
1103 points x 3, of which the last 68 are the landmarks with x, y, z in [-1, 1]: crop pixel =
(v + 1) * 96, and z * 96 in the same pixel scale. The z sign is not documented, so it is read
from the data (the nose tip is nearer the camera than the ear-level jaw points).

Head pose: a weighted 3D similarity fit (Umeyama) of eight rigid landmarks (eye corners, nose
bridge and tip, ear-level jaw ends) to head_pose's canonical face (the same MediaPipe points,
iBUG 68 -> MediaPipe index in ``IBUG_TO_MEDIAPIPE``), so yaw / pitch / roll, head centre and
radius follow head_pose's conventions. Poses are per frame and unsmoothed: use
filtering.smooth_track after merging.
"""

from __future__ import annotations

import os
from dataclasses import replace
from typing import Callable, Iterable

import cv2
import numpy as np

from .head_pose import CANONICAL_FACE, HEAD_CENTER, HEAD_RADIUS_CM, matrix_to_euler
from .image_io import iter_video_frames
from .pose_track import PoseTrack
from .onnx_runtime import inference_session

DEFAULT_MODEL_FOLDER = os.path.join("models", "dreamactor", "insightface")  # relative to ComfyUI's root
DETECTOR_FILE, LANDMARK_FILE = "det_10g.onnx", "1k3d68.onnx"
DETECTOR_MEAN, DETECTOR_STD = 127.5, 128.0
LANDMARK_MEAN, LANDMARK_STD = 0.0, 1.0
DEFAULT_DETECTOR_SIZE = (640, 640)  # (height, width) for models with a dynamic input size
LANDMARK_CROP_SCALE = 1.5
NUM_LANDMARKS = 68
# iBUG 68 index -> (MediaPipe canonical index in head_pose.CANONICAL_FACE, fit weight).
IBUG_TO_MEDIAPIPE = {27: (168, 1.0), 30: (1, 1.0), 36: (33, 1.0), 39: (133, 1.0), 42: (362, 1.0),
                     45: (263, 1.0), 0: (234, 0.5), 16: (454, 0.5)}
_FIT_IDS = np.array(list(IBUG_TO_MEDIAPIPE))
_FIT_POINTS = np.array([CANONICAL_FACE[m] for m, _ in IBUG_TO_MEDIAPIPE.values()], np.float64)  # [8, 3] cm
_FIT_WEIGHTS = np.array([w for _, w in IBUG_TO_MEDIAPIPE.values()])
NOSE_TIP, JAW_ENDS = 30, (0, 16)


class FaceModelNotFoundError(FileNotFoundError, ValueError):
    """An insightface model file is not where it was expected."""


def resolve_face_models(models_dir=None, detector: str = DETECTOR_FILE, landmarks: str = LANDMARK_FILE):
    """(detector path, landmark path): files as given, else inside ``models_dir`` (default folder)."""
    folder = os.fspath(models_dir) if models_dir is not None else DEFAULT_MODEL_FOLDER
    paths, missing = [], []
    for name in (detector, landmarks):
        name = os.fspath(name)
        path = name if os.path.isfile(name) else os.path.join(folder, os.path.basename(name))
        paths.append(path)
        if not os.path.isfile(path):
            missing.append(os.path.basename(name))
    if missing:
        raise FaceModelNotFoundError(
            f"insightface model file(s) {', '.join(missing)} not found in the folder {folder}: put "
            f"{DETECTOR_FILE} and {LANDMARK_FILE} from insightface's buffalo_l pack there (ComfyUI: "
            f"{DEFAULT_MODEL_FOLDER}/), or pass their full paths")
    return paths[0], paths[1]


def _inference_session(path: str, providers):
    return inference_session(path, providers, backend="insightface face")


def anchor_centres(height: int, width: int, stride: int, num_anchors: int) -> np.ndarray:
    """[height * width * num_anchors, 2] anchor locations (x, y) in input pixels, anchors innermost."""
    ys, xs = np.mgrid[:height, :width]
    centres = np.stack([xs, ys], -1).reshape(-1, 2).astype(np.float32) * stride
    return np.repeat(centres, num_anchors, axis=0)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Greedy non-maximum suppression; indices of the kept boxes, best first."""
    order = np.argsort(-scores)
    area = np.prod(np.maximum(boxes[:, 2:] - boxes[:, :2], 0), axis=1)
    keep = []
    while order.size:
        i, rest = order[0], order[1:]
        keep.append(i)
        lo = np.maximum(boxes[i, :2], boxes[rest, :2])
        hi = np.minimum(boxes[i, 2:], boxes[rest, 2:])
        inter = np.prod(np.maximum(hi - lo, 0), axis=1)
        iou = inter / np.maximum(area[i] + area[rest] - inter, 1e-9)
        order = rest[iou <= iou_threshold]
    return np.array(keep, np.int64)


def decode_scrfd(outputs: list[np.ndarray], input_size: tuple[int, int], score_threshold: float = 0.5,
                 nms_threshold: float = 0.4):
    """SCRFD output maps (module docstring) -> boxes [N, 4] (x0, y0, x1, y1), scores [N] and
    keypoints [N, 5, 2] (None without keypoint outputs), in input pixels, after NMS."""
    layouts = {6: (3, 2, False), 9: (3, 2, True), 10: (5, 1, False), 15: (5, 1, True)}
    if len(outputs) not in layouts:
        raise ValueError(f"SCRFD model has {len(outputs)} outputs: expected 6 or 9 (strides 8/16/32) or "
                         "10 or 15 (strides 8..128); is this an insightface SCRFD detector?")
    levels, anchors, with_kps = layouts[len(outputs)]
    maps = [o[0] if o.ndim == 3 else o for o in outputs]  # [N, C]
    height, width = input_size
    boxes, scores, kps = [], [], []
    for level in range(levels):
        stride = 8 * 2 ** level
        centres = anchor_centres(height // stride, width // stride, stride, anchors)
        score, dist = maps[level][:, 0], maps[levels + level] * stride
        if len(score) != len(centres) or dist.shape != (len(centres), 4):
            raise ValueError(f"SCRFD stride {stride}: maps {maps[level].shape} / {dist.shape} do not match "
                             f"{len(centres)} anchors of a {width}x{height} input")
        keep = score >= score_threshold
        c = centres[keep]
        boxes.append(np.concatenate([c - dist[keep, :2], c + dist[keep, 2:]], 1))
        scores.append(score[keep])
        if with_kps:
            kps.append(c[:, None] + (maps[2 * levels + level][keep] * stride).reshape(-1, 5, 2))
    boxes, scores = np.concatenate(boxes), np.concatenate(scores)
    keep = nms(boxes, scores, nms_threshold)
    return boxes[keep], scores[keep], (np.concatenate(kps)[keep] if with_kps else None)


class ScrfdDetector:
    """SCRFD face detector (insightface's det_10g.onnx layout) through onnxruntime."""

    def __init__(self, path: str, providers=None, score_threshold: float = 0.5, nms_threshold: float = 0.4):
        self.session = _inference_session(path, providers)
        inp = self.session.get_inputs()[0]
        fixed = len(inp.shape) == 4 and all(isinstance(d, int) for d in inp.shape[2:])
        self.input_name = inp.name
        self.input_size = (int(inp.shape[2]), int(inp.shape[3])) if fixed else DEFAULT_DETECTOR_SIZE
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.score_threshold, self.nms_threshold = score_threshold, nms_threshold

    def detect(self, rgb: np.ndarray):
        """Faces in one uint8 RGB frame: boxes [N, 4], scores [N], keypoints [N, 5, 2] or None, in
        frame pixels, best score first."""
        in_h, in_w = self.input_size
        h, w = rgb.shape[:2]
        if h / w > in_h / in_w:
            new_h, new_w = in_h, max(int(in_h * w / h), 1)
        else:
            new_h, new_w = max(int(in_w * h / w), 1), in_w
        scale = new_h / h
        canvas = np.zeros((in_h, in_w, 3), np.float32)
        canvas[:new_h, :new_w] = cv2.resize(rgb, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
        blob = ((canvas - DETECTOR_MEAN) / DETECTOR_STD).transpose(2, 0, 1)[None]  # [1, 3, H, W]
        outputs = self.session.run(self.output_names, {self.input_name: blob})
        boxes, scores, kps = decode_scrfd(outputs, self.input_size, self.score_threshold, self.nms_threshold)
        return boxes / scale, scores, (None if kps is None else kps / scale)


def landmark_crop_transform(box: np.ndarray, size: int) -> np.ndarray:
    """Affine [2, 3] frame -> crop: the box centre to the crop centre, scale size / (1.5 * max side)."""
    x0, y0, x1, y1 = np.asarray(box, np.float64)
    s = size / (LANDMARK_CROP_SCALE * max(x1 - x0, y1 - y0, 1.0))
    return np.array([[s, 0, size / 2 - s * (x0 + x1) / 2], [0, s, size / 2 - s * (y0 + y1) / 2]])


class Landmark3d68:
    """insightface's 1k3d68.onnx: 68 3D landmarks from a face box."""

    def __init__(self, path: str, providers=None, mean: float = LANDMARK_MEAN, std: float = LANDMARK_STD):
        self.session = _inference_session(path, providers)
        inp = self.session.get_inputs()[0]
        if len(inp.shape) != 4 or not all(isinstance(d, int) for d in inp.shape[2:]) or inp.shape[2] != inp.shape[3]:
            raise ValueError(f"{path}: input shape {inp.shape} is not [1, 3, S, S] with a fixed size S")
        self.input_name, self.size = inp.name, int(inp.shape[2])
        self.output_name = self.session.get_outputs()[0].name
        self.mean, self.std, self.path = mean, std, path

    def predict(self, rgb: np.ndarray, box: np.ndarray) -> np.ndarray:
        """[68, 3] landmarks: x, y in frame pixels, z in the same pixel scale (model's sign)."""
        to_crop = landmark_crop_transform(box, self.size)
        crop = cv2.warpAffine(rgb, to_crop, (self.size, self.size), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))
        blob = ((crop.astype(np.float32) - self.mean) / self.std).transpose(2, 0, 1)[None]
        pred = self.session.run([self.output_name], {self.input_name: blob})[0].reshape(-1)
        if pred.size < 3 * NUM_LANDMARKS or pred.size % 3:
            raise ValueError(f"{self.path}: {pred.size} output values; expected 1103 x 3 (3309) with the "
                             f"last {NUM_LANDMARKS} points the landmarks")
        half = self.size / 2
        pts = (pred.reshape(-1, 3)[-NUM_LANDMARKS:].astype(np.float64) + (1, 1, 0)) * half  # crop pixels
        s = to_crop[0, 0]
        return np.concatenate([(pts[:, :2] - to_crop[:, 2]) / s, pts[:, 2:] / s], 1)


def head_pose_from_landmarks(landmarks: np.ndarray, z_towards_camera: bool | None = None):
    """68 3D landmarks [T, 68, 3] (frame pixels) -> (yaw/pitch/roll [T, 3] degrees, head centre
    [T, 2] pixels, head radius [T] pixels, z_towards_camera).

    Weighted Umeyama similarity (scale s, rotation R, translation t) of head_pose's canonical
    points onto the landmarks, vectorised over frames; R is the head-to-camera rotation once z
    points away from the camera. ``z_towards_camera=None`` reads the sign from the data.
    """
    lm = np.asarray(landmarks, np.float64).reshape(-1, NUM_LANDMARKS, 3).copy()
    if z_towards_camera is None:
        depth = lm[:, NOSE_TIP, 2] - lm[:, list(JAW_ENDS), 2].mean(1)
        z_towards_camera = bool(np.median(depth) > 0)
    if z_towards_camera:
        lm[..., 2] *= -1
    q = lm[:, _FIT_IDS]  # [T, K, 3]
    w = _FIT_WEIGHTS / _FIT_WEIGHTS.sum()
    mp, mq = w @ _FIT_POINTS, np.einsum("k,tkc->tc", w, q)
    pc, qc = _FIT_POINTS - mp, q - mq[:, None]
    cov = np.einsum("k,tki,kj->tij", w, qc, pc)  # [T, 3, 3]
    u, sv, vt = np.linalg.svd(cov)
    d = np.sign(np.linalg.det(u @ vt))
    fix = np.ones((len(q), 3))
    fix[:, 2] = d
    rot = (u * fix[:, None]) @ vt
    scale = (sv * fix).sum(1) / (w @ (pc ** 2).sum(1))  # pixels per cm
    t = mq - scale[:, None] * (rot @ mp)
    centre = scale[:, None] * (rot @ HEAD_CENTER) + t
    return matrix_to_euler(rot), centre[:, :2], scale * HEAD_RADIUS_CM, z_towards_camera


class InsightFaceSource:
    """Face landmarks and head pose per frame from SCRFD + 1k3d68 (module docstring).

    One face per frame: the detection overlapping the previous frame's face (IoU > 0.3), else
    the largest. ``track`` returns a PoseTrack with only the face and head fields filled.
    """

    def __init__(self, models_dir=None, detector: str = DETECTOR_FILE, landmarks: str = LANDMARK_FILE,
                 providers=None, score_threshold: float = 0.5):
        det_path, lmk_path = resolve_face_models(models_dir, detector, landmarks)
        self.detector = ScrfdDetector(det_path, providers, score_threshold)
        self.landmarks = Landmark3d68(lmk_path, providers)

    def track(self, frames: Iterable[np.ndarray], fps: float = 25.0,
              on_frame: Callable[[int], None] | None = None) -> PoseTrack:
        faces, scores, image_size, last = [], [], None, None
        for i, rgb in iter_video_frames(frames):
            image_size = rgb.shape[:2]
            boxes, conf, _ = self.detector.detect(rgb)
            pick = _pick_face(boxes, last)
            if pick is None:
                faces.append(np.full((NUM_LANDMARKS, 3), np.nan))
                scores.append(0.0)
            else:
                last = boxes[pick]
                faces.append(self.landmarks.predict(rgb, last))
                scores.append(float(conf[pick]))
            if on_frame is not None:
                on_frame(i)
        if image_size is None:
            raise ValueError("the image batch is empty: connect at least one frame")
        return landmarks_to_track(np.stack(faces), np.array(scores), image_size, fps)


def _pick_face(boxes: np.ndarray, last: np.ndarray | None) -> int | None:
    if len(boxes) == 0:
        return None
    if last is not None:
        lo, hi = np.maximum(boxes[:, :2], last[:2]), np.minimum(boxes[:, 2:], last[2:])
        inter = np.prod(np.maximum(hi - lo, 0), axis=1)
        area = np.prod(boxes[:, 2:] - boxes[:, :2], axis=1)
        iou = inter / np.maximum(area + np.prod(last[2:] - last[:2]) - inter, 1e-9)
        if iou.max() > 0.3:
            return int(iou.argmax())
    return int(np.argmax(np.prod(boxes[:, 2:] - boxes[:, :2], axis=1)))


def landmarks_to_track(landmarks: np.ndarray, scores: np.ndarray, image_size, fps: float) -> PoseTrack:
    """68 3D landmarks [T, 68, 3] (NaN where no face) + detection scores [T] -> a PoseTrack with
    face_2d / face_conf and the head fields; body and hands stay missing (confidence 0)."""
    found = np.isfinite(landmarks).all(axis=(1, 2)) & (scores > 0)
    track = PoseTrack.empty(len(landmarks), image_size, fps, source="insightface")
    track.face_2d = np.where(found[:, None, None], np.nan_to_num(landmarks[..., :2]), 0).astype(np.float32)
    track.face_conf = np.where(found, scores, 0).astype(np.float32)
    ypr, centre, radius = np.zeros((len(found), 3)), np.zeros((len(found), 2)), np.zeros(len(found))
    z_towards = None
    if found.any():
        ypr[found], centre[found], radius[found], z_towards = head_pose_from_landmarks(landmarks[found])
    track.head_rotation, track.head_center = ypr.astype(np.float32), centre.astype(np.float32)
    track.head_radius, track.head_conf = radius.astype(np.float32), track.face_conf.copy()
    track.report.update(frames_without_face=np.flatnonzero(~found).tolist(), landmark_z_towards_camera=z_towards)
    if not found.any():
        track.report["warning"] = "no face detected in any frame; merge_face_into will change nothing"
    return track.validate()


def merge_face_into(track: PoseTrack, face_track: PoseTrack) -> PoseTrack:
    """``track`` with its head pose replaced by ``face_track``'s where face_track.head_conf > 0.

    face_track is rescaled to track.image_size when the two were measured at different sizes.
    face_2d is left as it is (consumers expect the body backend's landmark layout).
    """
    track.validate()
    face_track.validate()
    if face_track.num_frames != track.num_frames:
        raise ValueError(f"merge_face_into: the face track has {face_track.num_frames} frames but the body "
                         f"track {track.num_frames}: measure both on the same frames")
    if face_track.head_conf is None:
        raise ValueError("merge_face_into: the face track has no head pose (use InsightFaceSource.track)")
    if tuple(face_track.image_size) != tuple(track.image_size):
        (h0, w0), (h1, w1) = face_track.image_size, track.image_size
        face_track = face_track.transformed((w1 / w0, h1 / h0), (0.0, 0.0), track.image_size)
    use = face_track.head_conf > 0
    t_len = track.num_frames

    def merged(name, shape):
        base = getattr(track, name)
        base = np.zeros(shape, np.float32) if base is None else base.astype(np.float32).copy()
        base[use] = getattr(face_track, name)[use]
        return base
    report = dict(track.report)
    report["head_pose_insightface_frames"] = int(use.sum())
    return replace(track, head_rotation=merged("head_rotation", (t_len, 3)),
                   head_center=merged("head_center", (t_len, 2)), head_radius=merged("head_radius", (t_len,)),
                   head_conf=merged("head_conf", (t_len,)), report=report)
