"""Default pose backend: MediaPipe 0.10.21 Holistic (legacy solutions, weights inside the wheel).

Holistic gives, per frame, 33 body landmarks (image + metric world coordinates), both hands and
468 face landmarks; its face and hand models run on crops placed from the body pose, which is
what lets small faces in full-body shots be found at all. Where Holistic still misses a visible
face, a second pass runs Face Mesh on an upscaled head crop placed from the body keypoints.

Frames are processed one at a time in tracking mode, so memory stays flat in video length.
"""

from __future__ import annotations

import contextlib
import logging
import os
from typing import Callable, Iterable

import cv2
import numpy as np

from .image_io import iter_video_frames
from .pose_track import PoseTrack
from .topology import J

log = logging.getLogger(__name__)

# Our body joint -> MediaPipe pose landmark(s); two indices mean "midpoint of".
_MP_BODY = {
    "nose": (0,), "neck": (11, 12),
    "r_shoulder": (12,), "r_elbow": (14,), "r_wrist": (16,),
    "l_shoulder": (11,), "l_elbow": (13,), "l_wrist": (15,),
    "r_hip": (24,), "r_knee": (26,), "r_ankle": (28,),
    "l_hip": (23,), "l_knee": (25,), "l_ankle": (27,),
    "r_eye": (5,), "l_eye": (2,), "r_ear": (8,), "l_ear": (7,),
    "pelvis": (23, 24), "r_foot": (32,), "l_foot": (31,),
}
_FIRST = np.array([_MP_BODY[n][0] for n in sorted(_MP_BODY, key=J.__getitem__)])
_SECOND = np.array([_MP_BODY[n][-1] for n in sorted(_MP_BODY, key=J.__getitem__)])

MIN_SIDE = 256  # smaller frames are upscaled first: MediaPipe's detectors miss tiny people
HEAD_CROP_SIZE = 256
NUM_FACE = 468


class NoPersonError(ValueError):
    """No person was found in any frame of the input."""


@contextlib.contextmanager
def _quiet_native_logs():
    # TFLite/absl print several lines per graph start straight to fd 2; keep the console readable.
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


class MediaPipeTracker:
    """Tracks one person through a video with MediaPipe Holistic.

    The wheel ships only the complexity-1 ("full") pose model; 0 ("lite") and 2 ("heavy") are
    accepted only when their .tflite file has been placed in MediaPipe's own folder, because
    MediaPipe would otherwise try to download it.
    """

    def __init__(self, model_complexity: int = 1, static_image_mode: bool = False,
                 min_detection_confidence: float = 0.5, face_refinement: bool = True):
        import mediapipe as mp  # heavy import, only when a tracker is built

        _check_pose_model_present(mp, model_complexity)
        with _quiet_native_logs():
            self._holistic = mp.solutions.holistic.Holistic(
                static_image_mode=static_image_mode, model_complexity=model_complexity,
                smooth_landmarks=not static_image_mode, refine_face_landmarks=False,
                min_detection_confidence=min_detection_confidence, min_tracking_confidence=0.5)
        self._mp = mp
        self._face_refinement = face_refinement
        self._face_mesh = None  # built on first use: most videos never need the second pass
        self.static_image_mode = static_image_mode

    def close(self) -> None:
        self._holistic.close()
        if self._face_mesh is not None:
            self._face_mesh.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def track(self, frames: Iterable[np.ndarray], fps: float = 25.0,
              num_frames: int | None = None,
              on_frame: Callable[[int], None] | None = None) -> PoseTrack:
        """Runs the tracker over ``frames`` (any iterable of [H, W, C] images, uint8 or 0..1 float).

        ``on_frame(i)`` is called after each frame; it may raise to cancel. Raises
        :class:`NoPersonError` when no frame shows a person.
        """
        rows = []
        image_size = None
        for i, rgb in iter_video_frames(frames):
            image_size = rgb.shape[:2]
            if i == 0:  # the graphs initialise on their first frame, printing native log lines
                with _quiet_native_logs():
                    rows.append(self._process_frame(rgb))
            else:
                rows.append(self._process_frame(rgb))
            if on_frame is not None:
                on_frame(i)
        if not rows:
            raise ValueError("the image batch is empty: connect at least one frame")
        track = _stack_rows(rows, image_size, fps)
        found = track.body_conf.max(axis=1) > 0
        if not found.any():
            raise NoPersonError(
                f"no person was found in any of the {len(rows)} frame(s): use footage where one "
                "person is visible (a body or a face), or crop the frames around the person")
        track.report["frames_without_person"] = np.flatnonzero(~found).tolist()
        track.report["frames_with_face"] = int((track.face_conf > 0).sum())
        return track

    def _process_frame(self, rgb: np.ndarray) -> dict:
        h, w = rgb.shape[:2]
        scale = max(1.0, MIN_SIDE / min(h, w))
        work = rgb if scale == 1.0 else cv2.resize(
            rgb, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_CUBIC)
        res = self._holistic.process(work)
        row = {"size": (h, w)}
        if res.pose_landmarks is None:
            return row
        pose = _landmarks(res.pose_landmarks, with_visibility=True)  # [33, 4] normalised x, y, z, vis
        world = _landmarks(res.pose_world_landmarks, with_visibility=False)  # [33, 3] metres
        xy = pose[:, :2] * (w, h)
        row["body_2d"] = (xy[_FIRST] + xy[_SECOND]) / 2
        row["body_3d"] = (world[_FIRST] + world[_SECOND]) / 2
        row["body_conf"] = np.minimum(pose[_FIRST, 3], pose[_SECOND, 3])
        metres_per_px = _metres_per_pixel(row["body_2d"], row["body_3d"], row["body_conf"])
        for side, mp_hand in enumerate((res.right_hand_landmarks, res.left_hand_landmarks)):
            if mp_hand is None:
                continue
            hand = _landmarks(mp_hand, with_visibility=False)  # normalised; z relative to the wrist
            hand_px = hand[:, :2] * (w, h)
            wrist = J["r_wrist"] if side == 0 else J["l_wrist"]
            offset_3d = np.concatenate([hand_px - hand_px[:1], hand[:, 2:3] * w], axis=1) * metres_per_px
            row.setdefault("hands", {})[side] = (hand_px, row["body_3d"][wrist] + offset_3d)
        if res.face_landmarks is not None:
            row["face_2d"] = _landmarks(res.face_landmarks, with_visibility=False)[:, :2] * (w, h)
        elif self._face_refinement:
            face = self._face_from_head_crop(rgb, row["body_2d"], row["body_conf"])
            if face is not None:
                row["face_2d"] = face
                row["face_from_head_crop"] = True
        return row

    def _face_from_head_crop(self, rgb: np.ndarray, body_2d: np.ndarray, conf: np.ndarray):
        """Face Mesh on an upscaled square crop around the head, placed from the body keypoints."""
        head = [J[n] for n in ("nose", "r_eye", "l_eye", "r_ear", "l_ear")]
        ok = conf[head] > 0.3
        if ok.sum() < 2:
            return None
        pts = body_2d[head][ok]
        centre = pts.mean(axis=0)
        shoulders = np.linalg.norm(body_2d[J["r_shoulder"]] - body_2d[J["l_shoulder"]])
        spread = np.ptp(pts, axis=0).max()
        side = max(2.2 * spread, 0.9 * shoulders, 24.0)
        x0, y0 = centre - side / 2
        # Crop -> HEAD_CROP_SIZE square by an affine map, padding outside the frame with edge pixels.
        s = HEAD_CROP_SIZE / side
        to_crop = np.array([[s, 0, -x0 * s], [0, s, -y0 * s]], np.float32)
        crop = cv2.warpAffine(rgb, to_crop, (HEAD_CROP_SIZE, HEAD_CROP_SIZE),
                              flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)
        if self._face_mesh is None:
            with _quiet_native_logs():
                self._face_mesh = self._mp.solutions.face_mesh.FaceMesh(
                    static_image_mode=True, max_num_faces=1, refine_landmarks=False,
                    min_detection_confidence=0.3)
        res = self._face_mesh.process(crop)
        if not res.multi_face_landmarks:
            return None
        face = _landmarks(res.multi_face_landmarks[0], with_visibility=False)[:, :2] * HEAD_CROP_SIZE
        return face / s + (x0, y0)


