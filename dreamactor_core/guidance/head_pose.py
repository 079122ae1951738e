"""Head orientation, centre and size per frame, from face-mesh landmarks or body keypoints.

Frames. The camera frame is x right, y down, z away from the camera (OpenCV). The head frame
is the same frame attached to a face looking straight at the camera, so the face points along
-z. A rotation matrix R maps head-frame vectors to camera-frame vectors, and

    R = Ry(-yaw) @ Rx(-pitch) @ Rz(roll)        (angles in degrees in the public API)

i.e. turn about the vertical, then nod about the head's own left-right axis, then tilt about
its own forward axis. With PoseTrack's signs: yaw > 0 turns the face towards the image's right,
pitch > 0 looks up, roll > 0 tilts the head clockwise in the image.

Canonical face. Nine expression-independent landmarks of MediaPipe's canonical face model
(mediapipe/modules/face_geometry/data/canonical_face_model.obj, centimetres, y up, z towards
the viewer), rewritten here in the head frame (y and z negated). Mouth corners and chin are
left out on purpose: on real MediaPipe meshes they move with smiles and speech (their
reprojection errors were 5-10 px against <3 px for these nine on a smiling portrait) and
shifted the recovered pitch by ~15 degrees. The head centre, head radius and the body-keypoint
positions of ears and eyes are approximate adult anthropometry.
"""

from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np

from .filtering import one_euro
from .pose_track import PoseTrack
from .topology import J

# landmark index -> (x, y, z) in cm, head frame. Source values (obj, y up / z out):
# 1 nose tip (0, -1.127, 7.476); 168 nose bridge between the eyes (0, 3.271, 5.236);
# 10 forehead (0, 8.262, 4.482); 33 / 263 outer eye corners (-/+4.446, 2.664, 3.173);
# 133 / 362 inner eye corners (-/+1.856, 2.585, 3.758); 234 / 454 face sides at the ears
# (-/+7.664, 0.673, -2.436).
CANONICAL_FACE = {
    1: (0.0, 1.127, -7.476),
    168: (0.0, -3.271, -5.236),
    10: (0.0, -8.262, -4.482),
    33: (-4.446, -2.664, -3.173),
    263: (4.446, -2.664, -3.173),
    133: (-1.856, -2.585, -3.758),
    362: (1.856, -2.585, -3.758),
    234: (-7.664, -0.673, 2.436),
    454: (7.664, -0.673, 2.436),
}
PNP_LANDMARKS = tuple(CANONICAL_FACE)
PNP_POINTS = np.array([CANONICAL_FACE[i] for i in PNP_LANDMARKS], np.float64)  # [9, 3]
HEAD_CENTER = np.array([0.0, -1.0, 3.5])  # cm, head frame: behind the ear line, eye-ear height
HEAD_RADIUS_CM = 9.5
# Body keypoints of the head (OpenPose/MediaPipe pose), same frame. Eyes are eye centres
# (mean of the canonical eye corners 33/133), ears sit at the tragus.
BODY_HEAD_POINTS = {
    "nose": (0.0, 1.127, -7.476),
    "r_eye": (-3.151, -2.625, -3.466), "l_eye": (3.151, -2.625, -3.466),
    "r_ear": (-7.5, -0.5, 3.0), "l_ear": (7.5, -0.5, 3.0),
}


def euler_to_matrix(ypr_deg: np.ndarray) -> np.ndarray:
    """[..., 3] yaw, pitch, roll in degrees -> [..., 3, 3] head-to-camera rotation."""
    ypr = np.deg2rad(np.asarray(ypr_deg, np.float64))
    a, b, c = -ypr[..., 0], -ypr[..., 1], ypr[..., 2]
    ca, sa, cb, sb, cc, sc = np.cos(a), np.sin(a), np.cos(b), np.sin(b), np.cos(c), np.sin(c)
    one, zero = np.ones_like(a), np.zeros_like(a)
    ry = np.stack([np.stack([ca, zero, sa], -1), np.stack([zero, one, zero], -1),
                   np.stack([-sa, zero, ca], -1)], -2)
    rx = np.stack([np.stack([one, zero, zero], -1), np.stack([zero, cb, -sb], -1),
                   np.stack([zero, sb, cb], -1)], -2)
    rz = np.stack([np.stack([cc, -sc, zero], -1), np.stack([sc, cc, zero], -1),
                   np.stack([zero, zero, one], -1)], -2)
    return ry @ rx @ rz


def matrix_to_euler(rotation: np.ndarray) -> np.ndarray:
    """[..., 3, 3] head-to-camera rotation -> [..., 3] yaw, pitch, roll in degrees."""
    r = np.asarray(rotation, np.float64)
    a = np.arctan2(r[..., 0, 2], r[..., 2, 2])
    b = np.arctan2(-r[..., 1, 2], np.hypot(r[..., 1, 0], r[..., 1, 1]))
    c = np.arctan2(r[..., 1, 0], r[..., 1, 1])
    return np.rad2deg(np.stack([-a, -b, c], axis=-1))


