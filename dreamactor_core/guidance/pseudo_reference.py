"""Pseudo-references: driving frames that show the person from views the reference lacks.

DreamActor-M1 feeds the model extra reference views (e.g. a profile or the back) taken from the
driving video when the reference is a single frontal photo. Here they are picked by
farthest-point sampling over a pose descriptor, seeded with the reference's own pose so that
the first pick is the frame least like the reference, with a bonus for view classes (frontal,
profile, back) that neither the reference nor an earlier pick covers. An identity filter drops
frames that do not look like the reference person: cosine similarity of caller-supplied
embeddings (e.g. CLIP vision) when given, else a hue-saturation histogram of the person region.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import cv2
import numpy as np

from .image_io import to_rgb_uint8
from .pose_track import PoseTrack
from .reference import ReferenceSet, crop_resize, frame_box, person_box
from .topology import J, NUM_BODY

CONF = 0.3
HEAD_SCALE = 1.0 / 45.0  # degrees -> descriptor units: 45 degrees of yaw weigh like one torso length
VISIBILITY_WEIGHT = 0.5
PROFILE_YAW = 40.0
VIEW_BONUS = 0.5  # score multiplier gained by a view class nobody covers yet
DEFAULT_THRESHOLD = {"embedding": 0.8, "hsv-histogram": 0.5}
_HIST_BINS = (30, 32)  # hue, saturation
_TORSO = [J[n] for n in ("r_shoulder", "l_shoulder", "r_hip", "l_hip")]


@dataclass
class PseudoReferencePick:
    indices: list[int]  # frame indices, in pick order
    frames: np.ndarray  # uint8 [K, H, W, 3]
    diversity_scores: np.ndarray  # [K] descriptor distance to the reference and earlier picks when picked
    identity_scores: np.ndarray  # [K] similarity to the reference (cosine or histogram)
    report: dict = field(default_factory=dict)


def pose_descriptors(body_2d: np.ndarray, body_conf: np.ndarray, head_rotation: np.ndarray | None = None,
                     face_visible: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Pose descriptors [T, D] and ``has_body`` [T].

    Body joints are centred on the torso and divided by the torso size (shoulder-hip diagonal
    lengths, else shoulder width), so framing and zoom do not count; missing joints are zero
    with a visibility flag. Head yaw/pitch/roll and face visibility are appended.
    """
    xy = np.asarray(body_2d, np.float64)
    vis = (np.asarray(body_conf) >= CONF).astype(np.float64)  # [T, J]
    t_len = xy.shape[0]
    shoulders = vis[:, J["r_shoulder"]] * vis[:, J["l_shoulder"]]
    has_body = shoulders > 0
    w = vis[:, _TORSO]
    centre = (xy[:, _TORSO] * w[..., None]).sum(1) / np.maximum(w.sum(1), 1)[:, None]
    size = np.linalg.norm(xy[:, J["r_shoulder"]] - xy[:, J["l_shoulder"]], axis=-1)
    for a, b in (("r_shoulder", "l_hip"), ("l_shoulder", "r_hip")):
        both = vis[:, J[a]] * vis[:, J[b]] > 0
        size = np.where(both, np.maximum(size, 0.6 * np.linalg.norm(xy[:, J[a]] - xy[:, J[b]], axis=-1)), size)
    size = np.maximum(size, 1e-6)
    pos = (xy - centre[:, None]) / size[:, None, None] * vis[..., None]  # [T, J, 2]
    head = np.zeros((t_len, 3)) if head_rotation is None else np.asarray(head_rotation, np.float64)
    face = np.zeros(t_len) if face_visible is None else np.asarray(face_visible, np.float64)
    desc = np.concatenate([pos.reshape(t_len, 2 * NUM_BODY), VISIBILITY_WEIGHT * vis,
                           head * HEAD_SCALE, VISIBILITY_WEIGHT * face[:, None]], axis=1)
    return desc, has_body


def view_classes(track: PoseTrack) -> np.ndarray:
    """Per frame "frontal", "profile", "back" or "none" (no body).

    Back: no face found while the shoulders are seen, or the person's left shoulder on the
    image's left (the body faces away). Profile: |head yaw| >= PROFILE_YAW.
    """
    conf = track.body_conf
    body = (conf[:, J["r_shoulder"]] >= CONF) & (conf[:, J["l_shoulder"]] >= CONF)
    face = _face_visible(track)
    flipped = track.body_2d[:, J["l_shoulder"], 0] < track.body_2d[:, J["r_shoulder"], 0]
    yaw = np.zeros(track.num_frames) if track.head_rotation is None else np.abs(track.head_rotation[:, 0])
    view = np.where(yaw >= PROFILE_YAW, "profile", "frontal").astype(object)
    view[body & (~face | flipped) & (yaw < PROFILE_YAW)] = "back"
    view[~body & ~face] = "none"
    return view


