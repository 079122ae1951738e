import numpy as np
import pytest

from dreamactor_core.guidance.face_align import MESH_POINTS, face_crops, face_template
from dreamactor_core.guidance.pose_track import PoseTrack
from dreamactor_core.guidance.topology import J

FRAME = (240, 320)
ZOOM, ANGLE, SHIFT = 0.6, np.deg2rad(25.0), np.array([150.0, 90.0])


def face_in_frame():
    """The five template points placed in the frame by a known similarity (crop -> frame)."""
    z = ZOOM * np.exp(1j * ANGLE)
    tpl = face_template(224)
    pts = z * (tpl[:, 0] + 1j * tpl[:, 1]) + SHIFT[0] + 1j * SHIFT[1]
    return np.stack([pts.real, pts.imag], -1)  # [5, 2]


def blob_frame(points):
    """Gaussian blobs: nose in red, image-right eye in green, image-left mouth corner in blue."""
    ys, xs = np.mgrid[0:FRAME[0], 0:FRAME[1]]
    frame = np.zeros(FRAME + (3,))
    for channel, k in enumerate((2, 1, 3)):
        frame[..., channel] = np.exp(-((xs - points[k, 0]) ** 2 + (ys - points[k, 1]) ** 2) / (2 * 2.0 ** 2))
    return frame


def mesh_track(points, t=3):
    track = PoseTrack.empty(t, FRAME, 25.0)
    track.face_2d = np.zeros((t, 468, 2), np.float32)
    track.face_conf = np.ones(t, np.float32)
    for k, ids in enumerate(MESH_POINTS):
        track.face_2d[:, list(ids)] = points[k]
    return track


def test_crop_puts_landmarks_on_the_template():
    points = face_in_frame()
    frames = np.repeat(blob_frame(points)[None], 3, 0).astype(np.float32)
    crops, transforms, report = face_crops(frames, mesh_track(points))
    assert crops.shape == (3, 224, 224, 3) and crops.dtype == np.float32
    tpl = face_template(224)
    mapped = points @ transforms[0, :, :2].T + transforms[0, :, 2]
    np.testing.assert_allclose(mapped, tpl, atol=1.0)
    ys, xs = np.mgrid[0:224, 0:224]
    for channel, k in enumerate((2, 1, 3)):
        w = crops[0, ..., channel] ** 4  # sharpen: ignore the faint tails of other blobs
        centroid = np.array([(w * xs).sum(), (w * ys).sum()]) / w.sum()
        np.testing.assert_allclose(centroid, tpl[k], atol=1.0)
    assert report["reused_frames"] == [] and report["mesh_frames"] == 3


def test_frames_without_face_reuse_the_neighbouring_transform():
    points = face_in_frame()
    track = mesh_track(points, t=4)
    track.face_conf[1:3] = 0.0
    frames = (np.repeat(blob_frame(points)[None], 4, 0) * 255).astype(np.uint8)
    crops, transforms, report = face_crops(frames, track, smooth=False)
    assert report["reused_frames"] == [1, 2] and crops.dtype == np.uint8
    np.testing.assert_allclose(transforms[1], transforms[0], atol=1e-4)
    np.testing.assert_array_equal(crops[2], crops[3])


def test_body_keypoints_fallback_and_resized_frames():
    points = face_in_frame()
    track = PoseTrack.empty(2, (FRAME[0] // 2, FRAME[1] // 2), 25.0)  # measured at half size
    for k, joint in enumerate(("r_eye", "l_eye", "nose")):
        track.body_2d[:, J[joint]] = points[k] / 2
        track.body_conf[:, J[joint]] = 1.0
    frames = np.zeros((2,) + FRAME + (3,), np.uint8)
    _, transforms, _ = face_crops(frames, track)
    mapped = points[:3] @ transforms[0, :, :2].T + transforms[0, :, 2]
    np.testing.assert_allclose(mapped, face_template(224)[:3], atol=1.0)


def test_jittery_landmarks_give_steadier_transforms():
    rng = np.random.default_rng(0)
    points = face_in_frame()
    track = mesh_track(points, t=60)
    track.face_2d += rng.normal(0, 1.5, (60, 1, 2)).astype(np.float32)
    frames = np.zeros((60,) + FRAME + (3,), np.uint8)
    _, raw, _ = face_crops(frames, track, smooth=False)
    _, smooth, _ = face_crops(frames, track)
    assert smooth[10:, :, 2].std(0).mean() < 0.7 * raw[10:, :, 2].std(0).mean()


def test_bad_inputs():
    points = face_in_frame()
    with pytest.raises(ValueError, match="frames must be"):
        face_crops(np.zeros((3, 10, 10)), mesh_track(points))
    with pytest.raises(ValueError, match="pose track has"):
        face_crops(np.zeros((2,) + FRAME + (3,)), mesh_track(points))
    with pytest.raises(ValueError, match="no frame has face"):
        face_crops(np.zeros((2,) + FRAME + (3,)), PoseTrack.empty(2, FRAME, 25.0))