def camera_matrix(image_size: tuple[int, int]) -> np.ndarray:
    """Pinhole intrinsics assumed for unknown cameras: focal = the longer side (~53 deg FOV)."""
    h, w = image_size
    f = float(max(h, w))
    return np.array([[f, 0, w / 2.0], [0, f, h / 2.0], [0, 0, 1]], np.float64)


def pose_from_face_landmarks(face_2d: np.ndarray, image_size: tuple[int, int]):
    """Head pose of one frame from MediaPipe's 468 face landmarks (pixels) by cv2.solvePnP.

    Returns (ypr [3] degrees, centre [2] pixels, radius pixels), or None when PnP fails.
    """
    pts = np.asarray(face_2d, np.float64)[list(PNP_LANDMARKS)]
    if not np.isfinite(pts).all():
        return None
    k = camera_matrix(image_size)
    ok, rvec, tvec = cv2.solvePnP(PNP_POINTS, pts, k, None, flags=cv2.SOLVEPNP_SQPNP)
    if not ok or tvec[2, 0] <= 0:
        return None
    ok, rvec, tvec = cv2.solvePnP(PNP_POINTS, pts, k, None, rvec, tvec, True, cv2.SOLVEPNP_ITERATIVE)
    if not ok or tvec[2, 0] <= 0:
        return None
    rot = cv2.Rodrigues(rvec)[0]
    centre_cam = rot @ HEAD_CENTER + tvec[:, 0]
    centre = (k @ centre_cam)[:2] / centre_cam[2]
    radius = k[0, 0] * HEAD_RADIUS_CM / centre_cam[2]
    return matrix_to_euler(rot), centre, float(radius)


_BODY_HEAD_NAMES = tuple(BODY_HEAD_POINTS)
_BODY_HEAD_XYZ = np.array([BODY_HEAD_POINTS[n] for n in _BODY_HEAD_NAMES])  # [5, 3]


def _project_weak(params: np.ndarray, points: np.ndarray) -> np.ndarray:
    """params [N, 6] = (yaw, pitch, roll in degrees, log scale, tx, ty) -> pixels [N, K, 2]."""
    rot = euler_to_matrix(params[:, :3])
    return np.exp(params[:, 3])[:, None, None] * (points @ np.swapaxes(rot, 1, 2))[..., :2] + params[:, None, 4:6]


def _refine_weak(params: np.ndarray, observed: np.ndarray, weight: np.ndarray, iters: int = 8) -> np.ndarray:
    """Damped Gauss-Newton on the weak-perspective reprojection error, batched over frames."""
    sw = np.sqrt(weight)[..., None]  # [N, K, 1]
    eps = np.array([1e-3, 1e-3, 1e-3, 1e-5, 1e-3, 1e-3])

    def residual(p):
        return ((_project_weak(p, _BODY_HEAD_XYZ) - observed) * sw).reshape(len(p), -1)

    for _ in range(iters):
        r = residual(params)  # [N, 2K]
        jac = np.stack([(residual(params + eps * (np.arange(6) == i)) - r) / eps[i] for i in range(6)], -1)
        jtj = np.swapaxes(jac, 1, 2) @ jac + 1e-6 * np.eye(6)
        step = np.linalg.solve(jtj, -(np.swapaxes(jac, 1, 2) @ r[..., None]))[..., 0]
        trial = params + step
        better = (residual(trial) ** 2).sum(1) < (r ** 2).sum(1)
        params = np.where(better[:, None], trial, params)
    params[:, 1] = np.clip(params[:, 1], -85, 85)
    return params


