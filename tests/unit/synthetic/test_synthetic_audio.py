"""Speech-like audio and the mouth motion derived from it."""

import numpy as np
import pytest

from dreamactor_core.synthetic.audio import (SAMPLE_RATE, frame_rms, mouth_params, sample_speech,
                                             speech_audio, synthesize)
from dreamactor_core.synthetic.character import STREAM_AUDIO, rng_for
from dreamactor_core.synthetic.clip import make_clip


@pytest.mark.parametrize("seed", [0, 7, 123])
def test_mouth_opening_follows_the_audio_envelope(seed):
    clip = make_clip(seed, 100, size=(32, 32), fps=25.0, with_audio=True, supersample=1)
    wave = clip.audio["waveform"].numpy()
    rms = frame_rms(wave, 100, 25.0, clip.audio["sample_rate"])
    r = np.corrcoef(clip.face["mouth_open"], rms)[0, 1]
    assert r > 0.8, f"Pearson {r:.3f}"
    # There is speech and there are pauses.
    assert clip.face["mouth_open"].max() > 0.4
    assert (clip.face["mouth_open"] < 0.02).mean() > 0.05


def test_waveform_range_length_and_determinism():
    plan = sample_speech(rng_for(3, STREAM_AUDIO), 2.5)
    a = synthesize(plan, rng_for(3, STREAM_AUDIO, 1))
    b = synthesize(sample_speech(rng_for(3, STREAM_AUDIO), 2.5), rng_for(3, STREAM_AUDIO, 1))
    assert a.dtype == np.float32 and a.shape == (int(2.5 * SAMPLE_RATE),)
    assert np.abs(a).max() <= 1.0 and np.abs(a).max() > 0.5
    assert a.tobytes() == b.tobytes()
    # Voiced: most energy below 4 kHz, and not a constant tone (several vowels).
    spectrum = np.abs(np.fft.rfft(a)) ** 2
    freqs = np.fft.rfftfreq(a.size, 1 / SAMPLE_RATE)
    assert spectrum[freqs < 4000].sum() / spectrum.sum() > 0.9
    assert len(set(plan.vowels.tolist())) >= 3


def test_mouth_width_follows_vowels_and_stays_in_range():
    plan = sample_speech(rng_for(5, STREAM_AUDIO), 6.0)
    mouth_open, width = mouth_params(plan, 150, 25.0)
    assert mouth_open.shape == width.shape == (150,)
    assert 0.0 <= width.min() and width.max() <= 1.0
    assert np.ptp(width) > 0.3  # wide "i" and round "u" both appear
    assert np.abs(width[mouth_open < 1e-6] - 0.5).max() < 1e-6  # neutral in silence


def test_speech_audio_matches_the_clip_soundtrack():
    wave, rate = speech_audio(9, 0.8)
    clip = make_clip(9, 20, size=(16, 16), fps=25.0, supersample=1)
    assert wave.shape == (1, int(0.8 * SAMPLE_RATE)) and wave.dtype == np.float32 and rate == SAMPLE_RATE
    assert clip.audio["waveform"].numpy().tobytes() == wave[None].tobytes()


def test_bad_duration_and_rate_raise():
    with pytest.raises(ValueError, match="sample_rate"):
        speech_audio(0, 1.0, sample_rate=4000)
    with pytest.raises(ValueError, match="duration"):
        sample_speech(rng_for(0, STREAM_AUDIO), 0.0)
