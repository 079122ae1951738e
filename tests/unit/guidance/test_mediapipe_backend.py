import numpy as np
import pytest

from dreamactor_core.guidance.mediapipe_backend import MediaPipeTracker, NoPersonError
from dreamactor_core.guidance.topology import J
from tests.real_media import astronaut, driver_frames


@pytest.fixture(scope="module")
def still_tracker():
    with MediaPipeTracker(static_image_mode=True) as tracker:
        yield tracker


def test_astronaut_body_face_and_3d(still_tracker):
    track = still_tracker.track([astronaut()])
    assert track.num_frames == 1 and track.image_size == (512, 512)
    nose, neck = track.body_2d[0, J["nose"]], track.body_2d[0, J["neck"]]
    # The astronaut's face is in the upper middle of the photo, her shoulders below it.
    assert 180 < nose[0] < 270 and 90 < nose[1] < 170
    assert neck[1] > nose[1] + 60
    assert track.body_conf[0, [J["nose"], J["r_shoulder"], J["l_shoulder"]]].min() > 0.9
    # Her left shoulder is on the image's right (she faces the camera).
    assert track.body_2d[0, J["l_shoulder"], 0] > track.body_2d[0, J["r_shoulder"], 0]
    # Face landmarks cover the face around the nose.
    assert track.face_conf[0] == 1
    face = track.face_2d[0]
    assert face.shape == (468, 2)
    assert face[:, 0].min() < nose[0] < face[:, 0].max() and face[:, 1].min() < nose[1] < face[:, 1].max()
    # World coordinates: metres, pelvis-centred, y down (the head is above the pelvis).
    assert track.body_3d[0, J["nose"], 1] < -0.3
    shoulder_width = np.linalg.norm(track.body_3d[0, J["r_shoulder"]] - track.body_3d[0, J["l_shoulder"]])
    assert 0.2 < shoulder_width < 0.6


def test_video_tracking_follows_the_person():
    frames = driver_frames()
    with MediaPipeTracker() as tracker:
        calls = []
        track = tracker.track(frames, fps=25, on_frame=calls.append)
    assert calls == list(range(len(frames)))
    assert track.num_frames == len(frames) and track.fps == 25
    assert track.report["frames_without_person"] == []
    assert (track.face_conf > 0).mean() >= 0.95
    # The clip rolls the photo from -12 to +12 degrees: the eye line's angle follows it.
    eyes = track.body_2d[:, J["l_eye"]] - track.body_2d[:, J["r_eye"]]
    angle = np.degrees(np.arctan2(eyes[:, 1], eyes[:, 0]))
    assert angle[-1] - angle[0] < -15  # image rotated counter-clockwise -> eye line tilts up


def test_cancel_stops_within_one_frame():
    frames = driver_frames()[:10]
    seen = []

    def on_frame(i):
        seen.append(i)
        if i == 2:
            raise KeyboardInterrupt

    with MediaPipeTracker() as tracker, pytest.raises(KeyboardInterrupt):
        tracker.track(frames, on_frame=on_frame)
    assert seen == [0, 1, 2]


def test_no_person_is_a_clear_error(still_tracker):
    blank = np.full((128, 128, 3), 127, np.uint8)
    with pytest.raises(NoPersonError, match="no person was found in any of the 2 frame"):
        still_tracker.track([blank, blank])


@pytest.mark.parametrize("convert", ["rgba", "grey", "float", "small"])
def test_odd_images_are_handled(still_tracker, convert):
    img = astronaut()
    if convert == "rgba":
        img = np.concatenate([img, np.full(img.shape[:2] + (1,), 255, np.uint8)], axis=2)
    elif convert == "grey":
        img = img.mean(axis=2).astype(np.uint8)
    elif convert == "float":
        img = img.astype(np.float32) / 255
    elif convert == "small":
        img = img[::8, ::8]  # 64x64
    track = still_tracker.track([img])
    assert track.body_conf[0, J["nose"]] > 0.5
    h = img.shape[0]
    assert 0.3 * h < track.body_2d[0, J["nose"], 0] < 0.6 * h


def test_bad_input_messages(still_tracker):
    with pytest.raises(ValueError, match="empty"):
        still_tracker.track([])
    with pytest.raises(ValueError, match="all frames of a video must share one size"):
        still_tracker.track([astronaut(), astronaut()[:256]])
    with pytest.raises(ValueError, match="expected \\[H, W, C\\]"):
        still_tracker.track([np.zeros((32, 32, 2), np.uint8)])
    with pytest.raises(ValueError, match="at least 16 px"):
        still_tracker.track([np.zeros((8, 8, 3), np.uint8)])
    with pytest.raises(ValueError, match="pose_landmark_heavy.tflite .* never downloaded"):
        MediaPipeTracker(model_complexity=2)
