"""Builds assets/driver_head_turn.mp4: the real astronaut photograph with her head turning.

The NASA portrait of Eileen Collins (public domain, skimage.data.astronaut) is meshed with
MediaPipe Face Mesh (468 landmarks with relative depth, z scaled by the image width as MediaPipe
documents). The face points are rotated in 3D about a vertical axis through the head (the line
through the two face-side landmarks next to the ears) by ``yaw_degrees(t)`` and a small
``pitch_degrees(t)`` and projected orthographically; the photo is then warped so each landmark
lands on its new place, with a fixed ring of anchors around the head so hair, neck and background
blend back into the still photo (see ``warp_smooth``). The 288x384 window is then cropped around her.

Ground truth, with PoseTrack's conventions: yaw > 0 turns the face towards the image's right,
pitch > 0 looks up. Angles are relative to her pose in the photo (about frontal).
Run: ``.venv/bin/python scripts/make_head_turn.py``.
"""

from __future__ import annotations

import pathlib
import sys

import cv2
import numpy as np
from scipy.interpolate import LinearNDInterpolator
from scipy.spatial import Delaunay
from skimage import data

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from dreamactor_core.guidance.head_pose import euler_to_matrix  # noqa: E402
from make_assets import write_mp4  # noqa: E402

OUT = ROOT / "assets" / "driver_head_turn.mp4"
FPS = 25
FRAMES = 40
SIZE = (384, 288)  # height, width
MAX_YAW = 25.0
MAX_PITCH = 6.0
EAR_SIDES = (234, 454)  # face-side landmarks next to the ears: the turning axis passes through them


def yaw_degrees(t: np.ndarray) -> np.ndarray:
    """Head yaw of frame t in degrees: a smooth (cosine-eased) sweep -25 -> +25 over the clip."""
    t = np.asarray(t, np.float64)
    return -MAX_YAW + 2 * MAX_YAW * (1 - np.cos(np.pi * t / (FRAMES - 1))) / 2


def pitch_degrees(t: np.ndarray) -> np.ndarray:
    """Head pitch of frame t in degrees: a small nod, up to +6 (looking up) mid-clip."""
    return MAX_PITCH * np.sin(np.pi * np.asarray(t, np.float64) / (FRAMES - 1))


def face_landmarks_3d(photo: np.ndarray) -> np.ndarray:
    """[468, 3] pixels x, y and depth z (pixels, towards the back of the head is positive)."""
    import mediapipe as mp

    with mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1,
                                         refine_landmarks=False) as mesh:
        result = mesh.process(photo)
    if not result.multi_face_landmarks:
        raise RuntimeError("Face Mesh found no face in the astronaut photo")
    h, w = photo.shape[:2]
    pts = np.array([(p.x, p.y, p.z) for p in result.multi_face_landmarks[0].landmark], np.float64)
    return pts * (w, h, w)


def anchor_ring(face: np.ndarray, image_size: tuple[int, int]) -> np.ndarray:
    """Fixed points [N, 2]: an ellipse around the head and neck plus the image border."""
    centre = (face[:, :2].min(0) + face[:, :2].max(0)) / 2
    half = (face[:, :2].max(0) - face[:, :2].min(0)) / 2
    angle = np.linspace(0, 2 * np.pi, 28, endpoint=False)
    ring = centre + np.stack([np.cos(angle), np.sin(angle)], 1) * half * (1.45, 1.35)
    h, w = image_size
    border = np.linspace(0, 1, 9)
    edge = np.concatenate([np.stack([border * (w - 1), np.zeros(9)], 1),
                           np.stack([border * (w - 1), np.full(9, h - 1.0)], 1),
                           np.stack([np.zeros(7), border[1:-1] * (h - 1)], 1),
                           np.stack([np.full(7, w - 1.0), border[1:-1] * (h - 1)], 1)])
    return np.concatenate([ring, edge])


def turned_points(face: np.ndarray, yaw: float, pitch: float) -> np.ndarray:
    """Face points [468, 3] rotated about the head axis, same frame (x right, y down, z away)."""
    pivot = face[list(EAR_SIDES)].mean(axis=0)
    rot = euler_to_matrix(np.array([yaw, pitch, 0.0]))
    return (face - pivot) @ rot.T + pivot


def warp_smooth(photo: np.ndarray, src: np.ndarray, dst: np.ndarray, sigma: float = 3.0) -> np.ndarray:
    """Warps ``photo`` so that points src [N, 2] land on dst [N, 2].

    The backward map (where each output pixel samples the photo) is interpolated piecewise
    linearly over the Delaunay triangles of the destination points, then Gaussian-blurred:
    a plain piecewise-affine warp bends straight edges into visible zigzags where triangles
    stretch, and folds where the far cheek turns away; the blurred map does neither.
    """
    h, w = photo.shape[:2]
    back = LinearNDInterpolator(Delaunay(dst), src - dst, fill_value=0.0)
    gy, gx = np.mgrid[0:h, 0:w].astype(np.float32)
    offset = back(np.stack([gx.ravel(), gy.ravel()], 1)).reshape(h, w, 2).astype(np.float32)
    offset = cv2.GaussianBlur(offset, (0, 0), sigma)
    return cv2.remap(photo, gx + offset[..., 0], gy + offset[..., 1], cv2.INTER_CUBIC,
                     borderMode=cv2.BORDER_REFLECT)


def head_turn_frames() -> np.ndarray:
    photo = data.astronaut()
    face = face_landmarks_3d(photo)
    anchors = anchor_ring(face, photo.shape[:2])
    src = np.concatenate([face[:, :2], anchors])
    h, w = SIZE
    cx = int(round(face[list(EAR_SIDES), 0].mean())) - w // 2
    frames = []
    for t in range(FRAMES):
        moved = turned_points(face, float(yaw_degrees(t)), float(pitch_degrees(t)))
        dst = np.concatenate([moved[:, :2], anchors])
        warped = warp_smooth(photo, src, dst)
        frames.append(warped[:h, cx:cx + w])
    return np.stack(frames)


def main() -> None:
    frames = head_turn_frames()
    OUT.parent.mkdir(exist_ok=True)
    write_mp4(OUT, frames, FPS)
    print(f"wrote {OUT} ({OUT.stat().st_size // 1024} KB, {len(frames)} frames)")


if __name__ == "__main__":
    main()
