"""A puppet character's identity: proportions, colours, clothing, hair, eyes and background.

Everything is sampled from one integer seed, so a seed *is* a character. Lengths are metres,
colours are RGB uint8 triples. Proportions are cartoonish on purpose (a big head, ~1/5 of the
height) so faces stay readable at 64x64.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

Color = tuple[int, int, int]

PATTERNS = ("solid", "stripes", "checks", "dots")
HAIR_STYLES = ("bald", "short", "long", "bob", "mohawk", "bun")
BACKGROUNDS = ("solid", "gradient", "shapes", "texture")

_SKIN_TONES = ((255, 224, 196), (241, 194, 160), (224, 172, 120), (198, 134, 88),
               (161, 102, 62), (120, 74, 45), (86, 52, 33), (250, 208, 180))
_HAIR_COLORS = ((20, 16, 14), (60, 38, 22), (110, 70, 35), (190, 150, 80), (225, 200, 130),
                (150, 60, 25), (170, 170, 170), (40, 60, 170), (200, 70, 140))
_EYE_COLORS = ((70, 40, 20), (40, 90, 160), (60, 120, 60), (110, 110, 120), (25, 20, 20))

# Each substream of a seed gets its own key so that adding draws to one never shifts another.
STREAM_CHARACTER, STREAM_MOTION, STREAM_AUDIO, STREAM_REFERENCE, STREAM_CAMERA = range(5)


def rng_for(seed: int, stream: int, *extra: int) -> np.random.Generator:
    """An independent, reproducible generator for one use of a seed."""
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return np.random.default_rng(np.random.SeedSequence([int(seed), stream, *map(int, extra)]))


@dataclass(frozen=True)
class CharacterSpec:
    seed: int
    # Proportions (metres).
    head_radius: float
    neck_length: float
    torso_length: float  # neck joint to pelvis
    shoulder_width: float
    hip_width: float
    waist_scale: float  # torso outline width at the waist relative to the shoulders
    upper_arm: float
    forearm: float
    hand_length: float
    thigh: float
    shin: float
    foot_length: float
    arm_radius: float
    leg_radius: float
    # Appearance.
    skin: Color
    top_color: Color
    top_pattern: str
    top_pattern_color: Color
    top_pattern_period: float  # metres
    long_sleeves: bool
    bottom_color: Color
    bottom_pattern: str
    bottom_pattern_color: Color
    bottom_pattern_period: float
    long_legs: bool  # trousers (True) or shorts
    shoe_color: Color
    hair_style: str
    hair_color: Color
    eye_color: Color
    lip_color: Color
    # Background.
    background: str
    background_colors: tuple[Color, Color, Color]
    background_seed: int

    @property
    def height(self) -> float:
        """Standing height from the sole to the top of the head (metres)."""
        return (2 * self.head_radius + self.neck_length + self.torso_length
                + self.thigh + self.shin + 0.25 * self.foot_length)


def _hsv(rng: np.random.Generator, s: tuple[float, float], v: tuple[float, float],
         hue: float | None = None) -> Color:
    h = rng.uniform(0, 1) if hue is None else hue % 1.0
    sat, val = rng.uniform(*s), rng.uniform(*v)
    i, f = int(h * 6) % 6, h * 6 - int(h * 6)
    p, q, t = val * (1 - sat), val * (1 - sat * f), val * (1 - sat * (1 - f))
    rgb = [(val, t, p), (q, val, p), (p, val, t), (p, q, val), (t, p, val), (val, p, q)][i]
    return tuple(int(round(255 * c)) for c in rgb)


def _jitter(rng: np.random.Generator, color: Color, amount: int) -> Color:
    return tuple(int(np.clip(c + rng.integers(-amount, amount + 1), 0, 255)) for c in color)


def _contrasting(rng: np.random.Generator, base: Color) -> Color:
    """A pattern colour clearly different in brightness from ``base``."""
    bright = sum(base) / 3 > 128
    return _hsv(rng, (0.2, 0.9), (0.1, 0.35) if bright else (0.75, 1.0))


def sample_character(seed: int) -> CharacterSpec:
    """The character of ``seed``; the same seed always gives the same character."""
    rng = rng_for(seed, STREAM_CHARACTER)
    u = rng.uniform
    scale = u(0.88, 1.12)
    skin = _jitter(rng, _SKIN_TONES[rng.integers(len(_SKIN_TONES))], 10)
    top = _hsv(rng, (0.35, 0.95), (0.35, 0.95))
    bottom = _hsv(rng, (0.2, 0.8), (0.15, 0.8))
    top_pattern = PATTERNS[rng.choice(4, p=(0.3, 0.3, 0.2, 0.2))]
    bottom_pattern = PATTERNS[rng.choice(4, p=(0.6, 0.15, 0.15, 0.1))]
    hair_style = HAIR_STYLES[rng.choice(len(HAIR_STYLES), p=(0.08, 0.32, 0.2, 0.2, 0.08, 0.12))]
    background = BACKGROUNDS[rng.integers(len(BACKGROUNDS))]
    bg_hue = u(0, 1)
    bg = (_hsv(rng, (0.05, 0.5), (0.45, 0.95), bg_hue),
          _hsv(rng, (0.05, 0.6), (0.3, 0.9), bg_hue + u(-0.15, 0.15)),
          _hsv(rng, (0.2, 0.7), (0.3, 1.0)))
    return CharacterSpec(
        seed=int(seed),
        head_radius=scale * u(0.15, 0.18),
        neck_length=scale * u(0.035, 0.07),
        torso_length=scale * u(0.42, 0.54),
        shoulder_width=scale * u(0.30, 0.42),
        hip_width=scale * u(0.22, 0.30),
        waist_scale=u(0.75, 1.1),
        upper_arm=scale * u(0.23, 0.30),
        forearm=scale * u(0.21, 0.27),
        hand_length=scale * u(0.12, 0.15),
        thigh=scale * u(0.33, 0.42),
        shin=scale * u(0.31, 0.40),
        foot_length=scale * u(0.14, 0.19),
        arm_radius=scale * u(0.045, 0.062),
        leg_radius=scale * u(0.06, 0.082),
        skin=skin,
        top_color=top,
        top_pattern=top_pattern,
        top_pattern_color=_contrasting(rng, top),
        top_pattern_period=u(0.06, 0.12),
        long_sleeves=bool(rng.random() < 0.5),
        bottom_color=bottom,
        bottom_pattern=bottom_pattern,
        bottom_pattern_color=_contrasting(rng, bottom),
        bottom_pattern_period=u(0.07, 0.13),
        long_legs=bool(rng.random() < 0.65),
        shoe_color=_hsv(rng, (0.0, 0.8), (0.05, 0.6)),
        hair_style=hair_style,
        hair_color=_jitter(rng, _HAIR_COLORS[rng.integers(len(_HAIR_COLORS))], 12),
        eye_color=_EYE_COLORS[rng.integers(len(_EYE_COLORS))],
        lip_color=_jitter(rng, (150, 45, 50), 25),
        background=background,
        background_colors=bg,
        background_seed=int(rng.integers(2**31 - 1)),
    )
