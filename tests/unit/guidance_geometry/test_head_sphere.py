import itertools

import numpy as np
import pytest

from dreamactor_core.guidance.head_pose import euler_to_matrix, matrix_to_euler
from dreamactor_core.guidance.head_sphere import read_orientation, render_head_spheres, render_sphere
from dreamactor_core.guidance.pose_track import PoseTrack


def test_euler_signs_follow_pose_track_convention():
    forward, up = np.array([0, 0, -1.0]), np.array([0, -1.0, 0])  # camera: x right, y down
    assert (euler_to_matrix([30, 0, 0]) @ forward)[0] > 0.4  # yaw > 0 faces the image's right
    assert (euler_to_matrix([0, 30, 0]) @ forward)[1] < -0.4  # pitch > 0 looks up
    assert (euler_to_matrix([0, 0, 30]) @ up)[0] > 0.4  # roll > 0: top of head moves clockwise


def test_euler_round_trip():
    angles = np.random.default_rng(0).uniform([-170, -85, -170], [170, 85, 170], (500, 3))
    rot = euler_to_matrix(angles)
    np.testing.assert_allclose(rot @ np.swapaxes(rot, -1, -2), np.broadcast_to(np.eye(3), rot.shape), atol=1e-12)
    np.testing.assert_allclose(matrix_to_euler(rot), angles, atol=1e-9)


@pytest.mark.parametrize("given_geometry", [True, False])
def test_orientation_reads_back_over_a_grid(given_geometry):
    centre, radius = (61.3, 58.6), 40.0
    worst = 0.0
    for ypr in itertools.product(np.linspace(-80, 80, 5), np.linspace(-45, 45, 4), np.linspace(-45, 45, 4)):
        img = render_sphere(ypr, centre, radius, (128, 128))
        got = read_orientation(img, centre, radius) if given_geometry else read_orientation(img)
        worst = max(worst, np.abs(np.array(got) - ypr).max())
    assert worst < 5.0


def test_sphere_colours_are_a_normal_map():
    img = render_sphere((0, 0, 0), (50, 50), 30, (100, 100)).astype(int)
    # Facing the camera, the centre's normal is -z in the head frame: colour (128, 128, 0).
    assert np.abs(img[50, 50] - [128, 128, 0]).max() <= 1
    assert img[50, 78, 0] > 230 and img[50, 22, 0] < 25  # image right = head +x = red
    assert img[0, 0].sum() == 0 and img[50, 85].sum() == 0  # background stays black


def make_head_track(t=3):
    track = PoseTrack.empty(t, (200, 100), 25.0)
    track.head_rotation = np.array([[0, 0, 0], [30, 10, -5], [-20, 0, 15]], np.float32)[:t]
    track.head_center = np.array([[50, 60], [40, 70], [60, 80]], np.float32)[:t]
    track.head_radius = np.array([20, 20, 0], np.float32)[:t]
    track.head_conf = np.ones(t, np.float32)
    return track


def test_render_head_spheres_scales_to_output_and_reference_radius():
    track = make_head_track()
    maps = render_head_spheres(track, (400, 200))
    assert maps.shape == (3, 400, 200, 3) and maps.dtype == np.uint8
    assert maps[2].max() == 0  # radius 0: no head
    lit = maps[0].sum(-1) > 80
    ys, xs = np.nonzero(lit)
    assert xs.mean() == pytest.approx(100, abs=0.5) and ys.mean() == pytest.approx(120, abs=0.5)
    assert np.sqrt(lit.sum() / np.pi) == pytest.approx(40, rel=0.03)
    yaw, pitch, roll = read_orientation(maps[1])
    assert np.allclose((yaw, pitch, roll), (30, 10, -5), atol=2)
    bigger = render_head_spheres(track, (200, 100), reference_radius=30.0)
    assert np.sqrt((bigger[0].sum(-1) > 80).sum() / np.pi) == pytest.approx(30, rel=0.03)


def test_render_head_spheres_needs_head_pose():
    with pytest.raises(ValueError, match="estimate_head_pose"):
        render_head_spheres(PoseTrack.empty(2, (64, 64), 25.0), (64, 64))
    with pytest.raises(ValueError, match="black"):
        read_orientation(np.zeros((32, 32, 3), np.uint8))


def test_reference_radius_accepts_a_track_array_and_ignores_zero():
    track = make_head_track()
    as_array = render_head_spheres(track, (200, 100), reference_radius=np.array([30.0], np.float32))
    np.testing.assert_array_equal(as_array, render_head_spheres(track, (200, 100), reference_radius=30.0))
    np.testing.assert_array_equal(render_head_spheres(track, (200, 100), reference_radius=np.zeros(1)),
                                  render_head_spheres(track, (200, 100)))
