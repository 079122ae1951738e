"""Optional whole-body backend: RTMPose / DWPose (COCO-WholeBody, 133 keypoints) through onnxruntime.

The user supplies the ONNX file (e.g. DWPose's ``dw-ll_ucoco_384.onnx`` or an RTMPose-x/l
whole-body export); by default it is looked up in ``models/dreamactor/pose/`` under ComfyUI.
Per frame: a person box (MediaPipe Pose, or the whole frame), an affine crop to the model's
input size (read from the ONNX input shape, e.g. 1x3x384x288), RTMPose's mean/std
normalisation, and SimCC decoding (argmax of the x and y logits; the split ratio is the logit
width over the input width).

Limitations, by design of a 2D model:
  * ``face_2d`` holds the 68-point face, but head pose (head_pose.estimate_head_pose) only
    uses 468-point MediaPipe meshes, so it falls back to the body's nose/eyes/ears here.
  * ``body_3d`` / ``hands_3d`` are the 2D keypoints lifted to z = 0, centred on the pelvis
    and scaled to metres by one nominal scale per track (a 0.5 m neck-to-pelvis torso, else
    0.36 m shoulders): bone *ratios* for retargeting are right for limbs parallel to the
    image, but foreshortened limbs look short.
"""

from __future__ import annotations

import os
from typing import Callable, Iterable

import cv2
import numpy as np

from .image_io import iter_video_frames
from .mediapipe_backend import NoPersonError
from .pose_track import PoseTrack
from .topology import J
from .onnx_runtime import inference_session

DEFAULT_MODEL_FOLDER = os.path.join("models", "dreamactor", "pose")  # relative to ComfyUI's root
MEAN = np.array([123.675, 116.28, 103.53], np.float32)  # RTMPose, RGB
STD = np.array([58.395, 57.12, 57.375], np.float32)
BOX_PADDING = 1.25  # RTMPose's top-down crop margin
NUM_WHOLEBODY = 133
FACE_68 = slice(23, 91)
LEFT_HAND, RIGHT_HAND = slice(91, 112), slice(112, 133)
TORSO_METRES, SHOULDERS_METRES = 0.5, 0.36

# Our body joint -> COCO-WholeBody index(es); two indices mean "midpoint of".
_WHOLEBODY = {
    "nose": (0,), "neck": (5, 6),
    "r_shoulder": (6,), "r_elbow": (8,), "r_wrist": (10,),
    "l_shoulder": (5,), "l_elbow": (7,), "l_wrist": (9,),
    "r_hip": (12,), "r_knee": (14,), "r_ankle": (16,),
    "l_hip": (11,), "l_knee": (13,), "l_ankle": (15,),
    "r_eye": (2,), "l_eye": (1,), "r_ear": (4,), "l_ear": (3,),
    "pelvis": (11, 12), "r_foot": (20,), "l_foot": (17,),  # big toes
}
_FIRST = np.array([_WHOLEBODY[n][0] for n in sorted(_WHOLEBODY, key=J.__getitem__)])
_SECOND = np.array([_WHOLEBODY[n][-1] for n in sorted(_WHOLEBODY, key=J.__getitem__)])


class PoseModelNotFoundError(FileNotFoundError, ValueError):
    """The pose model file is not where it was expected."""


def resolve_model_path(model_path: str | os.PathLike, models_dir: str | os.PathLike | None = None) -> str:
    """An existing file as given, else ``models_dir/model_path``; raises naming the folder and file."""
    path = os.fspath(model_path)
    if os.path.isfile(path):
        return path
    folder = os.fspath(models_dir) if models_dir is not None else os.path.dirname(path) or DEFAULT_MODEL_FOLDER
    candidate = os.path.join(folder, os.path.basename(path))
    if os.path.isfile(candidate):
        return candidate
    raise PoseModelNotFoundError(
        f"pose model '{os.path.basename(path)}' not found: expected the file {candidate}. Put an RTMPose / "
        f"DWPose whole-body ONNX model (e.g. dw-ll_ucoco_384.onnx) in the folder {folder} "
        f"(ComfyUI: {DEFAULT_MODEL_FOLDER}/), or pass its full path")


def _inference_session(path: str, providers):
    return inference_session(path, providers, backend="ONNX pose")


