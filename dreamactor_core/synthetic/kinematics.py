"""Forward kinematics of the puppet: joint angles + a CharacterSpec -> 3D joints, and the camera.

Coordinates are the PoseTrack's: metres, x right, y down, z away from the camera, pelvis at the
origin (the pelvis is the midpoint of the hips). A character at rest faces the camera, so the
person's right side is on the image's left (-x). Limbs are solved once for a canonical right
side and mirrored (x -> -x) for the left, which keeps every angle's meaning the same on both.
Angles are degrees; arrays are over frames T and, for limbs, sides (0 = right, 1 = left).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..guidance.topology import HAND_JOINTS, J, NUM_BODY
from .character import CharacterSpec

_MIRROR = np.diag([-1.0, 1.0, 1.0])
_DOWN = np.array([0.0, 1.0, 0.0])


def rot_x(deg: np.ndarray) -> np.ndarray:
    a = np.radians(np.asarray(deg, np.float64))
    c, s, o, z = np.cos(a), np.sin(a), np.ones_like(a), np.zeros_like(a)
    return np.stack([o, z, z, z, c, -s, z, s, c], -1).reshape(a.shape + (3, 3))


def rot_y(deg: np.ndarray) -> np.ndarray:
    a = np.radians(np.asarray(deg, np.float64))
    c, s, o, z = np.cos(a), np.sin(a), np.ones_like(a), np.zeros_like(a)
    return np.stack([c, z, s, z, o, z, -s, z, c], -1).reshape(a.shape + (3, 3))


def rot_z(deg: np.ndarray) -> np.ndarray:
    a = np.radians(np.asarray(deg, np.float64))
    c, s, o, z = np.cos(a), np.sin(a), np.ones_like(a), np.zeros_like(a)
    return np.stack([c, -s, z, s, c, z, z, z, o], -1).reshape(a.shape + (3, 3))


def head_rotation_matrix(yaw: np.ndarray, pitch: np.ndarray, roll: np.ndarray) -> np.ndarray:
    """Camera-frame head rotation in the PoseTrack's sign convention -> [..., 3, 3].

    yaw > 0 turns the face towards the image's right, pitch > 0 looks up, roll > 0 tilts the
    head clockwise in the image. The head's local frame looks along -z with up = -y.
    """
    return rot_y(-np.asarray(yaw)) @ rot_x(-np.asarray(pitch)) @ rot_z(roll)


@dataclass
class PoseAngles:
    """Joint angles for T frames (degrees unless noted). Side axis: 0 = right, 1 = left."""
    body_yaw: np.ndarray  # [T] whole body turning towards the image's right
    torso_roll: np.ndarray  # [T] upper body leaning clockwise in the image
    torso_pitch: np.ndarray  # [T] upper body bending towards the camera
    shoulder_abduction: np.ndarray  # [T, 2] 0 = arm down, 90 = sideways, 160 = overhead
    shoulder_flexion: np.ndarray  # [T, 2] raising the arm towards the camera
    arm_twist: np.ndarray  # [T, 2] about the upper arm; 90 turns the elbow bend upwards
    elbow: np.ndarray  # [T, 2] 0 = straight
    wrist: np.ndarray  # [T, 2] bending the hand towards the palm
    hip_flexion: np.ndarray  # [T, 2] leg forward (towards the camera)
    hip_abduction: np.ndarray  # [T, 2] leg outwards
    knee: np.ndarray  # [T, 2] 0 = straight, shin folds backwards
    finger_curl: np.ndarray  # [T, 2, 5] 0 = open .. 1 = fist (thumb first)
    head_yaw: np.ndarray  # [T] camera-frame head rotation (see head_rotation_matrix)
    head_pitch: np.ndarray  # [T]
    head_roll: np.ndarray  # [T]

    @property
    def num_frames(self) -> int:
        return int(self.body_yaw.shape[0])


@dataclass
class Skeleton3D:
    body: np.ndarray  # [T, NUM_BODY, 3] pelvis-centred metres
    hands: np.ndarray  # [T, 2, 21, 3]
    head_center: np.ndarray  # [T, 3]
    head_rotation: np.ndarray  # [T, 3, 3] camera-frame head rotation
    torso_rotation: np.ndarray  # [T, 3, 3]
    hand_normal: np.ndarray  # [T, 2, 3] palm normal (points out of the palm)



def _on_sphere(*v: float) -> np.ndarray:
    return np.array(v) / np.linalg.norm(v)


# Head-local face points in head radii: on the unit sphere, except the nose tip standing off it.
FACE_POINTS = {
    "nose": np.array([0.0, 0.12, -1.15]),
    "r_eye": _on_sphere(-0.36, -0.10, -0.93), "l_eye": _on_sphere(0.36, -0.10, -0.93),
    "r_ear": _on_sphere(-0.98, 0.05, 0.15), "l_ear": _on_sphere(0.98, 0.05, 0.15),
    "mouth": _on_sphere(0.0, 0.50, -0.87),
}

# Fingers in the canonical right hand frame (fingers along +y, palm facing -z, thumb at -x).
_FINGER_BASE_X = (-0.10, -0.035, 0.025, 0.085)  # index, middle, ring, little (x hand length)
_FINGER_SCALE = (0.92, 1.0, 0.95, 0.78)
_FINGER_SEGMENTS = (0.24, 0.15, 0.12)  # proximal, middle, distal (x hand length)
_FINGER_BEND = (70.0, 95.0, 65.0)  # degrees at full curl, per joint
_THUMB_SEGMENTS = (0.16, 0.17, 0.13, 0.12)  # wrist->CMC, CMC->MCP, MCP->IP, IP->TIP


def _hand_points(rot: np.ndarray, curl: np.ndarray, length: float) -> np.ndarray:
    """Canonical right hand: hand frame [T, 3, 3], curl [T, 5] -> 21 points [T, 21, 3]."""
    t = rot.shape[0]
    pts = np.zeros((t, HAND_JOINTS, 3))
    # Thumb: leaves the wrist sideways, bends across the palm and towards its face.
    direction = np.array([-0.75, 0.65, -0.15]) / np.linalg.norm([-0.75, 0.65, -0.15])
    frame = rot.copy()
    pos = np.zeros((t, 3))
    for k, seg in enumerate(_THUMB_SEGMENTS):
        if k > 0:
            bend = curl[:, 0] * (25.0, 35.0, 40.0)[k - 1]
            frame = frame @ rot_z(-bend) @ rot_x(-0.6 * bend)
        pos = pos + (frame @ direction) * seg * length
        pts[:, 1 + k] = pos
    for f in range(4):
        frame = rot
        pos = np.einsum("tij,j->ti", rot, np.array([_FINGER_BASE_X[f], 0.42, 0.0]) * length)
        pts[:, 5 + 4 * f] = pos
        for k, seg in enumerate(_FINGER_SEGMENTS):
            frame = frame @ rot_x(-curl[:, 1 + f] * _FINGER_BEND[k])
            pos = pos + (frame @ _DOWN) * seg * _FINGER_SCALE[f] * length
            pts[:, 6 + 4 * f + k] = pos
    return pts


def forward_kinematics(spec: CharacterSpec, pose: PoseAngles) -> Skeleton3D:
    """3D joints of ``spec`` in ``pose``; bone lengths are exactly the spec's in every frame."""
    t = pose.num_frames
    body = np.zeros((t, NUM_BODY, 3))
    hands = np.zeros((t, 2, HAND_JOINTS, 3))
    normals = np.zeros((t, 2, 3))
    r_body = rot_y(-pose.body_yaw)
    r_torso = r_body @ rot_z(pose.torso_roll) @ rot_x(pose.torso_pitch)

    def world(rot, v):  # rotate a [3] or [T, 3] vector by [T, 3, 3]
        return np.einsum("tij,tj->ti", rot, np.broadcast_to(v, (t, 3)))

    neck = world(r_torso, np.array([0.0, -spec.torso_length, 0.0]))
    body[:, J["neck"]] = neck
    for side, mirror in ((0, -1.0), (1, 1.0)):
        name = "rl"[side]
        flip = (lambda r: r) if side == 0 else (lambda r: _MIRROR @ r @ _MIRROR)
        # Arm.
        shoulder = neck + world(r_torso, np.array([mirror * spec.shoulder_width / 2, 0.035, 0.0]))
        r_upper = flip(rot_z(pose.shoulder_abduction[:, side]) @ rot_x(-pose.shoulder_flexion[:, side])
                       @ rot_y(pose.arm_twist[:, side]))
        r_fore = r_upper @ flip(rot_x(-pose.elbow[:, side]))
        elbow = shoulder + world(r_torso @ r_upper, _DOWN) * spec.upper_arm
        wrist = elbow + world(r_torso @ r_fore, _DOWN) * spec.forearm
        body[:, J[f"{name}_shoulder"]], body[:, J[f"{name}_elbow"]], body[:, J[f"{name}_wrist"]] = (
            shoulder, elbow, wrist)
        r_hand = r_torso @ r_fore @ flip(rot_x(-pose.wrist[:, side]))
        canonical = _hand_points(np.broadcast_to(np.eye(3), (t, 3, 3)), pose.finger_curl[:, side],
                                 spec.hand_length)
        if side == 1:
            canonical = canonical * np.array([-1.0, 1.0, 1.0])
        hands[:, side] = wrist[:, None] + np.einsum("tij,tkj->tki", r_hand, canonical)
        normals[:, side] = world(r_hand, np.array([0.0, 0.0, -1.0]))
        # Leg.
        hip = world(r_body, np.array([mirror * spec.hip_width / 2, 0.0, 0.0]))
        r_thigh = flip(rot_z(pose.hip_abduction[:, side]) @ rot_x(-pose.hip_flexion[:, side]))
        r_shin = r_thigh @ rot_x(pose.knee[:, side])
        knee = hip + world(r_body @ r_thigh, _DOWN) * spec.thigh
        ankle = knee + world(r_body @ r_shin, _DOWN) * spec.shin
        toe = np.array([mirror * 0.3, 0.3, -1.0]) / np.linalg.norm([0.3, 0.3, 1.0])
        foot = ankle + world(r_body @ r_shin, toe) * spec.foot_length
        body[:, J[f"{name}_hip"]], body[:, J[f"{name}_knee"]] = hip, knee
        body[:, J[f"{name}_ankle"]], body[:, J[f"{name}_foot"]] = ankle, foot

    r_head = head_rotation_matrix(pose.head_yaw, pose.head_pitch, pose.head_roll)
    head_center = neck + world(r_torso, np.array([0.0, -(spec.neck_length + 0.85 * spec.head_radius), 0.0]))
    for name in ("nose", "r_eye", "l_eye", "r_ear", "l_ear"):
        body[:, J[name]] = head_center + world(r_head, FACE_POINTS[name]) * spec.head_radius
    return Skeleton3D(body=body, hands=hands, head_center=head_center, head_rotation=r_head,
                      torso_rotation=r_torso, hand_normal=normals)