_POSE_MODEL_FILES = {0: "pose_landmark_lite.tflite", 1: "pose_landmark_full.tflite", 2: "pose_landmark_heavy.tflite"}


def _check_pose_model_present(mp, model_complexity: int) -> None:
    if model_complexity not in _POSE_MODEL_FILES:
        raise ValueError(f"model_complexity={model_complexity}: use 1 (or 0/2 with their model file installed)")
    folder = os.path.join(os.path.dirname(mp.__file__), "modules", "pose_landmark")
    name = _POSE_MODEL_FILES[model_complexity]
    if not os.path.isfile(os.path.join(folder, name)):
        raise ValueError(
            f"model_complexity={model_complexity} needs {name} in {folder}, which this MediaPipe wheel "
            "does not ship and which is never downloaded at run time: use model_complexity=1, or copy "
            "the file there yourself")


def _landmarks(proto, with_visibility: bool) -> np.ndarray:
    if with_visibility:
        return np.array([(p.x, p.y, p.z, p.visibility) for p in proto.landmark], np.float32)
    return np.array([(p.x, p.y, p.z) for p in proto.landmark], np.float32)


def _metres_per_pixel(body_2d: np.ndarray, body_3d: np.ndarray, conf: np.ndarray) -> float:
    """Scale of the weak-perspective camera between the world skeleton and the image."""
    ok = conf > 0.5
    if ok.sum() < 3:
        ok = np.ones_like(ok)
    d2 = body_2d[ok] - body_2d[ok].mean(axis=0)
    d3 = body_3d[ok, :2] - body_3d[ok, :2].mean(axis=0)
    px = np.sqrt((d2 ** 2).sum())
    return float(np.sqrt((d3 ** 2).sum()) / px) if px > 1e-6 else 0.0


def _stack_rows(rows: list[dict], image_size, fps: float) -> PoseTrack:
    t = len(rows)
    track = PoseTrack.empty(t, image_size, fps, source="mediapipe-holistic")
    track.face_2d = np.zeros((t, NUM_FACE, 2), np.float32)
    track.face_conf = np.zeros(t, np.float32)
    head_crop_faces = 0
    for i, row in enumerate(rows):
        if "body_2d" not in row:
            continue
        track.body_2d[i], track.body_3d[i], track.body_conf[i] = row["body_2d"], row["body_3d"], row["body_conf"]
        for side, (px, xyz) in row.get("hands", {}).items():
            track.hands_2d[i, side], track.hands_3d[i, side] = px, xyz
            track.hands_conf[i, side] = 1.0
        if "face_2d" in row:
            track.face_2d[i] = row["face_2d"]
            track.face_conf[i] = 1.0
            head_crop_faces += bool(row.get("face_from_head_crop"))
    track.report["faces_from_head_crop"] = head_crop_faces
    return track.validate()
