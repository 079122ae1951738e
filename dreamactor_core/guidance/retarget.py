"""Bone-length normalisation: retarget a driving skeleton to the reference person's anatomy.

DreamActor-M1 (inference) measures each bone of the driver and of the reference, scales every
driving bone to the reference's length while keeping its direction, then projects the result
into the reference image. Here:

1. per-bone ratio reference/driver from 3D bone lengths, each a median over the frames where
   both joints are confident; a bone unseen on either side takes its mirror bone's ratio, else
   the global ratio (total reference length / total driver length over bones seen on both);
2. the 3D skeleton is rebuilt outward from the pelvis (``topology.BODY_BONES`` is root-first);
3. a weak-perspective camera (scale + translation, least squares body_3d -> body_2d) is fitted
   per driver frame and once on the reference; the retargeted body is drawn with the
   reference's pixels-per-metre times the driver's zoom relative to the alignment frame;
4. at the alignment frame (the first where the anchor is seen) the anchor (ankles for full
   body, neck for half body / portraits) lands on the reference's anchor; later frames follow
   the driver's root motion, scaled to the reference's pixels and body size.
Hands hang from the retargeted wrists, scaled by the forearm ratio.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from .pose_track import PoseTrack
from .topology import BODY_BONES, BODY_JOINTS, HAND_ROOT_BODY_JOINT, J, ROOT

NUM_BONES = len(BODY_BONES)
MODES = ("auto", "full_body", "half_body")


def _mirror_joint(name: str) -> str:
    return "l_" + name[2:] if name.startswith("r_") else "r_" + name[2:] if name.startswith("l_") else name


_BONE_INDEX = {bone: b for b, bone in enumerate(BODY_BONES)}
BONE_MIRROR = tuple(
    _BONE_INDEX[(J[_mirror_joint(BODY_JOINTS[p])], J[_mirror_joint(BODY_JOINTS[c])])]
    for p, c in BODY_BONES
)
_FOREARM = tuple(_BONE_INDEX[(J[s + "_elbow"], J[s + "_wrist"])] for s in ("r", "l"))
_NECK_NOSE = _BONE_INDEX[(J["neck"], J["nose"])]


def bone_lengths(joints_3d: np.ndarray) -> np.ndarray:
    """[T, J, 3] -> [T, num_bones] Euclidean bone lengths."""
    parents, children = np.array(BODY_BONES).T
    return np.linalg.norm(joints_3d[:, children] - joints_3d[:, parents], axis=-1)


def robust_bone_lengths(joints_3d: np.ndarray, conf: np.ndarray, threshold: float = 0.3) -> np.ndarray:
    """Median length of each bone over frames where both its joints are confident; NaN if none."""
    parents, children = np.array(BODY_BONES).T
    seen = (conf[:, parents] >= threshold) & (conf[:, children] >= threshold)  # [T, B]
    lengths = np.where(seen, bone_lengths(np.asarray(joints_3d, np.float64)), np.nan)
    out = np.full(NUM_BONES, np.nan)
    has = seen.any(axis=0)
    out[has] = np.nanmedian(lengths[:, has], axis=0)
    return out


def bone_ratios(driver: PoseTrack, reference: PoseTrack, threshold: float = 0.3):
    """Per-bone reference/driver length ratios. Returns (ratio [num_bones], global_ratio, report)."""
    drv = robust_bone_lengths(driver.body_3d, driver.body_conf, threshold)
    ref = robust_bone_lengths(reference.body_3d, reference.body_conf, threshold)
    both = np.isfinite(drv) & np.isfinite(ref) & (drv > 1e-6)
    if not both.any():
        raise ValueError("retarget: no bone is confidently seen in both the driver and the "
                         "reference; check that both show a person (reference pose track empty?)")
    global_ratio = float(ref[both].sum() / drv[both].sum())
    ratio = np.full(NUM_BONES, np.nan)
    ratio[both] = ref[both] / drv[both]
    mirrored = ~both & both[list(BONE_MIRROR)]
    ratio[mirrored] = ratio[list(BONE_MIRROR)][mirrored]
    fallback = ~both & ~mirrored
    ratio[fallback] = global_ratio
    names = [f"{BODY_JOINTS[p]}-{BODY_JOINTS[c]}" for p, c in BODY_BONES]
    report = {"bone_ratio": dict(zip(names, ratio.round(4).tolist())), "global_ratio": global_ratio,
              "bones_from_mirror": [n for n, m in zip(names, mirrored) if m],
              "bones_from_global_ratio": [n for n, m in zip(names, fallback) if m]}
    return ratio, global_ratio, report


def retarget_skeleton_3d(joints_3d: np.ndarray, bone_ratio: np.ndarray, valid: np.ndarray | None = None,
                         fallback_ratio: float | None = None) -> np.ndarray:
    """Scales every bone of joints_3d [T, J, 3] by bone_ratio [num_bones], keeping directions.

    The skeleton is rebuilt from the root outward. With ``valid`` [T, J], a bone whose parent is
    missing in a frame is measured from the nearest valid ancestor instead and scaled by
    ``fallback_ratio`` (default: median ratio), so a lost elbow does not misplace the wrist.
    """
    x = np.asarray(joints_3d, np.float64)
    ratio = np.asarray(bone_ratio, np.float64)
    if x.ndim != 3 or x.shape[1:] != (len(BODY_JOINTS), 3):
        raise ValueError(f"retarget_skeleton_3d: joints_3d must be [T, {len(BODY_JOINTS)}, 3], got {x.shape}")
    if ratio.shape != (NUM_BONES,) or not np.isfinite(ratio).all():
        raise ValueError(f"retarget_skeleton_3d: bone_ratio must be {NUM_BONES} finite values, got {ratio.shape}")
    ok = np.ones(x.shape[:2], bool) if valid is None else np.asarray(valid, bool)
    g = float(np.median(ratio)) if fallback_ratio is None else float(fallback_ratio)
    out = x.copy()
    anchor_in, anchor_out = x.copy(), out.copy()  # nearest valid ancestor (inclusive) per joint
    for b, (p, c) in enumerate(BODY_BONES):
        p_ok = ok[:, p:p + 1] | (p == ROOT)  # [T, 1]; the root is the origin, always known
        r = np.where(p_ok, ratio[b], g)
        out[:, c] = anchor_out[:, p] + r * (x[:, c] - anchor_in[:, p])
        c_ok = ok[:, c:c + 1]
        anchor_in[:, c] = np.where(c_ok, x[:, c], anchor_in[:, p])
        anchor_out[:, c] = np.where(c_ok, out[:, c], anchor_out[:, p])
    return out


def fit_weak_perspective(joints_3d: np.ndarray, joints_2d: np.ndarray, conf: np.ndarray,
                         threshold: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame least squares ``joints_2d ~ scale * joints_3d[..., :2] + translation``.

    Returns (scale [T], translation [T, 2]); frames with fewer than two confident joints copy
    the nearest fitted frame. Raises ValueError when no frame can be fitted.
    """
    ok = (conf >= threshold).astype(np.float64)  # [T, J]
    n = ok.sum(1)  # [T]
    w = ok / np.maximum(n, 1)[:, None]
    seen = ok[..., None] > 0
    x3 = np.where(seen, np.asarray(joints_3d, np.float64)[..., :2], 0.0)  # missing joints may be NaN
    x2 = np.where(seen, np.asarray(joints_2d, np.float64), 0.0)
    m3 = (w[..., None] * x3).sum(1)
    m2 = (w[..., None] * x2).sum(1)
    c3, c2 = x3 - m3[:, None], x2 - m2[:, None]
    den = (ok * (c3 ** 2).sum(-1)).sum(1)
    fitted = (n >= 2) & (den > 1e-12)
    if not fitted.any():
        raise ValueError("retarget: cannot fit a camera, no frame has two confident body joints")
    scale = (ok * (c3 * c2).sum(-1)).sum(1) / np.where(fitted, den, 1.0)
    fitted &= scale > 1e-9  # a mirrored or collapsed fit is no camera
    trans = m2 - scale[:, None] * m3
    idx = np.arange(len(n))
    prev = np.maximum.accumulate(np.where(fitted, idx, -1))
    nxt = np.flip(np.minimum.accumulate(np.flip(np.where(fitted, idx, len(n)))))
    near = np.where(prev >= 0, prev, nxt)
    return scale[near], trans[near]


