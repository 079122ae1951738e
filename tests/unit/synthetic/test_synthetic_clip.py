"""Synthetic clips: determinism, layout, and ground truth that matches the pixels."""

from dataclasses import replace

import numpy as np
import pytest

from dreamactor_core.guidance.topology import J, NUM_BODY
from dreamactor_core.synthetic import make_clip, render_driver, render_reference, sample_character
from dreamactor_core.synthetic.character import STREAM_MOTION, rng_for
from dreamactor_core.synthetic.clip import render_motion
from dreamactor_core.synthetic.motion import sample_motion
from dreamactor_core.synthetic.render import FaceParams

LIMB_JOINTS = [J[n] for n in ("neck", "pelvis", "r_shoulder", "r_elbow", "r_wrist", "l_shoulder",
                              "l_elbow", "l_wrist", "r_hip", "r_knee", "r_ankle", "l_hip", "l_knee",
                              "l_ankle", "r_foot", "l_foot")]


@pytest.fixture(scope="module")
def clip():
    return make_clip(4, 12, size=(48, 40), fps=25.0, with_audio=True)


def test_shapes_and_dtypes(clip):
    t = 12
    assert clip.frames.shape == (t, 48, 40, 3) and clip.frames.dtype == np.uint8
    assert clip.masks.shape == (t, 48, 40) and clip.masks.dtype == np.float32
    assert 0.0 <= clip.masks.min() and clip.masks.max() <= 1.0
    track = clip.track.validate()
    assert track.image_size == (48, 40) and track.fps == 25.0 and track.source == "synthetic"
    assert track.body_2d.shape == (t, NUM_BODY, 2) and track.hands_3d.shape == (t, 2, 21, 3)
    assert track.head_rotation.shape == (t, 3) and track.head_radius.shape == (t,)
    np.testing.assert_array_equal(track.head_conf, 1.0)
    for key in ("blink", "mouth_open", "mouth_width"):
        assert clip.face[key].shape == (t,) and clip.face[key].dtype == np.float32
    wave = clip.audio["waveform"]
    assert tuple(wave.shape) == (1, 1, round(t / 25.0 * 16000)) and clip.audio["sample_rate"] == 16000
    assert str(wave.dtype) == "torch.float32" and float(wave.abs().max()) <= 1.0


def test_same_seed_gives_identical_bytes_and_audio_changes_no_frame(clip):
    again = make_clip(4, 12, size=(48, 40), fps=25.0, with_audio=True)
    assert again.frames.tobytes() == clip.frames.tobytes()
    assert again.masks.tobytes() == clip.masks.tobytes()
    assert again.track.body_2d.tobytes() == clip.track.body_2d.tobytes()
    assert again.audio["waveform"].numpy().tobytes() == clip.audio["waveform"].numpy().tobytes()
    silent = make_clip(4, 12, size=(48, 40), fps=25.0, with_audio=False)
    assert silent.audio is None and silent.frames.tobytes() == clip.frames.tobytes()


def test_different_seeds_give_different_characters():
    specs = [sample_character(s) for s in range(20)]
    assert len({(s.top_color, s.skin, s.hair_style, s.background_colors) for s in specs}) == 20
    assert len({s.top_pattern for s in specs}) >= 3 and len({s.hair_style for s in specs}) >= 3
    a, b = make_clip(1, 2, (32, 32), with_audio=False), make_clip(2, 2, (32, 32), with_audio=False)
    assert np.abs(a.frames.astype(int) - b.frames.astype(int)).mean() > 10


@pytest.mark.parametrize("seed, framing", [(0, "full"), (3, "full"), (9, "full"), (2, "upper")])
def test_confident_limb_joints_land_on_the_drawn_body(seed, framing):
    clip = make_clip(seed, 16, size=(96, 96), with_audio=False, framing=framing)
    track = clip.track
    if framing == "upper":  # the legs leave the picture and say so
        assert track.body_conf[:, [J["r_ankle"], J["l_ankle"], J["r_foot"], J["l_foot"]]].max() == 0
        assert track.head_radius.mean() > 1.5 * make_clip(seed, 1, (96, 96), with_audio=False).track.head_radius[0]
    checked = 0
    for t in range(clip.num_frames):
        for j in LIMB_JOINTS:
            if track.body_conf[t, j] < 1:
                continue
            x, y = np.round(track.body_2d[t, j]).astype(int)
            assert clip.masks[t, y, x] > 0.5, f"frame {t} joint {j} at {(x, y)}"
            checked += 1
    assert checked > (0.8 if framing == "full" else 0.5) * clip.num_frames * len(LIMB_JOINTS)


def _head_pose(seed, yaw, blink=0.0, mouth=0.0, size=256):
    """One frame of ``seed`` (green irises, bald, light skin) with the head at ``yaw`` and arms down ->
    (image [H, W, 3] int, head-disc mask [H, W], green-iris mask [H, W], track)."""
    spec = replace(sample_character(seed), eye_color=(0, 255, 0), hair_style="bald",
                   skin=(235, 195, 165), lip_color=(190, 70, 80))
    motion = sample_motion(rng_for(seed, STREAM_MOTION), 1, 25.0)
    pose = motion.pose
    pose.head_yaw, pose.head_pitch, pose.head_roll = np.array([yaw]), np.zeros(1), np.zeros(1)
    pose.shoulder_abduction = np.full((1, 2), 10.0)  # arms down, clear of the face
    pose.shoulder_flexion, pose.arm_twist, pose.elbow = (np.zeros((1, 2)) for _ in range(3))
    face = FaceParams(np.full(1, blink, np.float32), np.full(1, mouth, np.float32),
                      np.full(1, 0.5, np.float32))
    frames, _, track, _ = render_motion(spec, motion, face, (size, size))
    cx, cy = track.head_center[0]
    r = track.head_radius[0]
    img = frames[0].astype(int)
    ys, xs = np.mgrid[0:size, 0:size]
    in_head = (xs - cx) ** 2 + (ys - cy) ** 2 < (0.95 * r) ** 2
    green = in_head & (img[..., 1] > 120) & (img[..., 0] < 90) & (img[..., 2] < 90)
    return img, in_head, green, track


