"""TrainConfig: every knob of a training run, as a JSON-round-tripping dataclass.

A config file is a JSON object with any subset of the fields below (unknown keys are an error,
so a typo never trains silently with a default). ``model`` is either a preset name ("tiny",
"paper") or a full ModelConfig dict; ``model_overrides`` is merged into the preset's dict one
level deep (e.g. ``{"dit": {"depth": 2}}``). ``face_motion`` / ``audio_motion`` are keyword
overrides of FaceMotionConfig / AudioMotionConfig; their token_dim and tokens_per_frame always
follow the DiT config, and the face crop size is ``face_motion["image_size"]`` (224 by default,
smaller values such as 32 keep CPU tests fast).

``data`` selects the dataset: ``{"kind": "synthetic", "num_clips", "frames": [min, max],
"fps", "driver_swap"}`` (frame size = the model's frame size; driver_swap: the share of clips whose
face crops are acted by another character, see SyntheticClipDataset) or ``{"kind": "video_folder", "folder",
"cache_dir", "max_frames", "frame_stride", "resize_mode"}``.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..model.audio_motion import AudioMotionConfig
from ..model.config import DECODER_ADDITIONS, ModelConfig, dataclass_from_dict, preset
from ..model.face_motion import FaceMotionConfig


def growth_overrides(config: ModelConfig) -> list[str]:
    """``--set`` assignments giving a recipe what ``train.widen`` can add to a model file
    (``config``, its model config): the decoder parts and the DiT's depth, so that a run
    continuing that file fits every one of its tensors."""
    return [*(f"model_overrides.vae.{name}={getattr(config.vae, name)}" for name in DECODER_ADDITIONS),
            f"model_overrides.dit.depth={config.dit.depth}"]


STAGES = ("vae", "vae_decoder", "vae_decoder_sampled", "vae_reference", "1", "2", "3", "audio")
LR_SCHEDULES = ("constant", "cosine")
MIXED_PRECISION = ("auto", "bf16", "no")


@dataclass
class TrainConfig:
    model: Any = "tiny"  # preset name or ModelConfig dict
    model_overrides: dict = field(default_factory=dict)
    face_motion: dict = field(default_factory=dict)
    audio_motion: dict = field(default_factory=dict)
    data: dict = field(default_factory=lambda: {"kind": "synthetic", "num_clips": 10_000,
                                                "frames": [17, 17], "fps": 25.0})
    seed: int = 0
    batch_size: int = 8  # global: split evenly over the ranks
    # Optimizer steps per loaded batch, each with its own noise, timesteps and dropout draws: a
    # GPU that outruns the clip renderer (the demo configs on one H100) does more steps on the
    # same clips instead of waiting. 1 = every step loads a new batch.
    data_echo: int = 1
    lr: float = 1e-4
    weight_decay: float = 0.01
    betas: tuple = (0.9, 0.999)
    warmup_steps: int = 100
    lr_schedule: str = "constant"  # cosine: from lr after warmup down to lr * min_lr_ratio at --steps
    min_lr_ratio: float = 0.0
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    p_drop_ref: float = 0.1  # per-sample CFG dropout of the reference
    p_drop_motion: float = 0.1  # ... of pose + face motion
    # Per-step probability that the batch is trained as a continued segment whose first latent
    # (its first frame, encoded alone) is given clean, as the pipeline gives the previous
    # segment's last frame in a long video (stages.flow_loss).
    p_clean_first: float = 0.0
    timestep_shift: float = 1.0
    logit_normal: bool = True
    vae_kl_weight: float = 1e-4  # per latent element, against L1 + MSE per pixel
    vae_head_weight: float = 0.0  # extra reconstruction weight on head pixels (stages.head_weight)
    vae_mouth_weight: float = 0.0  # ... and on the mouth, found from the head sphere (stages.mouth_mask)
    # The same extra weights for the DiT's flow loss, on the latent cells that hold any head /
    # mouth pixel (stages.latent_weight): at 64x64 the mouth is one latent cell of 256.
    dit_head_weight: float = 0.0
    dit_mouth_weight: float = 0.0
    # L1 between the decoded and the true frame-to-frame changes (stages.reconstruction_loss):
    # the only loss term that sees two frames at once, so the one that trains a decoder's
    # temporal mix to smooth a jump between latent frames.
    vae_temporal_weight: float = 0.0
    # 1 - SSIM of the decoded frames (the eval's SSIM): L1 + MSE reward the mean of what the
    # decoder is unsure of, which is blur; SSIM also scores local contrast and structure.
    vae_ssim_weight: float = 0.0
    # Reconstruction weight of frame 0, which the causal VAE encodes alone (as it does every
    # reference image); temporal_factor makes each latent frame count the same (stages.vae_weight).
    vae_first_frame_weight: float = 1.0
    # vae_decoder_sampled: the frozen model samples each clip's latent as the pipeline does
    # (Euler, this many steps, shift 3, the default guidance scales) and the decoder learns to
    # decode it to the clip; this share of the samples is decoded from the clip's own latent
    # instead, so the decoder stays a reconstruction decoder too (stages.sampled_latents).
    sampled_steps: int = 20
    sampled_true_fraction: float = 0.5
    latent_stats_clips: int = 8  # clips used to set the VAE's latent mean/std before DiT stages
    mixed_precision: str = "auto"  # auto: bf16 autocast where native (CUDA, AVX512-BF16/AMX CPUs)
    gradient_checkpointing: bool = False
    fsdp: bool = False  # shard with FSDP instead of DDP (large configs, several GPUs)
    checkpoint_every: int = 500
    keep_checkpoints: int = 2
    log_every: int = 10
    num_workers: int = 0

    def __post_init__(self) -> None:
        self.betas = tuple(float(b) for b in self.betas)
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.data_echo < 1:
            raise ValueError(f"data_echo must be >= 1 (steps per loaded batch), got {self.data_echo}")
        for name in ("p_drop_ref", "p_drop_motion", "p_clean_first"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be a probability in 0..1, got {getattr(self, name)}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay}")
        if self.sampled_steps < 1:
            raise ValueError(f"sampled_steps must be >= 1 sampling step, got {self.sampled_steps}")
        if not 0.0 <= self.sampled_true_fraction <= 1.0:
            raise ValueError("sampled_true_fraction must be a probability in 0..1, got "
                             f"{self.sampled_true_fraction}")
        for name in ("vae_head_weight", "vae_mouth_weight", "vae_temporal_weight",
                     "vae_ssim_weight", "dit_head_weight", "dit_mouth_weight"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a number >= 0, got {value}")
        if not (math.isfinite(self.vae_first_frame_weight) and self.vae_first_frame_weight > 0):
            raise ValueError("vae_first_frame_weight must be a number > 0, got "
                             f"{self.vae_first_frame_weight}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES}, got {self.lr_schedule!r}")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ValueError(f"min_lr_ratio must be in 0..1, got {self.min_lr_ratio}")
        if self.mixed_precision not in MIXED_PRECISION:
            raise ValueError(f"mixed_precision must be one of {MIXED_PRECISION}, "
                             f"got {self.mixed_precision!r}")
        if self.checkpoint_every < 1 or self.log_every < 1:
            raise ValueError("checkpoint_every and log_every must be >= 1")
        if self.keep_checkpoints < 1:
            raise ValueError(f"keep_checkpoints must be >= 1, got {self.keep_checkpoints}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a positive number, got {self.lr}")
        kind = self.data.get("kind")
        if kind not in ("synthetic", "video_folder"):
            raise ValueError(f"data.kind must be 'synthetic' or 'video_folder', got {kind!r}")
        swap = self.data.get("driver_swap", 0.0)
        if kind != "synthetic" and "driver_swap" in self.data:
            raise ValueError("data.driver_swap needs synthetic data (a real video has one actor); "
                             "remove it for data.kind 'video_folder'")
        if isinstance(swap, bool) or not isinstance(swap, (int, float)) or not 0 <= swap <= 1:
            raise ValueError(f"data.driver_swap is a probability in 0..1, got {swap!r}")
        self.model_config()  # validate early

    # -- derived component configs ----------------------------------------------------------
    def model_config(self) -> ModelConfig:
        if isinstance(self.model, str):
            base = preset(self.model).to_dict()
        elif isinstance(self.model, dict):
            base = json.loads(json.dumps(self.model))
        else:
            raise ValueError(f"model must be a preset name or a ModelConfig dict, "
                             f"got {self.model!r}")
        for key, value in self.model_overrides.items():
            if isinstance(value, dict) and isinstance(base.get(key), dict):
                base[key] = {**base[key], **value}
            else:
                base[key] = value
        if self.p_clean_first > 0:  # the model records that it learnt clean-context continuation
            base["dit"] = {**base["dit"], "clean_context": True}
        return ModelConfig.from_dict(base)

    def face_motion_config(self) -> FaceMotionConfig:
        dit = self.model_config().dit
        kwargs = {**self.face_motion, "token_dim": dit.face_token_dim,
                  "tokens_per_frame": dit.face_tokens_per_frame}
        if "channels" in kwargs:
            kwargs["channels"] = tuple(kwargs["channels"])
        return dataclass_from_dict(FaceMotionConfig, kwargs, "train config 'face_motion'", lists_to_tuples=True)

    def audio_motion_config(self) -> AudioMotionConfig:
        dit = self.model_config().dit
        kwargs = {**self.audio_motion, "token_dim": dit.face_token_dim,
                  "tokens_per_frame": dit.face_tokens_per_frame}
        return dataclass_from_dict(AudioMotionConfig, kwargs, "train config 'audio_motion'", lists_to_tuples=True)

    @property
    def face_crop_size(self) -> int:
        return self.face_motion_config().image_size

    # -- JSON ---------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(asdict(self)))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        return dataclass_from_dict(cls, data, "the train config")

    def with_overrides(self, assignments: list[str]) -> "TrainConfig":
        """A copy with ``KEY=VALUE`` assignments applied (the CLI's ``--set``): KEY is a field, or
        a dotted path into a dict field (``data.frames``); VALUE is JSON (``1.5e-4``, ``[17, 33]``,
        ``true``), or else taken as a plain string. The result is validated like a loaded file."""
        data = self.to_dict()
        for item in assignments:
            key, sep, text = item.partition("=")
            if not sep or not key:
                raise ValueError(f"--set {item!r}: write KEY=VALUE, e.g. --set lr=1.5e-4")
            try:
                value = json.loads(text)
            except json.JSONDecodeError:
                value = text
            *parents, leaf = key.split(".")
            node = data
            for name in parents:
                if not isinstance(node.get(name), dict):
                    raise ValueError(f"--set {item!r}: {name!r} is not a section of the train "
                                     "config; dotted keys reach into dict fields such as "
                                     "data or model_overrides")
                node = node[name]
            if not parents and leaf not in data:
                raise ValueError(f"--set {item!r}: the train config has no field {leaf!r}")
            node[leaf] = value
        return TrainConfig.from_dict(data)

    @classmethod
    def load(cls, path: str | Path) -> "TrainConfig":
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"train config {path} does not exist; pass --config FILE.json")
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"train config {path} is not valid JSON: {exc}") from None
        return cls.from_dict(data)