def _anchor_joints(driver: PoseTrack, reference: PoseTrack, mode: str, threshold: float):
    """Picks the mode and the anchor joints seen in the reference; returns (mode, joints)."""
    if mode not in MODES:
        raise ValueError(f"retarget: mode must be one of {MODES}, got {mode!r}")
    ref_ok = reference.body_conf[0] >= threshold
    drv_ok = (driver.body_conf >= threshold).any(axis=0)
    ankles = [j for j in (J["r_ankle"], J["l_ankle"]) if ref_ok[j] and drv_ok[j]]
    if mode == "full_body" and not ankles:
        raise ValueError("retarget: mode='full_body' needs ankles seen in the reference and the "
                         "driver; use mode='half_body' (or 'auto') for half-body shots")
    if mode == "full_body" or (mode == "auto" and ankles):
        return "full_body", ankles
    for candidates in ((J["neck"],), (J["r_shoulder"], J["l_shoulder"]), (J["nose"],)):
        joints = [j for j in candidates if ref_ok[j] and drv_ok[j]]
        if joints:
            return "half_body", joints
    raise ValueError("retarget: neither ankles, neck, shoulders nor nose are seen in both the "
                     "reference (frame 0) and the driver; cannot place the body")


def retarget_track(driver: PoseTrack, reference: PoseTrack, mode: str = "auto",
                   threshold: float = 0.3) -> PoseTrack:
    """The driver's motion on the reference's anatomy, in the reference image's pixels.

    ``reference`` is a track of one (or a few) frames of the reference image; frame 0 places the
    body. Joints missing in the driver stay missing (the driver's confidences are kept). Face
    landmarks are dropped; head pose is carried over with the head centre moved with the neck
    and the radius taken from the reference when it has one.
    """
    driver.validate()
    reference.validate()
    if driver.num_frames == 0 or reference.num_frames == 0:
        raise ValueError("retarget: driver and reference tracks must have at least one frame")
    ratio, g, report = bone_ratios(driver, reference, threshold)
    mode, anchors = _anchor_joints(driver, reference, mode, threshold)
    valid = driver.body_conf >= threshold
    x3 = retarget_skeleton_3d(driver.body_3d, ratio, valid, g)  # [T, J, 3]

    s_d, c_d = fit_weak_perspective(driver.body_3d, driver.body_2d, driver.body_conf, threshold)
    s_r, _ = fit_weak_perspective(reference.body_3d[:1], reference.body_2d[:1], reference.body_conf[:1], threshold)
    seen = valid[:, anchors].all(axis=1)
    t0 = int(np.argmax(seen)) if seen.any() else 0
    zoom = s_d / s_d[t0]
    sigma = s_r[0] * zoom  # reference pixels per (reference) metre, per frame
    rel = x3[..., :2] - x3[:, ROOT:ROOT + 1, :2]  # [T, J, 2]
    ref_anchor = reference.body_2d[0, anchors].astype(np.float64).mean(0)
    root0 = ref_anchor - sigma[t0] * rel[t0, anchors].mean(0)
    root = root0 + (s_r[0] * g / s_d[t0]) * (c_d - c_d[t0])  # [T, 2]
    body_2d = sigma[:, None, None] * rel + root[:, None, :]

    px = (sigma / s_d)[:, None, None]  # driver pixels -> output pixels, before bone scaling
    hands_2d = np.zeros_like(driver.hands_2d, dtype=np.float64)
    hands_3d = np.zeros_like(driver.hands_3d, dtype=np.float64)
    for side, wrist in enumerate(HAND_ROOT_BODY_JOINT):
        r = ratio[_FOREARM[side]]
        h2, h3 = driver.hands_2d[:, side].astype(np.float64), driver.hands_3d[:, side].astype(np.float64)
        hands_2d[:, side] = body_2d[:, wrist:wrist + 1] + px * r * (h2 - h2[:, :1])
        hands_3d[:, side] = x3[:, wrist:wrist + 1] + r * (h3 - h3[:, :1])

    head = {}
    if driver.head_center is not None and driver.head_radius is not None:
        neck = J["neck"]
        r = ratio[_NECK_NOSE]
        offset = driver.head_center.astype(np.float64) - driver.body_2d[:, neck]
        head["head_center"] = (body_2d[:, neck] + px[:, 0] * r * offset).astype(np.float32)
        if reference.head_radius is not None and reference.head_radius[0] > 0:
            head["head_radius"] = (reference.head_radius[0] * zoom).astype(np.float32)
        else:
            head["head_radius"] = (driver.head_radius * px[:, 0, 0] * r).astype(np.float32)

    report.update({"mode": mode, "anchor_joints": [BODY_JOINTS[j] for j in anchors],
                   "alignment_frame": t0, "reference_px_per_m": float(s_r[0])})
    out_report = dict(driver.report)
    out_report["retarget"] = report
    return replace(
        driver, image_size=tuple(reference.image_size),
        body_2d=body_2d.astype(np.float32), body_3d=x3.astype(np.float32),
        body_conf=driver.body_conf.copy(),
        hands_2d=hands_2d.astype(np.float32), hands_3d=hands_3d.astype(np.float32),
        hands_conf=driver.hands_conf.copy(),
        face_2d=None, face_conf=None, source=f"retargeted:{driver.source}", report=out_report, **head,
    )
