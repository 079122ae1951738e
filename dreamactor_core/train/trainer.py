"""The training loop shared by every stage (see stages.py for what each stage trains).

One step: this rank's slice of the global batch (distributed.py) -> per-sample draws keyed by
stream position -> stage loss (bf16 autocast on CUDA when enabled) -> backward (DDP averages
gradients) -> gradient clipping -> AdamW with linear warm-up -> EMA of the trained weights. A
step whose gradient is not finite (a NaN or inf loss) changes no weight and is counted;
NONFINITE_LIMIT of them in a row stop the run with an error, its last checkpoint intact.
Rank 0 writes ``metrics.csv`` (step, stage, loss, lr, grad_norm, samples_per_s, skipped_total,
skipped, nonfinite_steps) and checkpoints (checkpoint.py); every rank reads them on
``resume``. A run is a pure function of (config, stage, init weights, data): all randomness
derives from ``config.seed`` and the step, so resuming from a checkpoint reproduces the
uninterrupted run bit for bit (and a run may resume on a different number of processes: the
global batch stays the same).
"""

from __future__ import annotations

import csv
import math
import time
import warnings
from contextlib import nullcontext
from pathlib import Path

import torch
from safetensors import safe_open
from torch.distributed.checkpoint.state_dict import (StateDictOptions, get_model_state_dict,
                                                     get_optimizer_state_dict,
                                                     set_model_state_dict,
                                                     set_optimizer_state_dict)
from torch.utils.data import DataLoader

from ..model.config import ModelConfig
from ..model.weights import load_component, load_component_partial, read_config
from . import checkpoint as ckpt
from .config import TrainConfig, growth_overrides
from .datasets import SyntheticClipDataset, collate
from .distributed import (DistContext, StepBatchSampler, barrier, init_distributed,
                          local_positions, mean_across_ranks, wrap_model)
from .modules import COMPONENTS, TrainModules, build_modules, estimate_latent_stats
from .stages import (DIT_STAGES, SAMPLED_STAGES, check_stage, freeze_for_stage, latent_shape,
                     make_draws, sampled_latents)

CSV_FIELDS = ("step", "stage", "loss", "lr", "grad_norm", "samples_per_s", "skipped_total",
              "skipped", "nonfinite_steps")
NONFINITE_LIMIT = 20  # non-finite steps in a row that stop a run: it has diverged


def make_dataset(config: TrainConfig, stage: str, ctx: DistContext | None = None):
    data, model = config.data, config.model_config()
    size = (model.frame_height, model.frame_width)
    if data["kind"] == "synthetic":
        return SyntheticClipDataset(seed=config.seed, num_clips=int(data.get("num_clips", 10_000)),
                                    frames=tuple(data.get("frames", (17, 17))), size=size,
                                    fps=float(data.get("fps", 25.0)),
                                    crop_size=config.face_crop_size,
                                    temporal_factor=model.vae.temporal_factor,
                                    with_audio=stage == "audio",
                                    driver_swap=float(data.get("driver_swap", 0.0)))
    from .video_dataset import VideoFolderDataset

    kwargs = {k: v for k, v in data.items() if k != "kind"}
    if ctx is not None and ctx.distributed and not ctx.is_main:
        barrier(ctx)  # rank 0 fills the cache first; the others then only read it
    dataset = VideoFolderDataset(size=size, crop_size=config.face_crop_size,
                                 temporal_factor=model.vae.temporal_factor, **kwargs)
    if ctx is not None and ctx.distributed and ctx.is_main:
        barrier(ctx)
    return dataset


def parse_init(spec: str | Path) -> tuple[Path, list[str] | None]:
    """``PATH`` or ``PATH:comp1,comp2`` -> (path, the components to take from it or None = all)."""
    text = str(spec)
    head, sep, tail = text.rpartition(":")
    if sep and head and tail and all(c in COMPONENTS for c in tail.split(",")):
        return Path(head), tail.split(",")
    if sep and head and Path(head).exists() and not Path(text).exists():
        raise ValueError(f"--init {text}: {tail!r} is not a list of components; choose from "
                         f"{', '.join(COMPONENTS)} (comma-separated, e.g. {head}:dit,pose_encoder)")
    return Path(text), None


