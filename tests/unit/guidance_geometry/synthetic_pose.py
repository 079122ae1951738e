"""Synthetic pose tracks with exact geometry for the guidance-geometry tests."""

import numpy as np

from dreamactor_core.guidance.pose_track import PoseTrack
from dreamactor_core.guidance.topology import BODY_BONES, HAND_BONES, J, NUM_BODY, ROOT

# A person standing, facing the camera: metres, pelvis origin, x right, y down, z away.
STANDING = {
    "pelvis": (0, 0, 0), "neck": (0, -0.5, 0), "nose": (0, -0.68, -0.1),
    "r_eye": (-0.03, -0.71, -0.08), "l_eye": (0.03, -0.71, -0.08),
    "r_ear": (-0.075, -0.69, 0.0), "l_ear": (0.075, -0.69, 0.0),
    "r_shoulder": (-0.18, -0.5, 0), "r_elbow": (-0.2, -0.22, 0.02), "r_wrist": (-0.2, 0.03, -0.05),
    "l_shoulder": (0.18, -0.5, 0), "l_elbow": (0.2, -0.22, 0.02), "l_wrist": (0.2, 0.03, -0.05),
    "r_hip": (-0.1, 0, 0), "r_knee": (-0.1, 0.45, 0), "r_ankle": (-0.1, 0.88, 0.02), "r_foot": (-0.1, 0.93, -0.1),
    "l_hip": (0.1, 0, 0), "l_knee": (0.1, 0.45, 0), "l_ankle": (0.1, 0.88, 0.02), "l_foot": (0.1, 0.93, -0.1),
}


def standing_3d() -> np.ndarray:
    out = np.zeros((NUM_BODY, 3))
    for name, xyz in STANDING.items():
        out[J[name]] = xyz
    return out


def build_skeleton(lengths: np.ndarray, directions: np.ndarray) -> np.ndarray:
    """Joints [T, J, 3] from bone lengths [B] and unit directions [T, B, 3], root at the origin."""
    t = directions.shape[0]
    joints = np.zeros((t, NUM_BODY, 3))
    for b, (p, c) in enumerate(BODY_BONES):
        joints[:, c] = joints[:, p] + lengths[b] * directions[:, b]
    assert np.allclose(joints[:, ROOT], 0)
    return joints


def hand_3d(wrist: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A fan-shaped hand [21, 3] hanging from ``wrist`` (metres)."""
    pts = np.zeros((21, 3))
    for b, (p, c) in enumerate(HAND_BONES):
        finger = b // 4
        pts[c] = pts[p] + 0.025 * np.array([(finger - 2) * 0.3, 1.0, 0.0]) + rng.normal(0, 0.002, 3)
    return pts + wrist


def make_track(joints_3d: np.ndarray, scale, trans, image_size=(512, 512), fps=25.0,
               rng=None) -> PoseTrack:
    """A track whose 2D is the exact weak-perspective projection scale * xy + trans."""
    rng = rng or np.random.default_rng(0)
    t = joints_3d.shape[0]
    scale = np.broadcast_to(np.asarray(scale, np.float64), (t,))
    trans = np.broadcast_to(np.asarray(trans, np.float64), (t, 2))
    track = PoseTrack.empty(t, image_size, fps, source="synthetic")
    track.body_3d[:] = joints_3d
    track.body_2d[:] = scale[:, None, None] * joints_3d[..., :2] + trans[:, None]
    track.body_conf[:] = 1.0
    for side, wrist in enumerate((J["r_wrist"], J["l_wrist"])):
        for i in range(t):
            track.hands_3d[i, side] = hand_3d(joints_3d[i, wrist], rng)
        track.hands_2d[:, side] = scale[:, None, None] * track.hands_3d[:, side, :, :2] + trans[:, None]
        track.hands_conf[:, side] = 1.0
    return track
