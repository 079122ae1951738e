"""Smooth random motion for the puppet: joint-angle curves, global translation and blinks.

Every angle is a sum of a few low-frequency sinusoids with random frequencies and phases,
squashed smoothly (tanh) into an anatomical range, so curves stay smooth at any frame rate.
A clip picks a leg style (walking or idling with weight shifts / squats) and, per arm, a style
(hanging, waving, gesturing or swinging with the gait). Time starts at a random offset, so a
one-frame "clip" is an independent random pose (that is what reference images use).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .kinematics import PoseAngles

HEAD_LIMITS = {"yaw": 70.0, "pitch": 30.0, "roll": 25.0}


@dataclass
class Motion:
    pose: PoseAngles
    root_offset: np.ndarray  # [T, 3] metres: x drift, unused y (set by ground contact), z depth
    blink: np.ndarray  # [T] 0 open .. 1 closed


def _wave(rng: np.random.Generator, t: np.ndarray, freqs: tuple[float, float], n: int = 3) -> np.ndarray:
    """A smooth curve in roughly [-1, 1]: n sinusoids of random frequency, phase and weight."""
    weight = rng.uniform(0.3, 1.0, n)
    weight /= weight.sum()
    freq = rng.uniform(*freqs, n)
    phase = rng.uniform(0, 2 * np.pi, n)
    return (weight[:, None] * np.sin(2 * np.pi * freq[:, None] * t[None] + phase[:, None])).sum(0)


def _limit(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Smoothly squashes ``x`` into (lo, hi); values near the middle pass almost unchanged."""
    mid, half = (lo + hi) / 2, (hi - lo) / 2
    return mid + half * np.tanh((x - mid) / half)


def _curve(rng, t, center, amplitude, lo, hi, freqs=(0.08, 0.6), n=3):
    return _limit(center + amplitude * _wave(rng, t, freqs, n), lo, hi)


def _blinks(rng: np.random.Generator, t: np.ndarray) -> np.ndarray:
    """Occasional blinks: events every ~2-5 s, each a 0.2-0.3 s close-and-open bump."""
    span0, span1 = t[0] - 1.0, t[-1] + 1.0
    count = rng.poisson(0.3 * (span1 - span0) + 1e-9)
    times = rng.uniform(span0, span1, count)
    widths = rng.uniform(0.1, 0.15, count)
    if count == 0:
        return np.zeros_like(t)
    d = np.abs(t[None] - times[:, None]) / widths[:, None]  # [E, T]
    return np.clip(1.0 - d, 0.0, 1.0).max(0) ** 0.7


def _arm(rng, t, style, gait_phase, gait_amp):
    """(abduction, flexion, twist, elbow) curves for one arm in one style."""
    if style == "wave":
        freq = rng.uniform(1.2, 2.5)
        abd = _curve(rng, t, rng.uniform(95, 135), 10, 70, 165)
        flex = _curve(rng, t, rng.uniform(-5, 25), 10, -20, 60)
        twist = _curve(rng, t, rng.uniform(75, 90), 5, 50, 95)
        elbow = _limit(rng.uniform(55, 85) + rng.uniform(25, 40) * np.sin(2 * np.pi * freq * t + rng.uniform(0, 6.3)), 5, 140)
        return abd, flex, twist, elbow
    if style == "gesture":
        abd = _curve(rng, t, rng.uniform(15, 60), rng.uniform(15, 45), 0, 150, (0.1, 0.7))
        flex = _curve(rng, t, rng.uniform(0, 50), rng.uniform(15, 45), -30, 120, (0.1, 0.7))
        twist = _curve(rng, t, rng.uniform(0, 50), 30, -20, 90)
        elbow = _curve(rng, t, rng.uniform(30, 80), rng.uniform(20, 50), 0, 145, (0.1, 0.9))
        return abd, flex, twist, elbow
    abd = _curve(rng, t, rng.uniform(6, 25), 6, 2, 45)
    twist = _curve(rng, t, rng.uniform(0, 30), 10, -10, 60)
    if style == "swing":
        flex = -0.8 * gait_amp * np.sin(gait_phase) + rng.uniform(0, 10)
        elbow = 15 + 12 * (1 - np.cos(gait_phase)) / 2 + rng.uniform(0, 15)
        return abd, flex, twist, elbow
    flex = _curve(rng, t, rng.uniform(-5, 15), 6, -20, 40)
    elbow = _curve(rng, t, rng.uniform(5, 35), 10, 0, 90)
    return abd, flex, twist, elbow