def pose_from_body_keypoints(body_2d: np.ndarray, body_conf: np.ndarray, threshold: float = 0.3):
    """Approximate head pose from the nose plus ears and/or eyes, vectorised over frames.

    body_2d [T, NUM_BODY, 2], body_conf [T, NUM_BODY]. A closed-form start uses one pair (ears,
    else eyes): the pair's image direction gives roll, and with the pair's half-distance as the
    scale, the nose's offset from the pair's midpoint along / across it gives yaw and pitch under
    a weak-perspective model of ``BODY_HEAD_POINTS``. Gauss-Newton then fits rotation, scale and
    translation to all confident head points. Returns (ypr [T, 3], centre [T, 2], radius [T], ok [T]).
    """
    t_len = body_2d.shape[0]
    ypr = np.zeros((t_len, 3))
    centre = np.zeros((t_len, 2))
    radius = np.zeros(t_len)
    conf = np.asarray(body_conf)
    nose = body_2d[:, J["nose"]].astype(np.float64)
    has_nose = conf[:, J["nose"]] >= threshold
    ears_ok = has_nose & (conf[:, J["r_ear"]] >= threshold) & (conf[:, J["l_ear"]] >= threshold)
    eyes_ok = has_nose & (conf[:, J["r_eye"]] >= threshold) & (conf[:, J["l_eye"]] >= threshold)
    scale = np.ones(t_len)
    done = np.zeros(t_len, bool)
    for right, left, usable in (("r_ear", "l_ear", ears_ok), ("r_eye", "l_eye", eyes_ok)):
        use = usable & ~done
        if not use.any():
            continue
        p_r, p_l, p_n = (np.array(BODY_HEAD_POINTS[k]) for k in (right, left, "nose"))
        half_model = (p_l[0] - p_r[0]) / 2
        dy, dz = p_n[1] - (p_r[1] + p_l[1]) / 2, (p_r[2] + p_l[2]) / 2 - p_n[2]
        big_r, delta = np.hypot(dy, dz), np.arctan2(dy, dz)
        a, b = body_2d[use, J[right]].astype(np.float64), body_2d[use, J[left]].astype(np.float64)
        half_vec = (b - a) / 2
        half = np.maximum(np.linalg.norm(half_vec, axis=-1), 1e-6)
        roll = np.arctan2(half_vec[:, 1], half_vec[:, 0])
        off = nose[use] - (a + b) / 2
        cr, sr = np.cos(roll), np.sin(roll)
        ox, oy = off[:, 0] * cr + off[:, 1] * sr, -off[:, 0] * sr + off[:, 1] * cr  # de-rolled
        yaw, pitch = np.zeros_like(half), np.zeros_like(half)
        for _ in range(4):  # fixed point: scale depends on yaw, yaw on pitch
            s = half / (half_model * np.cos(yaw))
            pitch = delta - np.arcsin(np.clip(oy / (s * big_r), -1, 1))
            yaw = np.arctan2(ox / (big_r * np.cos(delta - pitch)), half / half_model)
            yaw = np.clip(yaw, -np.deg2rad(85), np.deg2rad(85))
        scale[use] = half / (half_model * np.cos(yaw))
        ypr[use] = np.rad2deg(np.stack([yaw, pitch, roll], -1))
        done |= use
    if done.any():
        pts = body_2d[done][:, [J[n] for n in _BODY_HEAD_NAMES]].astype(np.float64)  # [N, 5, 2]
        weight = (conf[done][:, [J[n] for n in _BODY_HEAD_NAMES]] >= threshold).astype(np.float64)
        nose_head = euler_to_matrix(ypr[done]) @ _BODY_HEAD_XYZ[0]
        start = np.concatenate([ypr[done], np.log(scale[done])[:, None],
                                nose[done] - scale[done, None] * nose_head[:, :2]], 1)
        fit = _refine_weak(start, pts, weight)
        ypr[done] = fit[:, :3]
        s = np.exp(fit[:, 3])
        centre[done] = _project_weak(fit, HEAD_CENTER[None])[:, 0]
        radius[done] = s * HEAD_RADIUS_CM
    return ypr, centre, radius, done


def estimate_head_pose(track: PoseTrack, face_threshold: float = 0.5, body_threshold: float = 0.3,
                       body_conf_scale: float = 0.5, smooth: bool = True) -> PoseTrack:
    """Fills head_rotation / head_center / head_radius / head_conf of a track.

    Face-mesh PnP where ``face_conf >= face_threshold``; elsewhere the body-keypoint fallback with
    confidence scaled by ``body_conf_scale``; frames with neither hold the nearest measured pose
    with head_conf 0 and are listed in ``report["head_pose"]["held_frames"]``.
    """
    track.validate()
    t_len = track.num_frames
    ypr, centre, radius, ok = pose_from_body_keypoints(track.body_2d, track.body_conf, body_threshold)
    conf = np.where(ok, body_conf_scale * track.body_conf[:, J["nose"]], 0.0)
    source = np.where(ok, "body", "none").astype(object)
    if track.face_2d is not None and track.face_2d.shape[1] >= 468:
        face_conf = track.face_conf if track.face_conf is not None else np.ones(t_len)
        for t in np.flatnonzero(face_conf >= face_threshold):
            res = pose_from_face_landmarks(track.face_2d[t], track.image_size)
            if res is not None:
                ypr[t], centre[t], radius[t] = res
                conf[t], ok[t], source[t] = face_conf[t], True, "face"
    held = np.flatnonzero(~ok)
    if ok.any():
        idx = np.arange(t_len)
        prev = np.maximum.accumulate(np.where(ok, idx, -1))
        nxt = np.flip(np.minimum.accumulate(np.flip(np.where(ok, idx, t_len))))
        near = np.where((prev < 0) | ((nxt < t_len) & (nxt - idx < idx - prev)), nxt, prev)
        ypr, centre, radius = ypr[near], centre[near], radius[near]
        if smooth:
            ypr = one_euro(ypr / 90.0, track.fps, min_cutoff=1.5, beta=0.5) * 90.0
            scale = float(track.image_size[0])
            centre = one_euro(centre / scale, track.fps, min_cutoff=1.5, beta=0.5) * scale
            radius = one_euro(radius[:, None] / scale, track.fps, min_cutoff=1.0)[:, 0] * scale
    report = dict(track.report)
    report["head_pose"] = {"held_frames": held.tolist(),
                           "face_frames": int((source == "face").sum()),
                           "body_frames": int((source == "body").sum())}
    if not ok.any():
        report["head_pose"]["warning"] = "no head evidence (face or nose+eyes/ears) in any frame"
    return replace(track, head_rotation=ypr.astype(np.float32), head_center=centre.astype(np.float32),
                   head_radius=radius.astype(np.float32), head_conf=conf.astype(np.float32), report=report)