@pytest.mark.parametrize("seed", [1, 6])
def test_head_yaw_sign_matches_the_drawn_face(seed):
    for yaw in (-45.0, 45.0):
        _, _, green, track = _head_pose(seed, yaw)
        cx, r = track.head_center[0, 0], track.head_radius[0]
        assert green.sum() > 4
        offset = (np.nonzero(green)[1].mean() - cx) / r
        assert np.sign(offset) == np.sign(yaw) and abs(offset) > 0.2, (yaw, offset)
        assert np.sign(track.head_rotation[0, 0]) == np.sign(yaw)
        eyes = track.body_2d[0, [J["r_eye"], J["l_eye"], J["nose"]], 0].mean()
        assert np.sign(eyes - cx) == np.sign(yaw)


def test_far_eye_hides_at_large_yaw():
    frontal = _head_pose(2, 0.0)[2]
    _, _, turned, track = _head_pose(2, 70.0)
    assert turned.sum() < 0.65 * frontal.sum()
    assert track.body_conf[0, J["l_eye"]] == 0 and track.body_conf[0, J["r_eye"]] == 1


def test_blink_closes_the_eyes_and_mouth_opening_shows_the_mouth():
    assert _head_pose(4, 0.0)[2].sum() > 20
    assert _head_pose(4, 0.0, blink=1.0)[2].sum() == 0

    def mouth_pixels(mouth):  # dark pixels in the lower half of the head
        img, in_head, _, track = _head_pose(4, 0.0, mouth=mouth)
        lower = np.arange(img.shape[0])[:, None] > track.head_center[0, 1]
        return int((in_head & lower & (img.sum(-1) < 200)).sum())

    closed, opened = mouth_pixels(0.0), mouth_pixels(1.0)
    assert closed > 0 and opened > 2 * closed, (closed, opened)


def test_reference_is_same_character_in_an_independent_pose():
    clip = make_clip(5, 25, (64, 64), with_audio=False)
    ref = render_reference(5, (64, 64), pose_seed=0)
    other = render_reference(5, (64, 64), pose_seed=1)
    assert ref.spec == clip.spec and ref.frames.shape == (1, 64, 64, 3)
    assert ref.frames.tobytes() == render_reference(5, (64, 64), pose_seed=0).frames.tobytes()
    assert ref.frames.tobytes() != other.frames.tobytes()
    nearest = np.abs(clip.track.body_3d - ref.track.body_3d).max(axis=(1, 2)).min()
    assert nearest > 0.05  # not a frame of the clip


def test_driver_acts_the_clip_with_another_face():
    clip = make_clip(5, 9, (64, 64), with_audio=False)
    same, same_track = render_driver(5, clip, 5)
    assert same.tobytes() == clip.frames.tobytes()  # its own character: the clip itself
    frames, track = render_driver(5, clip, 11)
    again, _ = render_driver(5, clip, 11)
    assert frames.tobytes() == again.tobytes() and frames.shape == clip.frames.shape
    # the same head turns (the motion's joint angles), on another character's head
    np.testing.assert_allclose(track.head_rotation, clip.track.head_rotation, atol=1e-5)
    assert sample_character(11) != clip.spec

    def head_colour(video, trk):
        yy, xx = np.mgrid[:64, :64]
        out = []
        for i in range(len(video)):
            (cx, cy), r = trk.head_center[i], trk.head_radius[i]
            out.append(video[i][(xx - cx) ** 2 + (yy - cy) ** 2 <= (0.6 * r) ** 2].mean(0))
        return np.mean(out, 0)

    assert np.abs(head_colour(frames, track) - head_colour(clip.frames, clip.track)).max() > 10


@pytest.mark.parametrize("size", [(16, 16), (40, 72), (130, 50)])
def test_any_size_renders(size):
    c = make_clip(8, 2, size, with_audio=False, supersample=1)
    assert c.frames.shape == (2, *size, 3) and c.masks.max() > 0.5


def test_bad_arguments_raise_value_errors():
    with pytest.raises(ValueError, match="size"):
        make_clip(0, 2, (8, 8))
    with pytest.raises(ValueError, match="size"):
        make_clip(0, 2, "big")
    with pytest.raises(ValueError, match="num_frames"):
        make_clip(0, 0)
    with pytest.raises(ValueError, match="fps"):
        make_clip(0, 2, fps=0)
    with pytest.raises(ValueError, match="seed"):
        make_clip(-3, 2)
    with pytest.raises(ValueError, match="framing"):
        make_clip(0, 2, framing="closeup")
    with pytest.raises(ValueError, match="supersample"):
        make_clip(0, 2, supersample=0)
