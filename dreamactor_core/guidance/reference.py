"""Preparing the reference image: find the person, frame them at the model's aspect ratio, and
measure what the rest of the guidance needs from the reference (skeleton, head size, face)."""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from .head_pose import estimate_head_pose
from .image_io import to_rgb_uint8
from .mediapipe_backend import MediaPipeTracker, NoPersonError
from .pose_track import PoseTrack

PERSON_CONF = 0.3


@dataclass
class ReferenceSet:
    """The reference person as every downstream stage sees it."""

    image: np.ndarray  # uint8 [H, W, 3], framed at the requested size
    mask: np.ndarray  # float32 [H, W] in 0..1, the person
    track: PoseTrack  # one frame: the reference skeleton, face and head
    crop_box: tuple[float, float, float, float]  # x0, y0, x1, y1 of the frame in the source image
    pseudo_references: list[np.ndarray] = field(default_factory=list)  # uint8 [H, W, 3] each
    report: dict = field(default_factory=dict)

    @property
    def size(self) -> tuple[int, int]:
        return self.image.shape[0], self.image.shape[1]

    @property
    def head_radius(self) -> float | None:
        r = self.track.head_radius
        return None if r is None or self.track.head_conf is None or self.track.head_conf[0] <= 0 else float(r[0])


def person_box(track: PoseTrack, frame: int = 0) -> np.ndarray:
    """Tight box [x0, y0, x1, y1] around the confident joints (body, hands, face) of one frame."""
    pts = [track.body_2d[frame][track.body_conf[frame] > PERSON_CONF]]
    pts.append(track.hands_2d[frame][track.hands_conf[frame] > 0].reshape(-1, 2))
    if track.face_2d is not None and track.face_conf[frame] > 0:
        pts.append(track.face_2d[frame])
    pts = np.concatenate(pts)
    if len(pts) == 0:
        raise NoPersonError("no confident joint in the frame")
    return np.concatenate([pts.min(axis=0), pts.max(axis=0)])


def frame_box(box: np.ndarray, aspect: float, margin: float) -> np.ndarray:
    """Expands ``box`` by ``margin`` (fraction of its size) and to width/height = ``aspect``,
    centred on the box; the result may extend past the image (padded later)."""
    x0, y0, x1, y1 = box
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    w, h = (x1 - x0) * (1 + 2 * margin), (y1 - y0) * (1 + 2 * margin)
    h = max(h, w / aspect, 16.0)
    w = h * aspect
    return np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])


def crop_resize(image: np.ndarray, box: np.ndarray, size: tuple[int, int],
                border_value=(0, 0, 0), interpolation=cv2.INTER_AREA) -> np.ndarray:
    """Crops ``box`` (may lie partly outside) and resizes it to ``size`` = (height, width)."""
    out_h, out_w = size
    x0, y0, x1, y1 = box
    sx, sy = out_w / (x1 - x0), out_h / (y1 - y0)
    m = np.array([[sx, 0, -x0 * sx], [0, sy, -y0 * sy]], np.float32)
    if interpolation == cv2.INTER_AREA and (sx > 1 or sy > 1):
        interpolation = cv2.INTER_CUBIC
    return cv2.warpAffine(image, m, (out_w, out_h), flags=interpolation,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=border_value)


def prepare_reference(image, size: tuple[int, int], mask=None, margin: float = 0.08,
                      background=(0, 0, 0), tracker: MediaPipeTracker | None = None) -> ReferenceSet:
    """Finds the person in ``image``, frames them at ``size`` = (height, width) and measures them.

    ``mask`` (optional, [H, W] in 0..1) marks the person; pixels outside it are replaced by
    ``background`` when given. Raises ValueError with a clear message when no person is found.
    """
    rgb = to_rgb_uint8(image, name="reference image")
    out_h, out_w = int(size[0]), int(size[1])
    if out_h < 16 or out_w < 16:
        raise ValueError(f"reference size {out_w}x{out_h} is too small: use at least 64 px per side")
    if mask is not None:
        mask = np.asarray(mask, np.float32)
        if mask.shape != rgb.shape[:2]:
            raise ValueError(
                f"reference mask is {mask.shape[1]}x{mask.shape[0]} but the image is "
                f"{rgb.shape[1]}x{rgb.shape[0]}: the mask must match the image size")
    own_tracker = tracker is None
    tracker = tracker or MediaPipeTracker(static_image_mode=True)
    try:
        try:
            source = tracker.track([rgb])
        except NoPersonError:
            raise NoPersonError(
                "no person was found in the reference image: use a photo where one person is "
                "clearly visible (at least head and shoulders)") from None
        tight = person_box(source)
        # Joints MediaPipe guesses outside the picture must not stretch the frame into padding.
        tight = np.clip(tight, 0, [rgb.shape[1], rgb.shape[0], rgb.shape[1], rgb.shape[0]])
        box = frame_box(tight, out_w / out_h, margin)
        framed = crop_resize(rgb, box, (out_h, out_w), border_value=tuple(int(c) for c in background))
        if mask is None:
            person = _segment_person(rgb)
        else:
            person = mask
        framed_mask = crop_resize(person, box, (out_h, out_w), border_value=0, interpolation=cv2.INTER_LINEAR)
        # Move the measured track into the framed image rather than detecting again: exact,
        # and immune to a detector that finds the person in one framing but not the other.
        x0, y0, x1, y1 = box
        sx, sy = out_w / (x1 - x0), out_h / (y1 - y0)
        track = estimate_head_pose(source.transformed((sx, sy), (-x0 * sx, -y0 * sy), (out_h, out_w)),
                                   smooth=False)
    finally:
        if own_tracker:
            tracker.close()
    report = {"source_size": rgb.shape[:2], "faces_found": int(track.face_conf[0] > 0)}
    if track.face_conf[0] == 0:
        report["warning"] = "no face found in the reference: face motion and the head sphere fall back to body keypoints"
    return ReferenceSet(image=framed, mask=np.clip(framed_mask, 0, 1).astype(np.float32), track=track,
                        crop_box=tuple(float(v) for v in box), report=report)


def _segment_person(rgb: np.ndarray) -> np.ndarray:
    """Person mask [H, W] in 0..1 from MediaPipe selfie segmentation (general model)."""
    import mediapipe as mp

    with mp.solutions.selfie_segmentation.SelfieSegmentation(model_selection=0) as seg:
        result = seg.process(rgb)
    return np.clip(result.segmentation_mask.astype(np.float32), 0, 1)