@dataclass(frozen=True)
class Camera:
    """A pinhole camera at the origin looking along +z; image (height, width) in pixels."""
    focal: float
    image_size: tuple[int, int]

    def project(self, points: np.ndarray) -> np.ndarray:
        """World points [..., 3] (z > 0) -> pixels [..., 2] (x right, y down)."""
        h, w = self.image_size
        z = np.maximum(points[..., 2:3], 1e-3)
        return points[..., :2] * (self.focal / z) + np.array([w / 2.0, h / 2.0])


FRAMINGS = ("full", "upper")


def frame_camera(spec: CharacterSpec, image_size: tuple[int, int], fill: float,
                 distance: float, framing: str = "full") -> tuple[Camera, float]:
    """A camera framing the standing character, and the world y of the ground.

    "full": head to feet fill ``fill`` of the image height (or width when narrower);
    "upper": head to mid-thigh do (a portrait shot, for readable faces at small sizes).
    """
    if framing not in FRAMINGS:
        raise ValueError(f"framing must be one of {FRAMINGS}, got {framing!r}")
    h, w = image_size
    stand = spec.thigh + spec.shin + 0.3 * spec.foot_length + 0.45 * spec.leg_radius  # pelvis above sole
    top = 2 * spec.head_radius + spec.neck_length + spec.torso_length  # head top above pelvis
    bottom = stand if framing == "full" else 0.35 * spec.thigh  # framed span below the pelvis
    extent = fill * min(h, 1.1 * w)  # pixels the span covers
    focal = extent * distance / (top + bottom)
    bottom_row = h / 2.0 + 0.5 * extent
    ground_y = (bottom_row - h / 2.0) * distance / focal + (stand - bottom)
    return Camera(focal=float(focal), image_size=(int(h), int(w))), float(ground_y)


def ground_offset(spec: CharacterSpec, skeleton: Skeleton3D) -> np.ndarray:
    """[T] pelvis height above the lowest sole (metres, positive down): feet rest on the ground."""
    feet = skeleton.body[:, [J["r_ankle"], J["l_ankle"], J["r_foot"], J["l_foot"]], 1]
    return feet.max(axis=1) + 0.45 * spec.leg_radius
