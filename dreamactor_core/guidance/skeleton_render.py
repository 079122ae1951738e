"""Line skeleton maps (body + hands) for the pose encoder, OpenPose-style colours.

Each limb has its own colour (OpenPose's body palette; one hue per finger for hands, darker
towards the finger tip), limbs nearer the camera are drawn over farther ones (depth = mean z of
the limb in body_3d / hands_3d, larger z = farther, drawn first), joints get dots. Line widths
scale with the output resolution.
"""

from __future__ import annotations

import colorsys
from dataclasses import replace

import cv2
import numpy as np

from .pose_track import PoseTrack
from .topology import BODY_BONES, HAND_BONES, J, NUM_BODY

# OpenPose's 18 limb colours (RGB), in OpenPose's limb order.
OPENPOSE_COLORS = (
    (255, 0, 0), (255, 85, 0), (255, 170, 0), (255, 255, 0), (170, 255, 0), (85, 255, 0),
    (0, 255, 0), (0, 255, 85), (0, 255, 170), (0, 255, 255), (0, 170, 255), (0, 85, 255),
    (0, 0, 255), (85, 0, 255), (170, 0, 255), (255, 0, 255), (255, 0, 170), (255, 0, 85),
)
# Our bones -> OpenPose limb colour index (pelvis-hip takes OpenPose's neck-hip colour).
_OPENPOSE_LIMB = {
    ("neck", "r_shoulder"): 0, ("neck", "l_shoulder"): 1, ("r_shoulder", "r_elbow"): 2,
    ("r_elbow", "r_wrist"): 3, ("l_shoulder", "l_elbow"): 4, ("l_elbow", "l_wrist"): 5,
    ("pelvis", "r_hip"): 6, ("r_hip", "r_knee"): 7, ("r_knee", "r_ankle"): 8,
    ("pelvis", "l_hip"): 9, ("l_hip", "l_knee"): 10, ("l_knee", "l_ankle"): 11,
    ("neck", "nose"): 12, ("nose", "r_eye"): 13, ("r_eye", "r_ear"): 14,
    ("nose", "l_eye"): 15, ("l_eye", "l_ear"): 16, ("pelvis", "neck"): 17,
    ("r_ankle", "r_foot"): 8, ("l_ankle", "l_foot"): 11,
}
_NAMES = {i: n for n, i in J.items()}
BODY_BONE_COLORS = tuple(OPENPOSE_COLORS[_OPENPOSE_LIMB[(_NAMES[p], _NAMES[c])]] for p, c in BODY_BONES)
# Joint dots: OpenPose colours joints by index; the feet take their bone's colour and the
# pelvis (the root, no parent bone) the spine's.
_CHILD_BONE = {c: b for b, (_, c) in enumerate(BODY_BONES)}
_CHILD_BONE[J["pelvis"]] = _CHILD_BONE[J["neck"]]
BODY_JOINT_COLORS = tuple(
    OPENPOSE_COLORS[j] if j < 18 else BODY_BONE_COLORS[_CHILD_BONE[j]] for j in range(NUM_BODY)
)


def _finger_color(finger: int, k: int) -> tuple[int, int, int]:
    r, g, b = colorsys.hsv_to_rgb(finger / 5.0, 1.0, 1.0 - 0.15 * k)
    return int(r * 255), int(g * 255), int(b * 255)


