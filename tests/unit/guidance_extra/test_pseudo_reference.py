"""Pseudo-reference picking on the real clips, plus the descriptor / view / identity pieces."""

import functools
import itertools

import av
import cv2
import numpy as np
import pytest
from skimage import data

from dreamactor_core.guidance.filtering import smooth_track
from dreamactor_core.guidance.head_pose import estimate_head_pose
from dreamactor_core.guidance.mediapipe_backend import MediaPipeTracker
from dreamactor_core.guidance.pose_track import PoseTrack
from dreamactor_core.guidance.pseudo_reference import (
    _descriptors, frame_like_reference, pick_pseudo_references, pose_descriptors, view_classes)
from dreamactor_core.guidance.reference import prepare_reference
from dreamactor_core.guidance.topology import J
from make_head_turn import OUT as HEAD_TURN
from tests.real_media import astronaut, driver_frames


def _head_turn_frames():
    with av.open(str(HEAD_TURN)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


@pytest.fixture(scope="module")
def reference():
    return prepare_reference(astronaut(), (384, 288))


@functools.lru_cache(maxsize=None)
def _tracked(name):
    frames = driver_frames() if name == "driver_astronaut" else _head_turn_frames()
    with MediaPipeTracker() as tracker:
        track = estimate_head_pose(smooth_track(tracker.track(frames, fps=25)))
    return name, frames, track


@pytest.fixture(params=["driver_astronaut", "driver_head_turn"])
def clip(request):
    return _tracked(request.param)


def _mean_pairwise(desc, idx):
    return np.mean([np.linalg.norm(desc[a] - desc[b]) for a, b in itertools.combinations(idx, 2)])


def test_picks_are_distinct_and_more_diverse_than_random(clip, reference):
    name, frames, track = clip
    pick = pick_pseudo_references(frames, track, reference, k=4)
    assert len(pick.indices) == 4 and len(set(pick.indices)) == 4
    assert pick.frames.shape == (4, *frames.shape[1:]) and pick.frames.dtype == np.uint8
    np.testing.assert_array_equal(pick.frames[1], frames[pick.indices[1]])
    assert (pick.identity_scores >= pick.report["threshold"]).all()
    # Farthest-point sampling: each pick is no closer to the set than the one before.
    assert (np.diff(pick.diversity_scores) <= 1e-6).all() and pick.diversity_scores[-1] > 0
    framed = frame_like_reference(pick, track, reference)
    assert len(framed) == 4 and all(f.shape == reference.image.shape for f in framed)
    desc, _ = _descriptors(track)
    rng = np.random.default_rng(0)
    random_spread = np.mean([_mean_pairwise(desc, rng.choice(len(frames), 4, replace=False)) for _ in range(200)])
    assert _mean_pairwise(desc, pick.indices) > 1.1 * random_spread


def test_head_turn_picks_the_turned_views(reference):
    name, frames, track = _tracked("driver_head_turn")
    pick = pick_pseudo_references(frames, track, reference, k=2)
    # The reference faces the camera: the two picks are the two ends of the sweep.
    first, last = sorted(pick.indices)
    assert first <= 3 and last >= len(frames) - 4
    assert np.ptp(track.head_rotation[pick.indices, 0]) > 0.8 * np.ptp(track.head_rotation[:, 0])


def test_identity_filter_rejects_other_images(clip, reference):
    name, frames, track = clip
    frames = frames.copy()
    size = frames.shape[2:0:-1]
    # Pixels swapped behind the tracker's back: the track still claims a person there.
    frames[5] = cv2.resize(data.chelsea(), size)
    frames[12] = 255 - frames[12]
    frames[20] = cv2.resize(data.coffee(), size)
    pick = pick_pseudo_references(frames, track, reference, k=8)
    rejected = pick.report["rejected_identity"]
    assert set(rejected) == {5, 12, 20}, rejected
    assert not {5, 12, 20} & set(pick.indices)
    assert pick.report["measure"] == "hsv-histogram"


def test_embedding_identity_and_too_few_frames(clip, reference):
    name, frames, track = clip
    rng = np.random.default_rng(1)
    ref_emb = rng.normal(size=16)
    emb = np.tile(ref_emb, (len(frames), 1)) + 0.05 * rng.normal(size=(len(frames), 16))
    emb[3:] = rng.normal(size=(len(frames) - 3, 16))  # only frames 0..2 are "her"
    pick = pick_pseudo_references(list(frames), track, reference, k=4, embeddings=emb, reference_embedding=ref_emb)
    assert sorted(pick.indices) == [0, 1, 2]
    assert "only 3" in pick.report["warning"]
    assert pick.report["measure"] == "embedding" and (pick.identity_scores > 0.9).all()
    with pytest.raises(ValueError, match="reference_embedding"):
        pick_pseudo_references(frames, track, reference, embeddings=emb)
    with pytest.raises(ValueError, match="pose track has"):
        pick_pseudo_references(frames[:3], track, reference)


def _track(body_2d, conf=1.0, yaw=0.0, face=1.0):
    t = PoseTrack.empty(len(body_2d), (200, 200), 25)
    t.body_2d[:] = body_2d
    t.body_conf[:] = conf
    t.face_conf = np.full(len(body_2d), face, np.float32)
    t.head_rotation = np.zeros((len(body_2d), 3), np.float32)
    t.head_rotation[:, 0] = yaw
    return t


def _skeleton():
    pts = np.zeros((21, 2), np.float32)
    pts[J["r_shoulder"]], pts[J["l_shoulder"]] = (80, 60), (120, 60)
    pts[J["r_hip"]], pts[J["l_hip"]] = (85, 120), (115, 120)
    pts[J["nose"]], pts[J["r_wrist"]] = (100, 40), (70, 140)
    return pts


def test_descriptor_ignores_framing_and_sees_pose():
    base = _skeleton()
    moved = base * 1.7 + (30, -12)
    raised = base.copy()
    raised[J["r_wrist"]] = (60, 20)
    desc, ok = pose_descriptors(np.stack([base, moved, raised]), np.ones((3, 21)))
    assert ok.all()
    np.testing.assert_allclose(desc[0], desc[1], atol=1e-5)
    assert np.linalg.norm(desc[2] - desc[0]) > 0.5


def test_view_classes():
    front = _skeleton()
    back = front.copy()
    back[[J["r_shoulder"], J["l_shoulder"]]] = back[[J["l_shoulder"], J["r_shoulder"]]]
    track = _track(np.stack([front, front, back, front]), yaw=np.array([5, 60, 0, 0]),
                   face=np.array([1, 1, 1, 0]))
    track.body_conf[3] = 0  # nothing at all in the last frame
    assert list(view_classes(track)) == ["frontal", "profile", "back", "none"]