def decode_simcc(simcc_x: np.ndarray, simcc_y: np.ndarray, input_size: tuple[int, int]):
    """SimCC logits [K, Wx], [K, Hy] -> keypoints [K, 2] in input pixels and scores [K]
    (min of the two peaks, as mmpose). The split ratio is Wx / input width."""
    height, width = input_size
    ratio_x, ratio_y = simcc_x.shape[-1] / width, simcc_y.shape[-1] / height
    xy = np.stack([simcc_x.argmax(-1) / ratio_x, simcc_y.argmax(-1) / ratio_y], -1).astype(np.float32)
    scores = np.minimum(simcc_x.max(-1), simcc_y.max(-1)).astype(np.float32)
    return xy, scores


def crop_transform(box: np.ndarray, input_size: tuple[int, int], padding: float) -> np.ndarray:
    """Affine [2, 3] frame -> model input for box [x0, y0, x1, y1], grown by ``padding`` and to
    the input's aspect ratio around its centre (no rotation)."""
    height, width = input_size
    x0, y0, x1, y1 = np.asarray(box, np.float64)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    w, h = max(x1 - x0, 1.0) * padding, max(y1 - y0, 1.0) * padding
    if w / h > width / height:
        h = w * height / width
    else:
        w = h * width / height
    s = width / w
    return np.array([[s, 0, width / 2 - cx * s], [0, s, height / 2 - cy * s]], np.float64)


class OnnxPoseTracker:
    """Tracks one person with a top-down whole-body ONNX model (RTMPose / DWPose, SimCC heads).

    ``person_box``: "mediapipe" (MediaPipe Pose finds the person per frame; a frame where it
    fails reuses the last box, or the whole frame) or "full_frame".
    """

    def __init__(self, model_path: str | os.PathLike, models_dir: str | os.PathLike | None = None,
                 person_box: str = "mediapipe", providers: list[str] | None = None,
                 score_threshold: float = 0.3):
        if person_box not in ("mediapipe", "full_frame"):
            raise ValueError(f"person_box={person_box!r}: use 'mediapipe' or 'full_frame'")
        self.model_path = resolve_model_path(model_path, models_dir)
        self._session = _inference_session(self.model_path, providers)
        inputs = self._session.get_inputs()
        shape = inputs[0].shape
        if len(shape) != 4 or not all(isinstance(d, int) for d in shape[2:]) or shape[1] != 3:
            raise ValueError(f"{self.model_path}: input shape {shape} is not [1, 3, H, W] with a fixed "
                             "H and W; export the pose model with a static input size")
        self._input_name = inputs[0].name
        self.input_size = (int(shape[2]), int(shape[3]))  # (height, width)
        names = [o.name for o in self._session.get_outputs()]
        if len(names) != 2:
            raise ValueError(f"{self.model_path}: expected two SimCC outputs (simcc_x, simcc_y), got {names}")
        named_y = [n for n in names if n.lower().endswith("simcc_y")]
        self._outputs = names[::-1] if named_y == names[:1] else names  # (simcc_x, simcc_y); else as exported
        self.person_box = person_box
        self.score_threshold = score_threshold
        self._detector = None

    def close(self) -> None:
        if self._detector is not None:
            self._detector.close()
            self._detector = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def estimate(self, rgb: np.ndarray, box: np.ndarray, padding: float = BOX_PADDING):
        """One person in one uint8 RGB frame: keypoints [133, 2] in frame pixels, scores [133]."""
        height, width = self.input_size
        to_input = crop_transform(box, self.input_size, padding)
        crop = cv2.warpAffine(rgb, to_input, (width, height), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))
        blob = ((crop.astype(np.float32) - MEAN) / STD).transpose(2, 0, 1)[None]  # [1, 3, H, W]
        simcc_x, simcc_y = self._session.run(self._outputs, {self._input_name: blob})
        if simcc_x.shape[1] != NUM_WHOLEBODY:
            raise ValueError(f"{self.model_path}: {simcc_x.shape[1]} keypoints, expected the "
                             f"{NUM_WHOLEBODY} of COCO-WholeBody")
        xy, scores = decode_simcc(simcc_x[0], simcc_y[0], self.input_size)
        scale = to_input[0, 0]
        return (xy - to_input[:, 2]) / scale, scores

    def _box(self, rgb: np.ndarray, last: np.ndarray | None) -> tuple[np.ndarray, float]:
        h, w = rgb.shape[:2]
        full = np.array([0, 0, w, h], np.float64)
        if self.person_box == "full_frame":
            return full, 1.0
        if self._detector is None:
            import mediapipe as mp

            self._detector = mp.solutions.pose.Pose(static_image_mode=False, model_complexity=1,
                                                    min_detection_confidence=0.5)
        res = self._detector.process(rgb)
        if res.pose_landmarks is None:
            return (full, 1.0) if last is None else (last, BOX_PADDING)
        pts = np.array([(p.x * w, p.y * h) for p in res.pose_landmarks.landmark
                        if p.visibility > 0.3 and 0 <= p.x <= 1 and 0 <= p.y <= 1])
        if len(pts) < 3:
            return (full, 1.0) if last is None else (last, BOX_PADDING)
        return np.concatenate([pts.min(0), pts.max(0)]), BOX_PADDING

    def track(self, frames: Iterable[np.ndarray], fps: float = 25.0, boxes: np.ndarray | None = None,
              on_frame: Callable[[int], None] | None = None) -> PoseTrack:
        """Runs the model on every frame. ``boxes`` [T, 4] (x0, y0, x1, y1) overrides the person box."""
        rows, image_size, last = [], None, None
        for i, rgb in iter_video_frames(frames):
            image_size = rgb.shape[:2]
            box, padding = (np.asarray(boxes[i], np.float64), BOX_PADDING) if boxes is not None else self._box(rgb, last)
            last = box
            rows.append(self.estimate(rgb, box, padding))
            if on_frame is not None:
                on_frame(i)
        if not rows:
            raise ValueError("the image batch is empty: connect at least one frame")
        track = wholebody_to_track(np.stack([r[0] for r in rows]), np.stack([r[1] for r in rows]),
                                   image_size, fps, self.score_threshold)
        found = track.body_conf.max(axis=1) >= self.score_threshold
        if not found.any():
            raise NoPersonError(f"the pose model found no confident keypoint in any of the {len(rows)} "
                                "frame(s): use footage where one person is clearly visible")
        track.report["frames_without_person"] = np.flatnonzero(~found).tolist()
        return track


