import numpy as np
import pytest

from dreamactor_core.guidance.skeleton_render import (
    BODY_BONE_COLORS, HAND_BONE_COLORS, line_widths, render_skeleton)
from dreamactor_core.guidance.topology import BODY_BONES, J

from .synthetic_pose import make_track, standing_3d

R_FOREARM = BODY_BONES.index((J["r_elbow"], J["r_wrist"]))


def standing_track(t=2, image_size=(512, 512)):
    return make_track(np.repeat(standing_3d()[None], t, 0), 250.0, (256, 230), image_size=image_size)


def colour_at(img, xy):
    return tuple(int(v) for v in img[int(round(xy[1])), int(round(xy[0]))])


def test_limbs_drawn_in_their_colours_at_scaled_positions():
    track = standing_track(image_size=(256, 256))
    track.hands_conf[:] = 0
    maps = render_skeleton(track, (512, 512))
    assert maps.shape == (2, 512, 512, 3) and maps.dtype == np.uint8
    mid = (track.body_2d[0, J["r_elbow"]] + track.body_2d[0, J["r_wrist"]]) / 2 * 2.0
    assert colour_at(maps[0], mid) == BODY_BONE_COLORS[R_FOREARM]
    assert maps[0, 0, 0].sum() == 0 and (maps[0] > 0).any(-1).mean() < 0.2
    np.testing.assert_array_equal(maps[0], maps[1])


def test_low_confidence_limbs_are_skipped():
    track = standing_track()
    track.hands_conf[:] = 0
    track.body_conf[:, J["r_wrist"]] = 0.1
    img = render_skeleton(track, (512, 512))[0]
    mid = (track.body_2d[0, J["r_elbow"]] + track.body_2d[0, J["r_wrist"]]) / 2
    assert colour_at(img, mid) == (0, 0, 0)


def test_nearer_limb_is_drawn_over_farther_one():
    track = standing_track(1)
    track.hands_conf[:] = 0
    # Put the right forearm across the torso; then move it behind the body.
    track.body_2d[0, J["r_elbow"]] = track.body_2d[0, J["pelvis"]] + (-40, -60)
    track.body_2d[0, J["r_wrist"]] = track.body_2d[0, J["pelvis"]] + (40, -60)
    spine_x = track.body_2d[0, J["pelvis"], 0]
    cross = (spine_x, track.body_2d[0, J["pelvis"], 1] - 60)
    track.body_3d[0, [J["r_elbow"], J["r_wrist"]], 2] = -0.3  # in front
    front = render_skeleton(track, (512, 512))[0]
    assert colour_at(front, cross) == BODY_BONE_COLORS[R_FOREARM]
    track.body_3d[0, [J["r_elbow"], J["r_wrist"]], 2] = 0.3  # behind
    behind = render_skeleton(track, (512, 512))[0]
    assert colour_at(behind, cross) == BODY_BONE_COLORS[BODY_BONES.index((J["pelvis"], J["neck"]))]


def test_hands_are_drawn_with_finger_colours():
    track = standing_track(1)
    wrist = track.hands_2d[:, :, :1]
    track.hands_2d[:] = wrist + 5.0 * (track.hands_2d - wrist)  # big enough to sample bone middles
    img = render_skeleton(track, (512, 512))[0]
    h = track.hands_2d[0, 0]
    colours = {colour_at(img, (h[2] + h[3]) / 2), colour_at(img, (h[14] + h[15]) / 2)}
    assert colours <= set(HAND_BONE_COLORS) and len(colours) == 2


def test_widths_scale_with_resolution_and_frames_subset():
    assert line_widths((1024, 1024))["body"] == 2 * line_widths((512, 512))["body"]
    track = standing_track(4)
    assert render_skeleton(track, (64, 48), frames=[1, 3]).shape == (2, 64, 48, 3)
    with pytest.raises(ValueError, match="frames"):
        render_skeleton(track, (64, 64), frames=[7])


def test_nan_coordinates_of_missing_joints_are_ignored():
    track = standing_track(1)
    track.body_2d[0, J["l_wrist"]] = np.nan
    track.body_conf[0, J["l_wrist"]] = 0.0
    track.hands_2d[0, 1] = np.nan
    track.hands_conf[0, 1] = 0.0
    img = render_skeleton(track, (128, 128))[0]
    assert img.any()