def sample_motion(rng: np.random.Generator, num_frames: int, fps: float) -> Motion:
    """Random smooth motion for ``num_frames`` frames at ``fps`` (independent of the character)."""
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    if not fps > 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    t = rng.uniform(0, 120) + np.arange(num_frames) / float(fps)
    walking = rng.random() < 0.45
    gait_freq = rng.uniform(0.7, 1.1)
    gait_phase = 2 * np.pi * gait_freq * t + rng.uniform(0, 2 * np.pi)
    gait_amp = rng.uniform(12, 28) if walking else 0.0

    arms = []
    for _ in range(2):
        styles = ("down", "wave", "gesture", "swing" if walking else "gesture")
        style = styles[rng.choice(4, p=(0.25, 0.2, 0.35, 0.2))]
        arms.append(_arm(rng, t, style, gait_phase, gait_amp))
    arm = [np.stack([a[k] for a in arms], -1) for k in range(4)]

    hip_flex, hip_abd, knee = (np.zeros((num_frames, 2)) for _ in range(3))
    if walking:
        for side, shift in ((0, 0.0), (1, np.pi)):
            phase = gait_phase + shift
            hip_flex[:, side] = gait_amp * np.sin(phase)
            knee[:, side] = 5 + rng.uniform(20, 45) * np.clip(np.sin(phase + 1.2), 0, None) ** 1.5
            hip_abd[:, side] = _curve(rng, t, 4, 2, 0, 10)
    else:
        squat = np.clip(_wave(rng, t, (0.05, 0.3)), 0, None) * rng.uniform(0, 45)
        shift = _wave(rng, t, (0.05, 0.4)) * rng.uniform(0, 8)
        for side in range(2):
            hip_flex[:, side] = squat + _curve(rng, t, 0, 6, -15, 30)
            knee[:, side] = 1.6 * squat + _curve(rng, t, 6, 5, 0, 30)
            hip_abd[:, side] = _limit(rng.uniform(2, 12) + (shift if side == 0 else -shift), 0, 35)

    finger = np.clip(0.5 + 0.5 * np.stack(
        [np.stack([_wave(rng, t, (0.1, 0.8)) for _ in range(5)], -1) for _ in range(2)], 1), 0, 1)
    head_amp = [rng.uniform(0.3, 1.5) * HEAD_LIMITS[k] for k in ("yaw", "pitch", "roll")]
    head = [HEAD_LIMITS[k] * np.tanh(a * 2.0 * _wave(rng, t, (0.05, 0.45)) / HEAD_LIMITS[k])
            for k, a in zip(("yaw", "pitch", "roll"), head_amp)]

    pose = PoseAngles(
        body_yaw=_curve(rng, t, 0, rng.uniform(5, 30), -40, 40, (0.03, 0.25)),
        torso_roll=_curve(rng, t, 0, rng.uniform(2, 10), -15, 15),
        torso_pitch=_curve(rng, t, rng.uniform(0, 8), 5, -10, 25),
        shoulder_abduction=arm[0], shoulder_flexion=arm[1], arm_twist=arm[2], elbow=arm[3],
        wrist=np.stack([_curve(rng, t, 5, 20, -40, 60) for _ in range(2)], -1),
        hip_flexion=hip_flex, hip_abduction=hip_abd, knee=knee,
        finger_curl=finger, head_yaw=head[0], head_pitch=head[1], head_roll=head[2],
    )
    drift = rng.uniform(0.05, 0.25) * (1.6 if walking else 1.0)
    root = np.zeros((num_frames, 3))
    root[:, 0] = drift * _wave(rng, t, (0.03, 0.2), 2)
    root[:, 2] = 0.2 * _wave(rng, t, (0.03, 0.15), 2)
    return Motion(pose=pose, root_offset=root, blink=_blinks(rng, t))