def _face_visible(track: PoseTrack) -> np.ndarray:
    if track.face_conf is not None:
        return track.face_conf > 0
    if track.head_conf is not None:
        return track.head_conf > 0
    return np.ones(track.num_frames, bool)


def _descriptors(track: PoseTrack) -> tuple[np.ndarray, np.ndarray]:
    return pose_descriptors(track.body_2d, track.body_conf, track.head_rotation, _face_visible(track))


def person_region(image: np.ndarray, track: PoseTrack, frame: int, mask: np.ndarray | None = None) -> np.ndarray:
    """Boolean [H, W]: the person, as the mask (>0.5) inside a box around the confident joints
    grown by half the shoulder width; the box alone where the mask covers too little of it."""
    h, w = image.shape[:2]
    sy, sx = h / track.image_size[0], w / track.image_size[1]
    ok = track.body_conf[frame] >= CONF
    pts = track.body_2d[frame][ok] * (sx, sy)
    region = np.zeros((h, w), bool)
    if len(pts) < 2:
        return region
    shoulders = np.linalg.norm(track.body_2d[frame, J["r_shoulder"]] - track.body_2d[frame, J["l_shoulder"]])
    grow = max(0.5 * shoulders * sx, 4.0)
    x0, y0 = np.clip(np.floor(pts.min(0) - grow), 0, (w, h)).astype(int)
    x1, y1 = np.clip(np.ceil(pts.max(0) + grow), 0, (w, h)).astype(int)
    region[y0:y1, x0:x1] = True
    if mask is not None:
        person = region & (np.asarray(mask) > 0.5)
        if person.sum() >= 0.2 * region.sum():
            return person
    return region


def hs_histogram(image: np.ndarray, region: np.ndarray) -> np.ndarray:
    """Normalised hue-saturation histogram [30, 32] of the pixels inside ``region``."""
    hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV)
    hist = cv2.calcHist([hsv], [0, 1], region.astype(np.uint8), list(_HIST_BINS), [0, 180, 0, 256])
    return hist / max(float(hist.sum()), 1e-9)


def histogram_similarity(a: np.ndarray, b: np.ndarray) -> float:
    """1 - Bhattacharyya distance: 1 for identical colour distributions, 0 for disjoint ones."""
    return 1.0 - float(cv2.compareHist(a.astype(np.float32), b.astype(np.float32), cv2.HISTCMP_BHATTACHARYYA))


def _segment(frames: np.ndarray, indices: np.ndarray) -> dict[int, np.ndarray]:
    import mediapipe as mp

    with mp.solutions.selfie_segmentation.SelfieSegmentation(model_selection=0) as seg:
        return {int(i): seg.process(frames[i]).segmentation_mask for i in indices}


def identity_scores(frames: np.ndarray, track: PoseTrack, reference: ReferenceSet, candidates: np.ndarray,
                    embeddings=None, reference_embedding=None, person_masks=None) -> tuple[np.ndarray, str]:
    """Similarity of each candidate frame to the reference person; NaN for other frames."""
    scores = np.full(len(frames), np.nan)
    if embeddings is not None:
        emb = np.asarray(embeddings, np.float64)
        if reference_embedding is None:
            raise ValueError("embeddings were given without reference_embedding: pass the reference "
                             "image's embedding ([D]) computed by the same encoder")
        ref = np.asarray(reference_embedding, np.float64).reshape(-1)
        if emb.ndim != 2 or emb.shape[0] != len(frames) or emb.shape[1] != ref.shape[0]:
            raise ValueError(f"embeddings have shape {emb.shape} and reference_embedding {ref.shape}: "
                             f"expected [{len(frames)}, D] and [D]")
        sim = emb @ ref / np.maximum(np.linalg.norm(emb, axis=1) * np.linalg.norm(ref), 1e-12)
        scores[candidates] = sim[candidates]
        return scores, "embedding"
    masks = _segment(frames, candidates) if person_masks is None else person_masks
    ref_region = person_region(reference.image, reference.track, 0, reference.mask)
    ref_hist = hs_histogram(reference.image, ref_region)
    for i in candidates:
        region = person_region(frames[i], track, int(i), masks[int(i)])
        scores[i] = histogram_similarity(hs_histogram(frames[i], region), ref_hist) if region.any() else 0.0
    return scores, "hsv-histogram"