def wholebody_to_track(keypoints: np.ndarray, scores: np.ndarray, image_size: tuple[int, int], fps: float,
                       threshold: float = 0.3) -> PoseTrack:
    """COCO-WholeBody keypoints [T, 133, 2] + scores [T, 133] -> PoseTrack (see module notes).

    Confidences are the scores clipped to 0..1; a hand is present (confidence 1 per joint, as
    MediaPipe) when its mean score reaches ``threshold``, the face likewise.
    """
    t_len = keypoints.shape[0]
    conf = np.clip(scores, 0.0, 1.0).astype(np.float32)
    track = PoseTrack.empty(t_len, image_size, fps, source="onnx-wholebody")
    track.body_2d[:] = (keypoints[:, _FIRST] + keypoints[:, _SECOND]) / 2
    track.body_conf[:] = np.minimum(conf[:, _FIRST], conf[:, _SECOND])
    for side, part in enumerate((RIGHT_HAND, LEFT_HAND)):  # PoseTrack: 0 = the person's right hand
        present = scores[:, part].mean(axis=1) >= threshold
        track.hands_2d[:, side] = keypoints[:, part]
        track.hands_conf[:, side] = np.where(present[:, None], 1.0, 0.0)
    track.face_2d = keypoints[:, FACE_68].astype(np.float32)
    track.face_conf = (scores[:, FACE_68].mean(axis=1) >= threshold).astype(np.float32)

    metres_per_px = _nominal_metres_per_pixel(track.body_2d, track.body_conf, threshold, image_size)
    pelvis = track.body_2d[:, J["pelvis"]][:, None]  # [T, 1, 2]
    track.body_3d[..., :2] = (track.body_2d - pelvis) * metres_per_px
    track.hands_3d[..., :2] = (track.hands_2d - pelvis[:, None]) * metres_per_px
    track.report["metres_per_pixel"] = metres_per_px
    track.report["body_3d"] = "2D keypoints lifted to z = 0 (no depth from this backend)"
    return track.validate()


def _nominal_metres_per_pixel(body_2d, body_conf, threshold, image_size) -> float:
    ok = body_conf >= threshold
    torso = ok[:, J["neck"]] & ok[:, J["pelvis"]]
    if torso.any():
        px = np.median(np.linalg.norm(body_2d[torso, J["neck"]] - body_2d[torso, J["pelvis"]], axis=-1))
        if px > 1:
            return float(TORSO_METRES / px)
    shoulders = ok[:, J["r_shoulder"]] & ok[:, J["l_shoulder"]]
    if shoulders.any():
        px = np.median(np.linalg.norm(body_2d[shoulders, J["r_shoulder"]] - body_2d[shoulders, J["l_shoulder"]], axis=-1))
        if px > 1:
            return float(SHOULDERS_METRES / px)
    return 1.7 / float(image_size[0])  # a standing adult filling the frame's height
