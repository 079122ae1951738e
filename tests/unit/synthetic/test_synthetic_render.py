"""Drawing primitives and backgrounds of the synthetic renderer."""

from dataclasses import replace

import numpy as np
import pytest

from dreamactor_core.synthetic.character import BACKGROUNDS, sample_character
from dreamactor_core.synthetic.painter import Painter, capsule_coords, pattern_mix, render_background


def test_capsule_coverage_matches_its_area():
    painter = Painter(np.zeros((80, 80, 3), np.uint8))
    p0, p1, r = np.array([20.0, 30.0]), np.array([60.0, 50.0]), 6.0
    box = painter.box(np.minimum(p0, p1) - r, np.maximum(p0, p1) + r)
    alpha = capsule_coords(*painter.grid(box), p0, p1, r, r)[0]
    painter.blend(box, alpha, np.array([255.0, 0.0, 0.0]))
    area = 2 * r * np.hypot(*(p1 - p0)) + np.pi * r * r
    assert abs(painter.mask.sum() - area) / area < 0.02
    assert painter.canvas[40, 40, 0] == 255 and painter.mask[5, 5] == 0


@pytest.mark.parametrize("kind, share", [("stripes", 0.5), ("checks", 0.5), ("dots", np.pi * 0.09)])
def test_patterns_cover_their_expected_share(kind, share):
    s, d = np.meshgrid(np.arange(0, 100, 0.25), np.arange(-20, 20, 0.25))
    mix = pattern_mix(kind, s, d, period=10.0)
    assert abs(mix.mean() - share) < 0.03
    assert pattern_mix("solid", s, d, 10.0) is None
    with pytest.raises(ValueError, match="pattern"):
        pattern_mix("plaid", s, d, 10.0)


@pytest.mark.parametrize("kind", BACKGROUNDS)
def test_backgrounds_are_deterministic_and_sized(kind):
    spec = replace(sample_character(3), background=kind)
    a, b = render_background(spec, (30, 50)), render_background(spec, (30, 50))
    assert a.shape == (30, 50, 3) and a.dtype == np.uint8 and a.tobytes() == b.tobytes()
    if kind != "solid":
        assert a.reshape(-1, 3).std(0).max() > 1.0  # not flat
