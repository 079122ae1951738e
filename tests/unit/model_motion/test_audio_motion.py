import math

import pytest
import torch

from dreamactor_core.model import audio_motion as am
from dreamactor_core.model.audio_motion import AudioMotionConfig, AudioToMotionEncoder, audio_features
from dreamactor_core.model.face_motion import FaceMotionConfig, FaceMotionEncoder

TOKENS = dict(token_dim=16, tokens_per_frame=3)
AUDIO_SMALL = AudioMotionConfig(**TOKENS, window=8, hidden_dim=32, num_heads=2, window_layers=1,
                                temporal_layers=1)


def _audio(seconds, rate, channels=1, batch=1, freq=440.0):
    t = torch.arange(int(seconds * rate)) / rate
    wave = 0.3 * torch.sin(2 * math.pi * freq * t)
    return {"waveform": wave.expand(batch, channels, -1).clone(), "sample_rate": rate}


@torch.no_grad()
def test_audio_and_video_tokens_have_identical_shape():
    torch.manual_seed(0)
    face = FaceMotionEncoder(FaceMotionConfig(**TOKENS, channels=(4, 8, 8, 8, 8), hidden_dim=32)).eval()
    audio_enc = AudioToMotionEncoder(AUDIO_SMALL).eval()
    video_tokens = face(torch.rand(1, 6, 3, 224, 224))
    audio_tokens, info = audio_enc.encode(_audio(0.24, 16000), num_frames=6, fps=25)
    assert audio_tokens.shape == video_tokens.shape == (1, 6, 3, 16)
    assert info["action"] == "none"


@pytest.mark.parametrize("rate,channels", [(8000, 2), (44100, 1), (48000, 6), (16000, 1)])
def test_any_rate_and_channel_count_gives_num_frames(rate, channels):
    feats, info = audio_features(_audio(1.0, rate, channels, batch=2), num_frames=30, fps=30,
                                 window=8)
    assert feats.shape == (2, 30, 8, 80)
    assert torch.isfinite(feats).all()
    assert info["sample_rate"] == rate and info["channels"] == channels
    assert info["resampled"] == (rate != 16000) and info["downmixed"] == (channels > 1)
    assert info["action"] == "none"


def test_short_audio_is_padded_and_long_audio_trimmed():
    _, info = audio_features(_audio(1.0, 16000), num_frames=50, fps=25)  # needs 2 s
    assert info["action"] == "padded" and info["padded_s"] == pytest.approx(1.0)
    _, info = audio_features(_audio(3.0, 16000), num_frames=50, fps=25)
    assert info["action"] == "trimmed" and info["trimmed_s"] == pytest.approx(1.0)


def test_tone_burst_lands_on_the_right_frames():
    rate, fps = 16000, 25
    t = torch.arange(2 * rate) / rate
    burst = (t >= 1.0) & (t < 1.5)
    wave = torch.where(burst, 0.5 * torch.sin(2 * math.pi * 1000 * t), torch.zeros(()))
    feats, _ = audio_features({"waveform": wave.view(1, 1, -1), "sample_rate": rate}, 50, fps, window=8)
    energy = feats[0, :, 4].amax(dim=-1)  # the mel frame at each video frame's instant
    times = torch.arange(50) / fps
    inside = (times >= 1.03) & (times <= 1.47)
    outside = (times <= 0.97) | (times >= 1.53)
    assert energy[inside].min() > energy[outside].max() + 0.5
    # Every slot of every window: mel frame time = (round(t * 100 / fps) - W // 2 + slot) / 100,
    # its 25 ms analysis window entirely inside the burst -> loud, entirely outside -> silent.
    slot_time = (torch.round(torch.arange(50) * 100 / fps)[:, None] - 4 + torch.arange(8)) / 100
    loud = (slot_time - 0.0125 >= 1.0) & (slot_time + 0.0125 <= 1.5)
    quiet = (slot_time + 0.0125 <= 1.0) | (slot_time - 0.0125 >= 1.5)
    slot_energy = feats[0].amax(dim=-1)  # [T, W]
    assert loud.sum() > 80 and quiet.sum() > 200
    silence = feats.min()  # the 8-decade floor below the clip's peak: (peak - 8 + 4) / 4
    assert slot_energy[loud].min() > silence + 1.9
    assert torch.all(slot_energy[quiet] == silence)


def test_window_pads_with_silence_at_clip_ends():
    # 2 s of tone for a 1 s video: trimmed, and windows reaching past 1 s see silence, not tone.
    feats, info = audio_features(_audio(2.0, 16000), num_frames=25, fps=25, window=20)
    assert info["action"] == "trimmed"
    energy = feats[0].amax(dim=-1)  # [T, W]; slot s of frame t is mel frame 4t - 10 + s
    silence = feats.min()
    assert torch.all(energy[0, :9] == silence)  # mel frames <= -2: before t = 0
    assert torch.all(energy[0, 11:] > silence + 0.5)
    assert torch.all(energy[24, 16:] == silence)  # mel frames >= 102: after the video's 1 s
    assert torch.all(energy[24, :14] > silence + 0.5)


