"""Audio-to-motion encoder: speech -> face-motion tokens of exactly the face encoder's shape.

Features (`audio_features`): ComfyUI AUDIO {"waveform": [B, C, S], "sample_rate": int} at any
rate and channel count is downmixed to mono, resampled to 16 kHz, padded with silence or
trimmed to the video's duration num_frames / fps, and turned into an 80-band log-mel
spectrogram (25 ms Hann window, 10 ms hop, Whisper's log10 + 8-decade dynamic range + (x+4)/4
scaling). Mel frame m is centred at m * 10 ms. Video frame t is shown at t / fps seconds; it
gets the `window` mel frames centred on that instant (silence beyond either end): [B, T, W, 80].

Encoder (`AudioToMotionEncoder`): per frame, a small transformer over the W mel frames of its
window, mean-pooled; then residual 1-D convolutions over T for co-articulation context; then a
linear head to N tokens of width D, layer-normed like the face-motion tokens. It is trained by
regressing the face-motion encoder's tokens of the same clip (`regression_loss`).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

SAMPLE_RATE = 16_000
N_FFT = 400  # 25 ms
HOP = 160  # 10 ms -> 100 mel frames per second
N_MELS = 80


def _check_audio(audio: Any) -> tuple[torch.Tensor, int]:
    if not isinstance(audio, dict) or "waveform" not in audio or "sample_rate" not in audio:
        raise ValueError("audio must be ComfyUI AUDIO: a dict {'waveform': [B, C, S] tensor, "
                         "'sample_rate': int}")
    wave, rate = audio["waveform"], audio["sample_rate"]
    if not isinstance(wave, torch.Tensor) or wave.ndim != 3:
        raise ValueError(f"audio['waveform'] must be a [batch, channels, samples] tensor, got "
                         f"{getattr(wave, 'shape', type(wave).__name__)}")
    if wave.numel() == 0:
        raise ValueError(f"audio is empty (waveform shape {tuple(wave.shape)}); load a clip with sound")
    if not wave.is_floating_point() or not torch.isfinite(wave).all():
        raise ValueError("audio['waveform'] must be float samples without NaN or inf; "
                         "re-decode or clean the audio")
    valid = isinstance(rate, numbers.Real) and not isinstance(rate, bool) and rate > 0
    if not valid or rate != int(rate):
        raise ValueError(f"audio['sample_rate'] must be a positive integer (Hz), got {rate!r}")
    return wave, int(rate)


def _sinc_resample_kernel(orig: int, new: int, width_zeros: int = 6, rolloff: float = 0.99
                          ) -> tuple[torch.Tensor, int]:
    """Polyphase Hann-windowed sinc kernels [new, 1, K] (torchaudio's method) and the half width."""
    base = min(orig, new) * rolloff
    width = math.ceil(width_zeros * orig / base)
    idx = torch.arange(-width, width + orig, dtype=torch.float64) / orig  # [K]
    t = (torch.arange(0, -new, -1, dtype=torch.float64)[:, None] / new + idx[None]) * base
    t = t.clamp(-width_zeros, width_zeros)  # [new, K]
    window = torch.cos(t * math.pi / width_zeros / 2) ** 2
    t = t * math.pi
    sinc = torch.where(t == 0, torch.ones_like(t), torch.sin(t) / t)
    return (sinc * window * base / orig)[:, None], width


def _resample_torch(wave: torch.Tensor, orig: int, new: int) -> torch.Tensor:
    """[B, S] -> [B, ceil(S * new / orig)] without torchaudio (fallback only)."""
    g = math.gcd(orig, new)
    orig, new = orig // g, new // g
    kernel, width = _sinc_resample_kernel(orig, new)
    length = wave.shape[-1]
    x = F.pad(wave[:, None].to(torch.float64), (width, width + orig))  # [B, 1, S + pad]
    y = F.conv1d(x, kernel, stride=orig)  # [B, new, L]
    y = rearrange(y, "b p l -> b (l p)")
    return y[:, :math.ceil(new * length / orig)].to(wave.dtype)


def resample(wave: torch.Tensor, orig: int, new: int = SAMPLE_RATE) -> torch.Tensor:
    """[B, S] at orig Hz -> [B, S'] at new Hz; torchaudio when installed, else a torch port."""
    if orig == new:
        return wave
    try:
        import torchaudio.functional as AF  # lazy: torchaudio is optional
    except ImportError:
        return _resample_torch(wave, orig, new)
    return AF.resample(wave, orig, new)


def _hz_to_mel(f: torch.Tensor) -> torch.Tensor:
    """Slaney's mel scale: linear below 1 kHz, logarithmic above (librosa / Whisper)."""
    log_part = 15.0 + torch.log(f.clamp_min(1e-10) / 1000.0) / (math.log(6.4) / 27.0)
    return torch.where(f < 1000.0, f * 3.0 / 200.0, log_part)


def _mel_to_hz(m: torch.Tensor) -> torch.Tensor:
    return torch.where(m < 15.0, m * 200.0 / 3.0, 1000.0 * torch.exp((m - 15.0) * math.log(6.4) / 27.0))


def mel_filterbank(n_freqs: int = N_FFT // 2 + 1, n_mels: int = N_MELS,
                   sample_rate: int = SAMPLE_RATE, f_min: float = 0.0,
                   f_max: float | None = None) -> torch.Tensor:
    """Triangular filters [n_freqs, n_mels] on Slaney's mel scale with Slaney area
    normalisation, as Whisper's features (HTK spacing would leave the lowest of 80 bands
    narrower than one 40 Hz FFT bin, i.e. empty)."""
    f_max = sample_rate / 2 if f_max is None else f_max
    edges = torch.tensor([f_min, f_max], dtype=torch.float64)
    lo, hi = _hz_to_mel(edges).tolist()
    hz = _mel_to_hz(torch.linspace(lo, hi, n_mels + 2, dtype=torch.float64))  # band edges
    freqs = torch.linspace(0, sample_rate / 2, n_freqs, dtype=torch.float64)[:, None]  # [F, 1]
    lower, centre, upper = hz[:-2], hz[1:-1], hz[2:]
    rising = (freqs - lower) / (centre - lower)
    falling = (upper - freqs) / (upper - centre)
    triangles = torch.minimum(rising, falling).clamp_min(0)
    return (triangles * (2.0 / (upper - lower))).to(torch.float32)


def log_mel(wave: torch.Tensor) -> torch.Tensor:
    """16 kHz mono [B, S] -> log-mel [B, 1 + S // HOP, N_MELS]; frame m centred at m * HOP."""
    spec = torch.stft(wave.float(), N_FFT, HOP, window=torch.hann_window(N_FFT, device=wave.device),
                      center=True, pad_mode="constant", return_complex=True)  # [B, F, M]
    power = spec.abs() ** 2
    mel = torch.einsum("bfm,fn->bmn", power, mel_filterbank().to(wave.device))  # [B, M, N_MELS]
    logspec = mel.clamp_min(1e-10).log10()
    peak = logspec.amax(dim=(1, 2), keepdim=True)
    return (torch.maximum(logspec, peak - 8.0) + 4.0) / 4.0


def audio_features(audio: dict, num_frames: int, fps: float,
                   window: int = 20) -> tuple[torch.Tensor, dict]:
    """ComfyUI AUDIO -> per-video-frame log-mel windows [B, num_frames, window, 80] and an info
    dict (input rate/channels/duration, what was resampled, padded or trimmed)."""
    wave, rate = _check_audio(audio)
    if isinstance(num_frames, bool) or not isinstance(num_frames, numbers.Integral) or num_frames <= 0:
        raise ValueError(f"num_frames must be a positive integer, got {num_frames!r}")
    if not isinstance(fps, numbers.Real) or not math.isfinite(fps) or fps <= 0:
        raise ValueError(f"fps must be a positive number, got {fps!r}")
    if window < 1:
        raise ValueError(f"window must be >= 1 mel frame, got {window}")
    batch, channels, samples = wave.shape
    info: dict[str, Any] = {"sample_rate": rate, "channels": channels,
                            "duration_s": samples / rate, "video_duration_s": num_frames / fps,
                            "downmixed": channels > 1, "resampled": rate != SAMPLE_RATE,
                            "action": "none", "padded_s": 0.0, "trimmed_s": 0.0}
    mono = resample(wave.float().mean(dim=1), rate, SAMPLE_RATE)  # [B, S16]
    target = round(num_frames / fps * SAMPLE_RATE)
    if mono.shape[1] < target:
        info.update(action="padded", padded_s=(target - mono.shape[1]) / SAMPLE_RATE)
        mono = F.pad(mono, (0, target - mono.shape[1]))
    elif mono.shape[1] > target:
        info.update(action="trimmed", trimmed_s=(mono.shape[1] - target) / SAMPLE_RATE)
        mono = mono[:, :target]
    margin = window // 2 + 1  # mel frames of silence on each side for the edge windows
    mel = log_mel(F.pad(mono, (margin * HOP, margin * HOP)))  # [B, M, 80]; m at (m - margin) * 10 ms
    t = torch.arange(num_frames, dtype=torch.float64)
    centre = torch.round(t / fps * (SAMPLE_RATE / HOP)).long() + margin  # [T]
    index = centre[:, None] - window // 2 + torch.arange(window)  # [T, W]
    index = index.clamp(0, mel.shape[1] - 1).to(mel.device)
    return mel[:, index], info  # [B, T, W, 80]


@dataclass(frozen=True)
class AudioMotionConfig:
    token_dim: int = 512  # D, same as FaceMotionConfig.token_dim
    tokens_per_frame: int = 32  # N, same as FaceMotionConfig.tokens_per_frame
    n_mels: int = N_MELS
    window: int = 20  # mel frames (10 ms each) per video frame, centred on the frame's time
    hidden_dim: int = 256
    num_heads: int = 4
    window_layers: int = 2  # transformer blocks over the mel window
    temporal_layers: int = 2  # residual conv blocks over video frames
    temporal_kernel: int = 5
    chunk_frames: int = 512  # windows encoded per transformer pass (bounds memory)

    def __post_init__(self):
        if self.hidden_dim % self.num_heads:
            raise ValueError(f"hidden_dim ({self.hidden_dim}) must be divisible by num_heads "
                             f"({self.num_heads})")
        if self.temporal_kernel % 2 == 0:
            raise ValueError(f"temporal_kernel must be odd, got {self.temporal_kernel}")


class WindowBlock(nn.Module):
    """Pre-norm transformer block over the mel frames of one window."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(approximate="tanh"),
                                 nn.Linear(4 * dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [F, W, H]
        q, k, v = rearrange(self.qkv(self.norm1(x)), "f w (three h d) -> three f h w d",
                            three=3, h=self.num_heads)
        attn = F.scaled_dot_product_attention(q, k, v)  # [F, heads, W, d]
        x = x + self.proj(rearrange(attn, "f h w d -> f w (h d)"))
        return x + self.mlp(self.norm2(x))


class TemporalConvBlock(nn.Module):
    """Residual 1-D conv over video frames on [B, T, H]."""

    def __init__(self, dim: int, kernel: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.conv = nn.Conv1d(dim, dim, kernel, padding=kernel // 2)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = rearrange(self.norm(x), "b t c -> b c t")
        h = rearrange(F.silu(self.conv(h)), "b c t -> b t c")
        return x + self.out(h)


class AudioToMotionEncoder(nn.Module):
    """log-mel windows [B, T, W, n_mels] -> motion tokens [B, T, N, D]."""

    def __init__(self, config: AudioMotionConfig = AudioMotionConfig()):
        super().__init__()
        self.config = config
        h = config.hidden_dim
        self.in_proj = nn.Linear(config.n_mels, h)
        self.pos_embed = nn.Parameter(torch.randn(1, config.window, h) * 0.02)
        self.window_blocks = nn.ModuleList([WindowBlock(h, config.num_heads)
                                            for _ in range(config.window_layers)])
        self.pool_norm = nn.LayerNorm(h)
        self.temporal_blocks = nn.ModuleList([TemporalConvBlock(h, config.temporal_kernel)
                                              for _ in range(config.temporal_layers)])
        self.head = nn.Linear(h, config.tokens_per_frame * config.token_dim)
        self.token_norm = nn.LayerNorm(config.token_dim)

    def encode_windows(self, windows: torch.Tensor) -> torch.Tensor:
        """[F, W, n_mels] -> one vector per video frame [F, H]."""
        x = self.in_proj(windows) + self.pos_embed  # [F, W, H]
        for block in self.window_blocks:
            x = block(x)
        return self.pool_norm(x.mean(dim=1))  # [F, H]

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        c = self.config
        if features.ndim != 4 or features.shape[2:] != (c.window, c.n_mels):
            raise ValueError(f"features must be [B, T, {c.window}, {c.n_mels}] log-mel windows from "
                             f"audio_features(audio, num_frames, fps, window={c.window}), got "
                             f"{tuple(features.shape)}")
        b, t = features.shape[:2]
        weight = self.in_proj.weight
        windows = rearrange(features, "b t w m -> (b t) w m")
        x = torch.cat([self.encode_windows(chunk.to(device=weight.device, dtype=weight.dtype))
                       for chunk in windows.split(c.chunk_frames)])
        x = rearrange(x, "(b t) h -> b t h", b=b, t=t)  # [B, T, H]
        for block in self.temporal_blocks:
            x = block(x)
        tokens = rearrange(self.head(x), "b t (n d) -> b t n d", n=c.tokens_per_frame)
        return self.token_norm(tokens)  # [B, T, N, D]

    def encode(self, audio: dict, num_frames: int, fps: float) -> tuple[torch.Tensor, dict]:
        """ComfyUI AUDIO -> (tokens [B, num_frames, N, D], info from audio_features)."""
        features, info = audio_features(audio, num_frames, fps, self.config.window)
        return self(features), info

    @staticmethod
    def regression_loss(audio_tokens: torch.Tensor, face_tokens: torch.Tensor,
                        mask: torch.Tensor | None = None) -> torch.Tensor:
        """MSE between predicted and face-encoder tokens [B, T, N, D]; mask [B, T] selects the
        frames where a face was found (all frames when None). The face tokens are targets: no
        gradient flows into the face encoder."""
        if audio_tokens.shape != face_tokens.shape:
            raise ValueError(f"audio_tokens {tuple(audio_tokens.shape)} and face_tokens "
                             f"{tuple(face_tokens.shape)} must have the same [B, T, N, D] shape")
        err = (audio_tokens - face_tokens.detach()).pow(2).mean(dim=(2, 3))  # [B, T]
        if mask is None:
            return err.mean()
        if mask.shape != err.shape:
            raise ValueError(f"mask must be [B, T] = {tuple(err.shape)}, got {tuple(mask.shape)}")
        mask = mask.to(err.dtype)
        return (err * mask).sum() / mask.sum().clamp_min(1.0)