def _as_frames(frames, track: PoseTrack) -> np.ndarray:
    if isinstance(frames, np.ndarray) and frames.dtype == np.uint8 and frames.ndim == 4:
        out = frames
    else:
        out = np.stack([to_rgb_uint8(f, name=f"frame {i}") for i, f in enumerate(frames)]) if len(frames) else None
    if out is None or out.ndim != 4 or out.shape[-1] != 3:
        raise ValueError("frames must be a non-empty uint8 [T, H, W, 3] array or a sequence of images")
    if len(out) != track.num_frames:
        raise ValueError(f"{len(out)} frames but the pose track has {track.num_frames}: pass the track "
                         "measured on these frames")
    return out


def pick_pseudo_references(frames: np.ndarray | Sequence[np.ndarray], track: PoseTrack, reference: ReferenceSet,
                           k: int = 4, identity_threshold: float | None = None, embeddings=None,
                           reference_embedding=None, person_masks=None) -> PseudoReferencePick:
    """Up to ``k`` driving frames, as different as possible from the reference and each other.

    ``embeddings`` [T, D] with ``reference_embedding`` [D] select the cosine identity measure
    (default threshold 0.8); otherwise the hue-saturation histogram of the person region (default
    threshold 0.5), with person masks from MediaPipe selfie segmentation unless ``person_masks``
    ({frame: [H, W]} or [T, H, W]) is given. Frames without a body or below the threshold are
    skipped and listed in ``report``; fewer than ``k`` picks come back when fewer frames pass.
    """
    if k < 1:
        raise ValueError(f"k={k}: ask for at least one pseudo-reference")
    track.validate()
    frames = _as_frames(frames, track)
    desc, has_body = _descriptors(track)
    candidates = np.flatnonzero(has_body)
    scores, measure = identity_scores(frames, track, reference, candidates, embeddings,
                                      reference_embedding, person_masks)
    threshold = DEFAULT_THRESHOLD[measure] if identity_threshold is None else float(identity_threshold)
    passed = candidates[scores[candidates] >= threshold]
    report = {"measure": measure, "threshold": threshold, "no_body": np.flatnonzero(~has_body).tolist(),
              "rejected_identity": {int(i): round(float(scores[i]), 4) for i in candidates
                                    if scores[i] < threshold}}

    ref_desc, _ = _descriptors(reference.track)
    views = view_classes(track)
    covered = {str(view_classes(reference.track)[0])}
    nearest = np.linalg.norm(desc - ref_desc[0], axis=1)  # distance to the reference and the picks so far
    picked, diversity = [], []
    pool = list(passed)
    while pool and len(picked) < k:
        bonus = np.array([1.0 + VIEW_BONUS * (views[i] not in covered) for i in pool])
        best = pool[int(np.argmax(nearest[pool] * bonus))]
        picked.append(int(best))
        diversity.append(float(nearest[best]))
        covered.add(str(views[best]))
        nearest = np.minimum(nearest, np.linalg.norm(desc - desc[best], axis=1))
        pool.remove(best)
    report["views"] = {i: str(views[i]) for i in picked}
    if len(picked) < k:
        report["warning"] = (f"only {len(picked)} of {len(frames)} frames show a body and pass the identity "
                             f"check ({measure} >= {threshold}); returning {len(picked)} instead of {k}")
    return PseudoReferencePick(indices=picked, frames=frames[picked].copy(),
                               diversity_scores=np.array(diversity, np.float32),
                               identity_scores=scores[picked].astype(np.float32), report=report)


def frame_like_reference(pick: PseudoReferencePick, track: PoseTrack, reference: ReferenceSet,
                         margin: float = 0.08) -> list[np.ndarray]:
    """The picked frames cropped around the person at the reference's size and framing, ready
    for ``ReferenceSet.pseudo_references``."""
    out_h, out_w = reference.size
    sy, sx = pick.frames.shape[1] / track.image_size[0], pick.frames.shape[2] / track.image_size[1]
    framed = []
    for frame, index in zip(pick.frames, pick.indices):
        box = person_box(track, index) * (sx, sy, sx, sy)
        box = np.clip(box, 0, [frame.shape[1], frame.shape[0], frame.shape[1], frame.shape[0]])
        framed.append(crop_resize(frame, frame_box(box, out_w / out_h, margin), (out_h, out_w)))
    return framed
