"""Face-motion tokens as the sampler consumes them, from either driver: face crops of a video
(FaceMotionEncoder) or an audio track (AudioToMotionEncoder). Both give [T, N, D] tokens of the
same shape, so swapping the driver is swapping which function feeds the sampler."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from .bundle import DreamActorModel

EMBEDDED_DIR = Path(__file__).resolve().parent.parent / "embedded"


@dataclass
class FaceMotion:
    tokens: torch.Tensor  # [T, N, D] float32, CPU
    fps: float
    source: str  # "video" or "audio"
    mask: torch.Tensor | None = None  # [T] bool: frames with a usable face (video only)
    info: dict = field(default_factory=dict)

    @property
    def num_frames(self) -> int:
        return int(self.tokens.shape[0])


def embedded_models() -> list[Path]:
    """The model bundles shipped inside the package (the offline default)."""
    return sorted(EMBEDDED_DIR.glob("*.safetensors")) if EMBEDDED_DIR.is_dir() else []


@torch.no_grad()
def encode_face_crops(model: DreamActorModel, crops: torch.Tensor, fps: float,
                      mask: torch.Tensor | None = None) -> FaceMotion:
    """crops [T, H, W, 3] in 0..1 (any square size; resized to the encoder's) -> FaceMotion."""
    if crops.ndim != 4 or crops.shape[-1] != 3 or crops.shape[0] == 0:
        raise ValueError(f"face_crops has shape {tuple(crops.shape)}: expected a non-empty [T, H, W, 3] batch "
                         "(the Face Crop node's output)")
    if fps <= 0:
        raise ValueError(f"fps={fps}: the frame rate must be positive")
    size = model.face_config.image_size
    x = crops.permute(0, 3, 1, 2).to(torch.float32)  # [T, 3, H, W]
    if x.shape[-2:] != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    x = x.clamp(0, 1).to(model.device)
    tokens = model.face_encoder(x[None])[0]  # [T, N, D]
    return FaceMotion(tokens=tokens.float().cpu(), fps=float(fps), source="video",
                      mask=None if mask is None else mask.bool().cpu())


@torch.no_grad()
def encode_audio(model: DreamActorModel, audio: dict, num_frames: int, fps: float) -> FaceMotion:
    """ComfyUI AUDIO {waveform [B, C, S], sample_rate} -> FaceMotion with ``num_frames`` frames."""
    if not isinstance(audio, dict) or "waveform" not in audio or "sample_rate" not in audio:
        raise ValueError("audio must be a ComfyUI AUDIO ({'waveform': [B, C, S], 'sample_rate': int}); "
                         "connect a Load Audio node or a video's audio")
    waveform = audio["waveform"]
    if waveform.ndim == 2:
        waveform = waveform[None]
    tokens, info = model.audio_encoder.encode({"waveform": waveform[:1].to(model.device),
                                               "sample_rate": int(audio["sample_rate"])}, num_frames, fps)
    return FaceMotion(tokens=tokens[0].float().cpu(), fps=float(fps), source="audio", info=info)
