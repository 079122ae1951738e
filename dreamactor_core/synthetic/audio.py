"""Speech-like audio and the mouth motion it implies, on one shared timeline.

A "speech plan" is a sequence of syllables (start, duration, vowel, loudness) grouped in phrases
separated by pauses. The waveform is a voiced harmonic source (a speaker-specific pitch with
intonation) shaped by vowel formants and a per-syllable amplitude envelope, plus short noise
bursts as consonants. The mouth opening per frame is the same envelope averaged over the
frame, and the mouth width follows the vowel (wide for "i", round for "u"), so mouth motion is
a learnable function of the audio.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .character import STREAM_AUDIO, rng_for

SAMPLE_RATE = 16000
# Vowel: formants F1..F3 (Hz), relative openness (loudness and jaw) and mouth width 0..1.
VOWELS = {
    "a": ((730, 1090, 2440), 1.00, 0.60),
    "e": ((530, 1840, 2480), 0.75, 0.85),
    "i": ((270, 2290, 3010), 0.55, 1.00),
    "o": ((570, 840, 2410), 0.85, 0.35),
    "u": ((300, 870, 2240), 0.60, 0.15),
}
_VOWEL_NAMES = tuple(VOWELS)
NEUTRAL_MOUTH_WIDTH = 0.5


@dataclass
class SpeechPlan:
    starts: np.ndarray  # [N] seconds
    durations: np.ndarray  # [N] seconds
    vowels: np.ndarray  # [N] index into VOWELS
    loudness: np.ndarray  # [N] peak amplitude of the envelope, 0..1
    consonant: np.ndarray  # [N] bool: a noise burst opens the syllable
    f0: float  # speaker pitch (Hz)
    duration: float  # seconds covered by the plan


def sample_speech(rng: np.random.Generator, duration: float) -> SpeechPlan:
    """Syllables of 0.12-0.3 s in phrases of 2-8, with 0.3-0.9 s pauses between phrases."""
    if not duration > 0:
        raise ValueError(f"audio duration must be > 0 seconds, got {duration}")
    starts, durations, vowels, loud = [], [], [], []
    now = rng.uniform(0.0, 0.4)
    while now < duration:
        for _ in range(rng.integers(2, 9)):
            d = rng.uniform(0.12, 0.3)
            v = rng.integers(len(VOWELS))
            starts.append(now)
            durations.append(d)
            vowels.append(v)
            loud.append(rng.uniform(0.55, 1.0) * VOWELS[_VOWEL_NAMES[v]][1])
            now += d + rng.uniform(0.02, 0.08)
        now += rng.uniform(0.3, 0.9)
    n = len(starts)
    return SpeechPlan(
        starts=np.array(starts), durations=np.array(durations), vowels=np.array(vowels, np.int64),
        loudness=np.array(loud), consonant=rng.random(n) < 0.6,
        f0=float(rng.uniform(95, 240)), duration=float(duration))


def envelope(plan: SpeechPlan, times: np.ndarray) -> np.ndarray:
    """Amplitude envelope at ``times`` (seconds): a sine-shaped bump per syllable, 0 in pauses."""
    times = np.asarray(times, np.float64)
    out = np.zeros(times.shape)
    for start, dur, amp in zip(plan.starts, plan.durations, plan.loudness):
        lo, hi = np.searchsorted(times, [start, start + dur])
        if hi > lo:
            phase = (times[lo:hi] - start) / dur
            out[lo:hi] = np.maximum(out[lo:hi], amp * np.sin(np.pi * phase) ** 0.7)
    return out


def mouth_params(plan: SpeechPlan, num_frames: int, fps: float) -> tuple[np.ndarray, np.ndarray]:
    """(mouth_open [T], mouth_width [T]) in 0..1, each frame averaging its own time window."""
    sub = 8
    times = (np.arange(num_frames * sub) + 0.5) / (sub * fps)
    env = envelope(plan, times)
    mouth_open = np.clip(env.reshape(num_frames, sub).mean(1), 0.0, 1.0)
    widths = np.array([VOWELS[name][2] for name in _VOWEL_NAMES])
    idx = np.clip(np.searchsorted(plan.starts, times, side="right") - 1, 0, None)
    target = widths[plan.vowels[idx]] if len(plan.starts) else np.full(times.shape, NEUTRAL_MOUTH_WIDTH)
    weight = np.clip(2.0 * env / np.maximum(plan.loudness.max(initial=0.0), 1e-6), 0, 1)
    width = NEUTRAL_MOUTH_WIDTH + (target - NEUTRAL_MOUTH_WIDTH) * weight
    return mouth_open.astype(np.float32), width.reshape(num_frames, sub).mean(1).astype(np.float32)


def _formant_gain(freqs: np.ndarray, formants: tuple[int, int, int]) -> np.ndarray:
    gain = np.zeros_like(freqs)
    for f, bw, a in zip(formants, (90.0, 110.0, 150.0), (1.0, 0.7, 0.35)):
        gain += a / (1.0 + ((freqs - f) / bw) ** 2)
    return gain / np.sqrt(np.maximum(freqs / 100.0, 1.0))  # gentle spectral tilt


def synthesize(plan: SpeechPlan, rng: np.random.Generator,
               sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """The plan as a mono waveform [S] float32 in -1..1."""
    if int(sample_rate) < 8000:
        raise ValueError(f"sample_rate must be >= 8000 Hz (formants reach 3.8 kHz), got {sample_rate}")
    n = int(round(plan.duration * sample_rate))
    t = np.arange(n) / sample_rate
    # Pitch: declining intonation per second plus a slow wobble.
    f0 = plan.f0 * (1.0 + 0.06 * np.sin(2 * np.pi * 0.7 * t + rng.uniform(0, 6.3))
                    - 0.05 * ((t % 1.0) - 0.5))
    phase = 2 * np.pi * np.cumsum(f0) / sample_rate
    env = envelope(plan, t)
    wave = np.zeros(n)
    k_max = int(3800 // plan.f0)
    harmonics = np.arange(1, k_max + 1)
    for start, dur, vowel, cons in zip(plan.starts, plan.durations, plan.vowels, plan.consonant):
        lo, hi = np.searchsorted(t, [start, start + dur])
        if hi <= lo:
            continue
        gains = _formant_gain(harmonics * plan.f0, VOWELS[_VOWEL_NAMES[vowel]][0])
        voiced = np.sin(harmonics[:, None] * phase[None, lo:hi]).T @ gains  # [hi - lo]
        voiced /= np.sqrt(np.mean(voiced ** 2)) + 1e-9  # every vowel at unit power
        wave[lo:hi] += env[lo:hi] * voiced
        if cons:
            m = min(hi - lo, int(rng.uniform(0.02, 0.05) * sample_rate))
            burst = np.diff(rng.standard_normal(m + 1)) * np.linspace(1.0, 0.0, m)
            wave[lo:lo + m] += 0.12 * burst
    peak = np.abs(wave).max()
    if peak > 0:
        wave *= 0.9 / peak
    return wave.astype(np.float32)


def speech_plan(seed: int, duration: float) -> SpeechPlan:
    """The syllable timeline of character ``seed``'s speech (what make_clip's mouth follows)."""
    return sample_speech(rng_for(seed, STREAM_AUDIO), duration)


def speech_audio(seed: int, duration: float, sample_rate: int = SAMPLE_RATE) -> tuple[np.ndarray, int]:
    """Character ``seed``'s speech for ``duration`` seconds -> (waveform float32 [1, S] in -1..1,
    sample_rate); the same timeline as ``speech_plan(seed, duration)``."""
    wave = synthesize(speech_plan(seed, duration), rng_for(seed, STREAM_AUDIO, 1), sample_rate)
    return wave[None], int(sample_rate)


def frame_rms(waveform: np.ndarray, num_frames: int, fps: float, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Root-mean-square amplitude of the waveform in each video frame's window -> [T]."""
    edges = np.round(np.arange(num_frames + 1) * sample_rate / fps).astype(np.int64)
    sq = np.concatenate([[0.0], np.cumsum(np.asarray(waveform, np.float64).reshape(-1) ** 2)])
    edges = np.clip(edges, 0, sq.shape[0] - 1)
    counts = np.maximum(edges[1:] - edges[:-1], 1)
    return np.sqrt((sq[edges[1:]] - sq[edges[:-1]]) / counts)