def load_init(modules: TrainModules, path: str | Path, components: list[str] | None = None,
              partial: bool = False) -> list[str]:
    """Loads every component stored in ``path`` (or only ``components``) into ``modules``;
    returns the loaded component names. ``path`` is a .safetensors bundle (a checkpoint's
    model.safetensors or ema.safetensors), or a run / checkpoints / step folder, whose newest
    checkpoint's raw (non-EMA) weights are used: pass the ema.safetensors file to start from
    the EMA instead. With ``partial``, tensors stored with another shape keep their fresh
    initialisation (weights.load_component_partial) and are printed."""
    path = Path(path)
    if path.is_dir():
        folder = (path if ckpt.is_complete(path) else
                  ckpt.find_latest(path / "checkpoints") or ckpt.find_latest(path))
        if folder is None:
            raise ValueError(f"--init {path}: no complete checkpoint found there; pass a "
                             "model.safetensors / ema.safetensors file")
        path = folder / "model.safetensors"
    if not path.is_file():
        raise ValueError(f"--init {path} does not exist")
    with safe_open(str(path), framework="pt", device="cpu") as f:
        present = {k.split(".", 1)[0] for k in f.keys()}
    if components is not None:
        missing = [name for name in components if name not in present]
        if missing:
            raise ValueError(f"--init {path}: it holds no {missing[0]!r} (it has {sorted(present)})")
    loaded = [name for name in COMPONENTS
              if name in present and (components is None or name in components)]
    if not loaded:
        raise ValueError(f"--init {path} holds none of the components {COMPONENTS}")
    stored = stored_model_config(path)
    if stored is not None and "dit" in loaded:
        warn_if_clean_context_dropped(modules, path, stored)
    if stored is not None and not partial:
        check_grown_parts(modules, path, stored, loaded)
    for name in loaded:
        if not partial:
            load_component(path, name, getattr(modules, name))
            continue
        kept = load_component_partial(path, name, getattr(modules, name))
        if kept:
            print(f"--init {path}: {len(kept)} tensor(s) of {name} have another shape there and "
                  f"keep their fresh initialisation: {', '.join(kept)}", flush=True)
    return loaded


def stored_model_config(path: str | Path) -> ModelConfig | None:
    """The ModelConfig in a weights file's metadata; None for a file without one (a checkpoint's
    model.safetensors), where the strict load speaks for itself."""
    try:
        return read_config(path)
    except ValueError:
        return None


def warn_if_clean_context_dropped(modules: TrainModules, path: Path, stored) -> None:
    """A run exports its own config: a DiT trained to continue from a clean first latent, loaded
    into a run whose config lacks ``dit.clean_context`` (``p_clean_first`` 0, e.g. a decoder-only
    recipe), would come out marked as not trained for it, and the pipeline would sample its
    continued segments on the noised path instead."""
    if stored.dit.clean_context and not modules.model_config.dit.clean_context:
        warnings.warn(f"--init {path}: its DiT was trained with clean context but this run's config "
                      "lacks it, so the exported model will not use it; set "
                      '"model_overrides": {"dit": {"clean_context": true}} (or p_clean_first > 0)',
                      RuntimeWarning, stacklevel=3)


def check_grown_parts(modules: TrainModules, path: Path, stored, loaded: list[str]) -> None:
    """A file that ``train.widen`` grew (decoder parts, DiT depth) fits only a run whose config
    gives the same sizes; name the ``--set`` overrides that make it fit, before the strict load
    fails on the first extra or missing tensor. ``stored``: the file's ModelConfig."""
    wanted = [o for o, mine in zip(growth_overrides(stored), growth_overrides(modules.model_config))
              if o != mine and o.split(".")[1] in loaded]  # model_overrides.<component>.<field>
    if wanted:
        raise ValueError(f"--init {path}: its model has decoder parts or a DiT depth this run's "
                         f"config does not give; add {' '.join('--set ' + o for o in wanted)}")


