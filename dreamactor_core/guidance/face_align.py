"""Aligned square face crops (224x224 by default) for the face-motion encoder.

Per frame, a similarity transform (rotation, uniform scale, translation) maps a few landmarks
(eye centres, nose tip, mouth corners from the 468-point face mesh; eyes + nose from the body
keypoints when the mesh is missing) onto a fixed template, the ArcFace 5-point layout widened by
``face_scale`` so forehead and chin stay in the crop. The transforms are smoothed over time
with a One-Euro filter on (crop centre x, crop centre y, log scale, angle), which unlike the raw
matrix entries do not couple rotation into translation. Frames without any face reuse the
nearest measured transform and are reported.
"""

from __future__ import annotations

import cv2
import numpy as np

from .filtering import one_euro
from .pose_track import PoseTrack
from .topology import J

# ArcFace template in a 112 crop: image-left eye (the subject's right), image-right eye, nose
# tip, image-left mouth corner, image-right mouth corner.
ARCFACE_112 = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                        [41.5493, 92.3655], [70.7299, 92.2041]], np.float64)
# Face-mesh landmarks averaged into each of the five template points.
MESH_POINTS = ((33, 133), (263, 362), (1,), (61,), (291,))
BODY_POINTS = (J["r_eye"], J["l_eye"], J["nose"])  # first three template points


def face_template(size: int = 224, face_scale: float = 0.8) -> np.ndarray:
    """The five template points [5, 2] in a ``size`` crop, shrunk by face_scale about the centre."""
    c = size / 2.0
    return c + face_scale * (ARCFACE_112 * (size / 112.0) - c)


def fit_similarity(src: np.ndarray, dst: np.ndarray, weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weighted least-squares similarity dst ~ z * src + t, vectorised over frames (Umeyama in 2D).

    src [T, K, 2], dst [K, 2], weight [T, K]. Points are complex numbers x + iy, so z encodes
    scale and rotation. Returns (z [T] complex, t [T] complex); frames with total weight < 2
    get z = 0.
    """
    s = src[..., 0] + 1j * src[..., 1]  # [T, K]
    d = dst[:, 0] + 1j * dst[:, 1]  # [K]
    wsum = weight.sum(1, keepdims=True)
    ws = weight / np.maximum(wsum, 1e-12)
    ms, md = (ws * s).sum(1), (ws * d[None]).sum(1)
    sc, dc = s - ms[:, None], d[None] - md[:, None]
    den = (weight * np.abs(sc) ** 2).sum(1)
    z = np.where((wsum[:, 0] >= 2) & (den > 1e-9), (weight * np.conj(sc) * dc).sum(1) / np.maximum(den, 1e-9), 0)
    return z, md - z * ms


def _landmarks(track: PoseTrack, scale: np.ndarray, threshold: float):
    """Per-frame source points [T, 5, 2] and weights [T, 5] in frame pixels."""
    t_len = track.num_frames
    pts = np.zeros((t_len, 5, 2))
    w = np.zeros((t_len, 5))
    conf = track.body_conf[:, list(BODY_POINTS)]
    body_ok = (conf >= threshold).all(1)
    pts[:, :3] = track.body_2d[:, list(BODY_POINTS)]
    w[body_ok, :3] = 1.0
    if track.face_2d is not None and track.face_2d.shape[1] >= 468:
        face_conf = track.face_conf if track.face_conf is not None else np.ones(t_len)
        mesh_ok = face_conf >= threshold
        mesh = np.stack([track.face_2d[:, list(ids)].mean(1) for ids in MESH_POINTS], 1)
        pts[mesh_ok] = mesh[mesh_ok]
        w[mesh_ok] = 1.0
    return pts * scale, w


def face_crops(frames: np.ndarray, track: PoseTrack, size: int = 224, face_scale: float = 0.8,
               threshold: float = 0.3, smooth: bool = True, min_cutoff: float = 1.0, beta: float = 0.3):
    """Aligned face crops of every frame.

    frames: uint8 or float [T, H, W, 3] (H, W may differ from track.image_size; landmarks are
    rescaled). Returns (crops [T, size, size, 3] in the input's dtype (float -> float32),
    transforms [T, 2, 3] frame -> crop for cv2.warpAffine, report) with report["reused_frames"]
    listing frames whose transform came from a neighbour.
    """
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"face_crops: frames must be [T, H, W, 3], got shape {frames.shape}")
    if len(frames) != track.num_frames:
        raise ValueError(f"face_crops: {len(frames)} frames but the pose track has {track.num_frames}; "
                         "pass the track measured on these frames")
    track.validate()
    h, w = frames.shape[1:3]
    scale = np.array([w / track.image_size[1], h / track.image_size[0]])
    src, weight = _landmarks(track, scale, threshold)
    z, t = fit_similarity(src, face_template(size, face_scale), weight)
    found = np.abs(z) > 0
    if not found.any():
        raise ValueError("face_crops: no frame has face landmarks or confident eyes + nose; "
                         "check the pose track (was the face visible?)")
    idx = np.arange(len(z))
    prev = np.maximum.accumulate(np.where(found, idx, -1))
    nxt = np.flip(np.minimum.accumulate(np.flip(np.where(found, idx, len(z)))))
    near = np.where((prev < 0) | ((nxt < len(z)) & (nxt - idx < idx - prev)), nxt, prev)
    z, t = z[near], t[near]

    centre = size / 2.0
    crop_centre = (centre - t) / z  # where the crop centre lies in the frame
    params = np.stack([crop_centre.real / h, crop_centre.imag / h, np.log(np.abs(z)),
                       np.unwrap(np.angle(z))], -1)  # [T, 4]
    if smooth and len(params) > 1:
        params = one_euro(params[:, :, None], track.fps, min_cutoff=min_cutoff, beta=beta)[:, :, 0]
    z = np.exp(params[:, 2] + 1j * params[:, 3])
    t = centre - z * (params[:, 0] + 1j * params[:, 1]) * h
    transforms = np.stack([np.stack([z.real, -z.imag, t.real], -1),
                           np.stack([z.imag, z.real, t.imag], -1)], 1)  # [T, 2, 3]

    src_frames = frames if frames.dtype == np.uint8 else frames.astype(np.float32)
    crops = np.stack([cv2.warpAffine(src_frames[i], transforms[i], (size, size), flags=cv2.INTER_LINEAR,
                                     borderMode=cv2.BORDER_CONSTANT) for i in range(len(frames))])
    report = {"reused_frames": np.flatnonzero(~found).tolist(),
              "mesh_frames": int(((weight[:, 3:] > 0).all(1)).sum())}
    return crops, transforms.astype(np.float32), report