@pytest.mark.parametrize("audio,kwargs,match", [
    ({"waveform": torch.zeros(1, 1, 0), "sample_rate": 16000}, {}, "audio is empty"),
    ({"waveform": torch.full((1, 1, 100), float("nan")), "sample_rate": 16000}, {}, "NaN"),
    ({"waveform": torch.zeros(1, 1, 100), "sample_rate": 0}, {}, "sample_rate"),
    ({"waveform": torch.zeros(1, 1, 100), "sample_rate": -8000}, {}, "sample_rate"),
    ({"waveform": torch.zeros(1, 100), "sample_rate": 16000}, {}, r"\[batch, channels, samples\]"),
    ({"wave": torch.zeros(1, 1, 100)}, {}, "ComfyUI AUDIO"),
    (None, {"fps": 0}, "fps"),
    (None, {"fps": -25.0}, "fps"),
    (None, {"num_frames": 0}, "num_frames"),
])
def test_bad_audio_raises_value_error(audio, kwargs, match):
    audio = audio or _audio(0.2, 16000)
    args = {"num_frames": 5, "fps": 25, **kwargs}
    with pytest.raises(ValueError, match=match):
        audio_features(audio, **args)


def test_torch_fallback_resampler_matches_torchaudio():
    import torchaudio.functional as AF

    wave = _audio(0.3, 44100, freq=3000.0)["waveform"][0]  # [1, S]
    ours = am._resample_torch(wave, 44100, 16000)
    ref = AF.resample(wave, 44100, 16000)
    assert ours.shape == ref.shape
    torch.testing.assert_close(ours, ref, atol=1e-4, rtol=0)


def test_mel_filterbank_matches_torchaudio_slaney():
    from torchaudio.functional import melscale_fbanks

    fb = am.mel_filterbank()
    assert fb.shape == (201, 80)
    assert torch.all(fb.amax(dim=0) > 0)  # no empty band
    ref = melscale_fbanks(201, 0.0, 8000.0, 80, 16000, norm="slaney", mel_scale="slaney")
    torch.testing.assert_close(fb, ref, atol=1e-6, rtol=1e-4)


def test_encoder_is_local_in_time():
    torch.manual_seed(0)
    enc = AudioToMotionEncoder(AUDIO_SMALL).eval()
    feats = torch.randn(1, 12, 8, 80)
    changed = feats.clone()
    changed[0, 11] += 1.0
    with torch.no_grad():
        diff = (enc(feats) - enc(changed)).abs().amax(dim=(0, 2, 3))
    # one temporal block with kernel 5 reaches 2 frames back
    assert {t for t in range(12) if diff[t] > 1e-6} == {9, 10, 11}
    with pytest.raises(ValueError, match=r"features must be \[B, T, 8, 80\]"):
        enc(torch.randn(1, 12, 20, 80))


def test_regression_loss_and_training_step():
    torch.manual_seed(0)
    enc = AudioToMotionEncoder(AUDIO_SMALL)
    feats, _ = audio_features(_audio(0.4, 16000), num_frames=10, fps=25, window=8)
    target = torch.randn(1, 10, 3, 16)
    assert AudioToMotionEncoder.regression_loss(target, target).item() == 0.0
    opt = torch.optim.Adam(enc.parameters(), lr=1e-2)
    losses = []
    for _ in range(15):
        loss = AudioToMotionEncoder.regression_loss(enc(feats), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0]
    mask = torch.zeros(1, 10, dtype=torch.bool)
    mask[0, :3] = True
    pred = target.clone()
    pred[0, 5:] += 1.0  # errors only on masked-out frames
    assert AudioToMotionEncoder.regression_loss(pred, target, mask).item() == 0.0
    with pytest.raises(ValueError, match="same"):
        AudioToMotionEncoder.regression_loss(pred[:, :5], target)


def test_features_without_torchaudio_match(monkeypatch):
    import sys

    audio = _audio(0.8, 22050, channels=2)
    with_ta, _ = audio_features(audio, num_frames=20, fps=25, window=8)
    monkeypatch.setitem(sys.modules, "torchaudio.functional", None)  # import now raises ImportError
    with pytest.raises(ImportError):
        import torchaudio.functional  # noqa: F401
    without_ta, info = audio_features(audio, num_frames=20, fps=25, window=8)
    assert info["resampled"]
    torch.testing.assert_close(without_ta, with_ta, atol=2e-3, rtol=0)


def test_numpy_scalars_accepted():
    import numpy as np

    audio = {"waveform": torch.zeros(1, 1, 1600) + 0.1, "sample_rate": np.int64(16000)}
    feats, _ = audio_features(audio, num_frames=np.int64(4), fps=np.float64(25.0), window=8)
    assert feats.shape == (1, 4, 8, 80)