def load_inits(modules: TrainModules, specs, partial: bool = False) -> list[str]:
    """Applies ``--init`` specs (see parse_init) in order, later ones overriding earlier ones."""
    if isinstance(specs, (str, Path)):
        specs = [specs]
    loaded = []
    for spec in specs:
        path, components = parse_init(spec)
        loaded += load_init(modules, path, components, partial)
    return loaded


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (oneDNN's AVX512-BF16 / AMX check). On an AVX2-only
    CPU bf16 autocast is emulated: a VAE decoder step measured 70 s against 1.3 s in fp32."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a build without oneDNN: nothing native either
        return False


def resolve_bf16(mixed_precision: str, device_type: str) -> bool:
    """Whether to autocast to bf16. "auto" picks it where it is native: CUDA, or a CPU with
    AVX512-BF16 / AMX; "bf16" forces it (the caller warns where the CPU emulates it)."""
    if mixed_precision == "bf16":
        return True
    if mixed_precision == "auto":
        return device_type == "cuda" or (device_type == "cpu" and cpu_has_native_bf16())
    return False


class Trainer:
    def __init__(self, config: TrainConfig, stage, out_dir: str | Path, steps: int,
                 resume: bool = False, init_from=None, dataset=None,
                 device: str = "auto", ctx: DistContext | None = None,
                 init_partial: bool = False):
        if steps < 0:
            raise ValueError(f"steps must be >= 0, got {steps}")
        self.config, self.stage, self.steps = config, check_stage(stage), int(steps)
        self.out = Path(out_dir)
        self.ctx = ctx or init_distributed(device)
        self.ckpt_root = self.out / "checkpoints"
        found = ckpt.find_latest(self.ckpt_root)
        if found is not None and not resume:
            raise ValueError(f"{self.out} already holds checkpoints ({found.name}); pass --resume "
                             "to continue that run or choose a new --out folder")

        if self.stage in ("2", "audio") and not init_from and not resume:
            raise ValueError(f"stage {self.stage} trains only the motion encoders on top of a "
                             "trained model (a fresh DiT's zero-initialised output passes no "
                             "gradient to them): start it from a previous stage with "
                             "--init RUN_DIR")
        if self.stage in SAMPLED_STAGES and not init_from and not resume:
            raise ValueError(f"stage {self.stage} decodes what a trained model samples: "
                             "start it from one with --init MODEL_OR_RUN")
        self.modules = build_modules(config, self.ctx.device)
        if init_from:
            load_inits(self.modules, init_from, init_partial)
        if (self.stage in SAMPLED_STAGES and init_from
                and not self.modules.vae.has_latent_stats):
            raise ValueError(f"stage {self.stage}: the --init model has no latent mean/std "
                             "(its DiT never trained on this VAE); run a DiT stage first")
        if self.stage == "vae_reference" and not self.modules.vae.uses_reference:
            raise ValueError("stage vae_reference trains the decoder's reference parts, and this "
                             "model's decoder has none: add one with python -m "
                             "dreamactor_core.train.widen --decoder-reference WIDTH or "
                             "--decoder-reference-attention HEADS (or set "
                             "model_overrides.vae.decoder_reference_channels / "
                             "decoder_reference_attention)")
        self.trainable = freeze_for_stage(self.modules, self.stage)
        if dataset is None:
            dataset = make_dataset(config, self.stage, self.ctx)
        self.dataset = dataset
        if len(self.dataset) == 0:
            raise ValueError("the dataset is empty (every video was skipped?): "
                             f"skipped = {getattr(self.dataset, 'skipped', {})}")
        state = None
        if resume and found is not None:  # under FSDP only rank 0 loads tensors, then broadcasts
            state = ckpt.read_checkpoint(found, tensors=self.ctx.is_main or not self._sharded)
        if state is not None and state["trainer_state"]["stage"] != self.stage:
            raise ValueError(f"the checkpoint in {self.out} is from stage "
                             f"{state['trainer_state']['stage']}, not {self.stage}; resume with "
                             f"--stage {state['trainer_state']['stage']} or start a new --out")
        if state is None and self.stage == "vae" and self.modules.vae.has_latent_stats:
            # Training the encoder moves the latent space, so statistics measured on the old
            # encoder (e.g. from an --init of a trained model) would mis-scale every later DiT
            # stage; unset, they are re-measured when the next DiT stage starts.
            self.modules.vae.reset_latent_stats()
            if self.ctx.is_main:
                print("vae stage: latent mean/std reset; the next DiT stage re-measures them "
                      "on the retrained encoder")
        if state is None and self.stage in DIT_STAGES and not self.modules.vae.has_latent_stats:
            count = min(config.latent_stats_clips, len(self.dataset))
            videos = [self.dataset[i]["video"] for i in range(count)]
            estimate_latent_stats(self.modules.vae, videos)

        self.model = wrap_model(self.modules, self.ctx, config.fsdp)
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(params, lr=config.lr, betas=config.betas,
                                           weight_decay=config.weight_decay)
        self.start_step = 0
        self.nonfinite_steps = self._nonfinite_in_a_row = 0
        if state is not None:
            self._restore(state)
        self.ema = {n: p.detach().clone() for n, p in self._trained()}
        if state is not None:
            self._restore_ema(state["ema"])
        self.step = self.start_step
        self.use_bf16 = resolve_bf16(config.mixed_precision, self.ctx.device.type)
        if self.use_bf16 and self.ctx.device.type == "cpu" and not cpu_has_native_bf16():
            warnings.warn("mixed_precision bf16 on a CPU without native bf16 (no AVX512-BF16 or "
                          "AMX): each step emulates it and can run ~50x slower than fp32; pass "
                          "--mixed-precision no", RuntimeWarning, stacklevel=2)

    # -- state -----------------------------------------------------------------------------
    def _trained(self):
        return [(n, p) for n, p in self.model.named_parameters() if p.requires_grad]

    @property
    def _sharded(self) -> bool:
        return self.config.fsdp and self.ctx.distributed

    def _options(self) -> StateDictOptions:
        return StateDictOptions(full_state_dict=True, cpu_offload=self._sharded)

    def _load_options(self) -> StateDictOptions:
        return StateDictOptions(full_state_dict=True, broadcast_from_rank0=self._sharded)

    def model_state(self) -> dict[str, torch.Tensor]:
        """Full state dict; under FSDP (cpu_offload) only rank 0 receives it, others get {}."""
        return get_model_state_dict(self.model, options=self._options())

    @torch.no_grad()
    def _swap_ema(self) -> None:
        for n, p in self._trained():
            tmp = p.detach().clone()
            p.copy_(self.ema[n])
            self.ema[n].copy_(tmp)

    def ema_state(self) -> dict[str, torch.Tensor]:
        """The full model state with the EMA in place of the trained parameters."""
        self._swap_ema()
        try:
            return {k: v.clone() for k, v in self.model_state().items()}
        finally:
            self._swap_ema()

    def _restore(self, state: dict) -> None:
        set_model_state_dict(self.model, state["model"], options=self._load_options())
        set_optimizer_state_dict(self.model, self.optimizer, state["optimizer"],
                                 options=self._load_options())
        self.start_step = int(state["trainer_state"]["step"])
        self.nonfinite_steps = int(state["trainer_state"].get("nonfinite_steps", 0))

    @torch.no_grad()
    def _restore_ema(self, ema: dict[str, torch.Tensor]) -> None:
        # Load the EMA file through the model (which shards it under FSDP), then put the
        # trained parameters' own (local) values back; frozen ones are equal in both files.
        current = {n: p.detach().clone() for n, p in self._trained()}
        set_model_state_dict(self.model, ema, options=self._load_options())
        for n, p in self._trained():
            self.ema[n].copy_(p)
            p.copy_(current[n])

    def save(self) -> Path | None:
        model, ema = self.model_state(), self.ema_state()
        opt = get_optimizer_state_dict(self.model, self.optimizer, options=self._options())
        path = None
        if self.ctx.is_main:
            trainer_state = {"step": self.step, "stage": self.stage,
                             "world_size": self.ctx.world_size, "config": self.config.to_dict(),
                             "nonfinite_steps": self.nonfinite_steps}
            path = ckpt.write_checkpoint(self.ckpt_root, self.step, model, ema, opt, trainer_state,
                                         self.modules.model_config.to_json(),
                                         keep=self.config.keep_checkpoints,
                                         motion_config_json=self.modules.motion_config_json())
        barrier(self.ctx)
        return path

    # -- loop ------------------------------------------------------------------------------
    def _loader(self):
        sampler = StepBatchSampler(len(self.dataset), self.config.batch_size, self.config.seed,
                                   self.ctx, self.step, self.steps, self.config.data_echo)
        return DataLoader(self.dataset, batch_sampler=sampler, collate_fn=collate,
                          num_workers=self.config.num_workers)

    def lr_at(self, step: int) -> float:
        """Linear warmup, then constant or a cosine down to ``lr * min_lr_ratio`` at the run's
        last step (``--steps``), so a short run ends annealed instead of mid-plateau."""
        c = self.config
        warm = min(1.0, (step + 1) / max(1, c.warmup_steps))
        if c.lr_schedule == "constant" or step < c.warmup_steps:
            return c.lr * warm
        span = max(1, self.steps - c.warmup_steps)
        progress = min(1.0, (step - c.warmup_steps) / span)
        return c.lr * (c.min_lr_ratio + (1 - c.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))

    def ema_decay_at(self, step: int) -> float:
        """The configured decay, held lower over the first steps ((1 + k) / (10 + k) at step k)
        so that the EMA of a short run is not dominated by its initial weights."""
        return min(self.config.ema_decay, (1 + step) / (10 + step))

    def _to_device(self, batch: dict) -> dict:
        return {k: v.to(self.ctx.device) if isinstance(v, torch.Tensor) else v
                for k, v in batch.items()}

    def train_step(self, batch: dict) -> tuple[float, float]:
        device = self.ctx.device
        batch = self._to_device(batch)
        draws = None
        if self.stage != "audio":
            positions = local_positions(self.step, self.config.batch_size, self.ctx)
            shape = latent_shape(self.modules.model_config, batch["video"].shape)
            draws = make_draws(self.config, self.step, positions, shape).to(device)
        lr = self.lr_at(self.step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        autocast = (torch.autocast(device.type, dtype=torch.bfloat16) if self.use_bf16
                    else nullcontext())
        with autocast:
            loss, _ = self.model(batch, draws, self.stage)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        params = [p for _, p in self._trained()]
        grad_norm = torch.nn.utils.clip_grad_norm_(params, self.config.grad_clip)  # DTensor-aware
        if hasattr(grad_norm, "full_tensor"):  # FSDP2: the norm is a sharded DTensor
            grad_norm = grad_norm.full_tensor()
        # the norm is of the reduced gradient, the same on every rank: all ranks skip together
        if torch.isfinite(grad_norm):
            self._nonfinite_in_a_row = 0
            self.optimizer.step()
            with torch.no_grad():
                for n, p in self._trained():
                    self.ema[n].lerp_(p.detach(), 1.0 - self.ema_decay_at(self.step))
        else:
            self.nonfinite_steps += 1
            self._nonfinite_in_a_row += 1
            if self._nonfinite_in_a_row >= NONFINITE_LIMIT:
                raise FloatingPointError(
                    f"stage {self.stage}: the loss or its gradient was not finite (NaN or inf) "
                    f"for {NONFINITE_LIMIT} steps in a row, up to step {self.step + 1}: the run "
                    f"has diverged and stops here. Those steps changed no weight, and the last "
                    f"checkpoint in {self.ckpt_root} is intact; restart from it (or from the "
                    f"--init file) with a lower lr, or with --mixed-precision no")
        self.step += 1
        return mean_across_ranks(loss, self.ctx), float(grad_norm)

    def _open_csv(self):
        path = self.out / "metrics.csv"
        rows = []
        if path.is_file():  # drop rows logged after the checkpoint we resumed from
            with open(path, newline="") as f:
                rows = [r for r in csv.DictReader(f) if int(r["step"]) <= self.start_step]
        f = open(path, "w", newline="")
        writer = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        writer.writeheader()
        writer.writerows(rows)
        f.flush()
        return f, writer

    def _steps_on_batch(self) -> int:
        """data_echo steps per loaded batch; fewer when a run resumed mid-batch or at its end."""
        echo = self.config.data_echo
        return min(echo - self.step % echo, self.steps - self.step)

    def _row(self, loss: float, grad_norm: float, samples_per_s: float) -> dict:
        skipped = dict(getattr(self.dataset, "skipped", {}))
        return {"step": self.step, "stage": self.stage, "loss": f"{loss:.6g}",
                "lr": f"{self.lr_at(self.step - 1):.6g}", "grad_norm": f"{grad_norm:.6g}",
                "samples_per_s": f"{samples_per_s:.3f}", "skipped_total": sum(skipped.values()),
                "skipped": ";".join(f"{k}={v}" for k, v in sorted(skipped.items())),
                "nonfinite_steps": self.nonfinite_steps}

    def run(self) -> list[dict]:
        """Trains up to ``steps`` (total, counting resumed ones); returns the logged rows."""
        csv_file = writer = None
        if self.ctx.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            (self.out / "train_config.json").write_text(self.config.to_json())
            csv_file, writer = self._open_csv()
        self.modules.train()
        logged, tick, samples = [], time.perf_counter(), 0
        try:
            for batch in self._loader():
                batch = self._to_device(batch)  # once for all its data_echo steps
                if self.stage in SAMPLED_STAGES:  # the frozen model samples, once too
                    positions = local_positions(self.step, self.config.batch_size, self.ctx)
                    batch = sampled_latents(self.modules, batch, self.config, self.step, positions)
                for _ in range(self._steps_on_batch()):
                    loss, grad_norm = self.train_step(batch)
                    samples += batch["video"].shape[0] * self.ctx.world_size
                    if self.step % self.config.log_every == 0 or self.step == self.steps:
                        now = time.perf_counter()
                        logged.append(self._row(loss, grad_norm, samples / max(now - tick, 1e-9)))
                        tick, samples = now, 0
                        if writer is not None:
                            writer.writerow(logged[-1])
                            csv_file.flush()
                    if self.step % self.config.checkpoint_every == 0 or self.step == self.steps:
                        self.save()
        finally:
            if csv_file is not None:
                csv_file.close()
        return logged