HAND_BONE_COLORS = tuple(_finger_color(b // 4, b % 4) for b in range(len(HAND_BONES)))
_PELVIS_NECK = BODY_BONES.index((J["pelvis"], J["neck"]))
_SHIFT = 4  # fixed-point fraction bits for sub-pixel cv2 drawing
_ONE = 1 << _SHIFT


def line_widths(size: tuple[int, int], line_scale: float = 1.0) -> dict:
    """Body/hand line thickness and dot radii in pixels for an output size (H, W)."""
    base = max(1, round(min(size) / 128))
    body = max(1, round(2 * base * line_scale))
    hand = max(1, round(base * line_scale / 2))
    return {"body": body, "hand": hand, "body_dot": max(1, round(body * 0.6)), "hand_dot": hand}


def _segments(track: PoseTrack, size, threshold: float):
    """All limbs of all frames: endpoints [T, S, 2, 2] (fixed point), ok [T, S], depth [T, S]."""
    out_h, out_w = size
    scale = np.array([out_w / track.image_size[1], out_h / track.image_size[0]])
    parents, children = np.array(BODY_BONES).T
    hp, hc = np.array(HAND_BONES).T
    b2 = track.body_2d * scale
    h2 = track.hands_2d * scale  # [T, 2, 21, 2]
    ends = [np.stack([b2[:, parents], b2[:, children]], 2)]  # [T, Bb, 2, 2]
    ok = [(track.body_conf[:, parents] >= threshold) & (track.body_conf[:, children] >= threshold)]
    depth = [(track.body_3d[:, parents, 2] + track.body_3d[:, children, 2]) / 2]
    for side in range(2):
        ends.append(np.stack([h2[:, side, hp], h2[:, side, hc]], 2))
        conf = track.hands_conf[:, side]
        ok.append((conf[:, hp] >= threshold) & (conf[:, hc] >= threshold))
        depth.append((track.hands_3d[:, side, hp, 2] + track.hands_3d[:, side, hc, 2]) / 2)
    ends = np.nan_to_num(np.concatenate(ends, 1) * _ONE)  # missing joints may be NaN (never drawn)
    ends = np.rint(np.clip(ends, -(1 << 28), 1 << 28)).astype(np.int64)  # cv2 takes int32
    return ends, np.concatenate(ok, 1), np.concatenate(depth, 1)


def render_skeleton(track: PoseTrack, size: tuple[int, int], frames=None, threshold: float = 0.3,
                    line_scale: float = 1.0) -> np.ndarray:
    """Skeleton maps uint8 [T, H, W, 3] (RGB on black) of body and both hands at size (H, W).

    Coordinates are scaled from ``track.image_size`` to ``size``; limbs with a joint below
    ``threshold`` are skipped. ``frames`` picks a subset of frame indices (default: all).
    """
    track.validate()
    out_h, out_w = int(size[0]), int(size[1])
    if out_h <= 0 or out_w <= 0:
        raise ValueError(f"render_skeleton: size must be positive (H, W), got {size}")
    index = np.arange(track.num_frames) if frames is None else np.asarray(list(frames), np.int64)
    if index.size and (index.min() < 0 or index.max() >= track.num_frames):
        raise ValueError(f"render_skeleton: frames must lie in [0, {track.num_frames}), "
                         f"got {index.min()}..{index.max()}")
    sub = replace(track, **{name: getattr(track, name)[index] for name in (
        "body_2d", "body_3d", "body_conf", "hands_2d", "hands_3d", "hands_conf")})
    ends, ok, depth = _segments(sub, (out_h, out_w), threshold)
    order = np.argsort(-depth, axis=1, kind="stable")  # far first

    widths = line_widths((out_h, out_w), line_scale)
    n_body = len(BODY_BONES)
    colors = list(BODY_BONE_COLORS) + list(HAND_BONE_COLORS) * 2
    thick = [widths["body"]] * n_body + [widths["hand"]] * (2 * len(HAND_BONES))
    dot_r = [widths["body_dot"]] * n_body + [widths["hand_dot"]] * (2 * len(HAND_BONES))
    dot_color = [BODY_JOINT_COLORS[c] for _, c in BODY_BONES] + [(0, 0, 255)] * (2 * len(HAND_BONES))
    root_xy = ends[:, _PELVIS_NECK, 0].tolist()
    root_ok = (sub.body_conf[:, J["pelvis"]] >= threshold).tolist()
    root_color = BODY_JOINT_COLORS[J["pelvis"]]

    out = np.zeros((len(index), out_h, out_w, 3), np.uint8)
    for i in range(len(index)):
        img = out[i]
        seg, seg_ok = ends[i].tolist(), ok[i].tolist()
        if root_ok[i]:
            cv2.circle(img, tuple(root_xy[i]), widths["body_dot"] * _ONE, root_color, -1, cv2.LINE_AA, _SHIFT)
        for s in order[i].tolist():
            if not seg_ok[s]:
                continue
            (x0, y0), (x1, y1) = seg[s]
            cv2.line(img, (x0, y0), (x1, y1), colors[s], thick[s], cv2.LINE_AA, _SHIFT)
            cv2.circle(img, (x1, y1), dot_r[s] * _ONE, dot_color[s], -1, cv2.LINE_AA, _SHIFT)
    return out

