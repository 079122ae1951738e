import numpy as np
import pytest

from dreamactor_core.guidance.filtering import fill_gaps, one_euro, smooth_track
from dreamactor_core.guidance.pose_track import PoseTrack


def test_fill_gaps_interpolates_short_gaps_and_reports_long_ones():
    t = np.arange(20, dtype=np.float64)
    values = np.stack([t, 2 * t], -1)[:, None, :].repeat(2, axis=1)  # [T, 2 points, 2]
    conf = np.ones((20, 2))
    conf[3:6, 0] = 0.0  # 3-frame gap: filled
    conf[8:16, 1] = 0.1  # 8-frame gap: too long
    conf[18:, 0] = 0.0  # touches the end: cannot interpolate
    noisy = values.copy()
    noisy[conf < 0.3] = -99.0
    out, out_conf, report = fill_gaps(noisy, conf, threshold=0.3, max_gap=5)
    np.testing.assert_allclose(out[3:6, 0], values[3:6, 0])
    assert (out_conf[3:6, 0] == 1.0).all()
    assert (out[8:16, 1] == -99).all() and (out_conf[8:16, 1] == 0.1).all()
    assert report["filled"] == [((0,), 3, 6)]
    assert sorted(report["missing"]) == [((0,), 18, 20), ((1,), 8, 16)]


def test_fill_gaps_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="conf shape"):
        fill_gaps(np.zeros((4, 3, 2)), np.zeros((4, 2)))


def test_one_euro_smooths_jitter_and_tracks_fast_motion():
    rng = np.random.default_rng(0)
    still = 5.0 + rng.normal(0, 0.05, (200, 3, 2))
    out = one_euro(still, fps=30.0, min_cutoff=1.0, beta=0.0)
    assert out[50:].std() < 0.4 * still[50:].std()
    ramp = np.linspace(0, 100, 100)[:, None, None].repeat(2, -1)  # fast, steady motion
    lag_slow = np.abs(one_euro(ramp, 30.0, 1.0, beta=0.0) - ramp)[50:].max()
    lag_fast = np.abs(one_euro(ramp, 30.0, 1.0, beta=1.0) - ramp)[50:].max()
    assert lag_fast < 0.2 * lag_slow  # beta cuts the lag on fast motion


def test_one_euro_passes_invalid_entries_and_restarts_after_gaps():
    x = np.zeros((10, 1, 2))
    x[5:] = 10.0
    valid = np.ones((10, 1), bool)
    valid[4] = False
    x[4] = 123.0
    out = one_euro(x, fps=25.0, min_cutoff=0.5, valid=valid)
    assert out[4, 0, 0] == 123.0  # passed through
    assert out[5, 0, 0] == 10.0  # restarted at the raw value, no drag from before the gap


def test_smooth_track_keeps_shapes_and_reports():
    track = PoseTrack.empty(12, (100, 100), 25.0)
    rng = np.random.default_rng(1)
    track.body_2d[:] = 50 + rng.normal(0, 1, track.body_2d.shape)
    track.body_conf[:] = 1.0
    track.body_conf[4:6, 3] = 0.0
    track.head_rotation = rng.normal(0, 1, (12, 3)).astype(np.float32)
    out = smooth_track(track)
    assert out.validate() is out
    assert out.body_conf[4, 3] > 0.3
    assert ((3,), 4, 6) in out.report["smoothing"]["body"]["filled"]
    assert out.body_2d[2:].std() < track.body_2d[2:].std()
    assert out.hands_conf.max() == 0  # missing hands stay missing
