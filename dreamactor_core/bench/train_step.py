"""``python -m dreamactor_core.bench train``: one training step in fp32 beside the same step
under bf16 autocast, per stage, in one run.

A step is exactly the trainer's (``Trainer.train_step``: forward with the stage's loss, backward,
gradient clipping, AdamW, EMA) on one fixed batch of the config's data, with ``mixed_precision``
"no" and then "bf16". Both precisions start from the same weights; the loss of each on the
first (untimed) step, from identical weights and draws, shows what bf16 changes numerically.
Timed: best and median of ``--repeats`` steps after that warm-up step. On CPUs with AMX
(``torch.cpu._is_amx_tile_supported``) oneDNN runs bf16 matmuls and convolutions on the tile
unit, and AVX512-BF16 alone still pays (1.17x / 1.83x measured); without either, bf16 is
emulated and far slower than fp32, so ``mixed_precision: auto`` turns it on for CUDA and for a
CPU with native bf16 only (``trainer.cpu_has_native_bf16``).
The last printed line is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from dataclasses import replace
from pathlib import Path

import torch

from ..train.config import STAGES, TrainConfig, growth_overrides
from ..train.datasets import collate
from ..train.stages import check_stage
from ..train.trainer import Trainer, make_dataset, stored_model_config
from .timing import time_calls

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CONFIG = REPO_ROOT / "dreamactor_core" / "train" / "configs" / "demo_64_fs_stage3.json"
DEFAULT_MODEL = REPO_ROOT / "dreamactor_core" / "embedded" / "dreamactor_demo.safetensors"
PRECISIONS = ("no", "bf16")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default=str(DEFAULT_CONFIG), help="TrainConfig JSON")
    parser.add_argument("--init", default=str(DEFAULT_MODEL),
                        help="weights to start from ('' = random initialisation)")
    parser.add_argument("--set", action="append", default=None, metavar="KEY=VALUE",
                        help="override a config field, as the trainer's --set (default: the --init "
                             "file's decoder parts and DiT depth, so that it loads)")
    parser.add_argument("--stages", nargs="+", default=["vae", "3"],
                        help=f"stages to time, from {', '.join(STAGES)}")
    parser.add_argument("--batch", type=int, help="clips per step (default: the config's)")
    parser.add_argument("--repeats", type=int, default=5, help="timed steps per figure")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")


def _check_args(args) -> None:
    for name in ("repeats", "threads"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name} must be >= 1, got {getattr(args, name)}")
    if args.batch is not None and args.batch < 1:
        raise ValueError(f"--batch must be >= 1, got {args.batch}")
    for stage in args.stages:
        if check_stage(stage) in ("2", "audio") and not args.init:
            raise ValueError(f"stage {stage} needs trained weights: pass --init")
    if not Path(args.config).is_file():
        raise ValueError(f"--config {args.config} does not exist")
    if args.init and not Path(args.init).exists():
        raise ValueError(f"--init {args.init} does not exist; pass '' for random weights")


def fitted_config(config: TrainConfig, init: str, assignments: list[str] | None) -> TrainConfig:
    """``config`` with the ``--set`` assignments, or without them, with the decoder parts and DiT
    depth of the ``--init`` model file (what train.widen grew), so the default command times the
    embedded model on its recipe."""
    if assignments is None:
        stored = stored_model_config(init) if init and Path(init).is_file() else None
        assignments = [] if stored is None else growth_overrides(stored)
    return config.with_overrides(assignments)


def bench_stage(config: TrainConfig, stage: str, init: str, dataset, batch: dict,
                repeats: int, device: str) -> dict:
    """{precision: {"ms", "median_ms", "first_loss"}} for one stage."""
    out = {}
    for precision in PRECISIONS:
        with tempfile.TemporaryDirectory() as tmp:
            trainer = Trainer(replace(config, mixed_precision=precision), stage, tmp,
                              steps=repeats + 1, init_from=init or None, dataset=dataset,
                              device=device)
            trainer.modules.train()
            first_loss, _ = trainer.train_step(batch)  # also the warm-up
            timed = time_calls(lambda: trainer.train_step(batch), repeats, trainer.ctx.device)
        out[precision] = {**timed, "first_loss": float(first_loss)}
    return out


def _cpu_features() -> dict:
    probes = {"avx512_bf16": "_is_avx512_bf16_supported", "amx_tile": "_is_amx_tile_supported"}
    features = {name: bool(getattr(torch.cpu, fn, lambda: False)()) for name, fn in probes.items()}
    features["capability"] = torch.backends.cpu.get_cpu_capability()
    return features


def _print_table(res: dict) -> None:
    cpu = res["cpu"]
    print(f"training step, fp32 vs bf16 autocast: config {Path(res['config']).name}, device "
          f"{res['device']}, threads {res['threads']}, CPU {cpu['capability']} (AMX "
          f"{'yes' if cpu['amx_tile'] else 'no'}, AVX512-BF16 "
          f"{'yes' if cpu['avx512_bf16'] else 'no'}), best of {res['repeats']}")
    print(f"{'stage':<13}{'batch':>10}{'fp32 ms':>10}{'bf16 ms':>10}{'speed-up':>10}"
          f"{'fp32 loss':>12}{'bf16 loss':>12}{'rel. diff':>11}")
    for stage, r in res["stages"].items():
        fp32, bf16 = r["no"], r["bf16"]
        print(f"{stage:<13}{r['batch']:>10}{fp32['ms']:>10.0f}{bf16['ms']:>10.0f}"
              f"{r['speedup']:>9.2f}x{fp32['first_loss']:>12.5f}{bf16['first_loss']:>12.5f}"
              f"{r['loss_rel_diff']:>10.2%}")


def run(args) -> int:
    _check_args(args)
    torch.set_num_threads(args.threads)
    base = fitted_config(TrainConfig.load(args.config), args.init, args.set)
    if args.batch is not None:
        base.batch_size = args.batch
    res = {"config": str(args.config), "init": args.init, "device": args.device,
           "threads": args.threads, "repeats": args.repeats, "cpu": _cpu_features(), "stages": {}}
    for stage in dict.fromkeys(check_stage(s) for s in args.stages):
        dataset = make_dataset(base, stage)
        batch = collate([dataset[i] for i in range(base.batch_size)])
        r = bench_stage(base, stage, args.init, dataset, batch, args.repeats, args.device)
        r["batch"] = f"{base.batch_size}x{batch['video'].shape[2]}"
        r["speedup"] = r["no"]["ms"] / r["bf16"]["ms"]
        r["loss_rel_diff"] = abs(r["bf16"]["first_loss"] - r["no"]["first_loss"]) / max(
            abs(r["no"]["first_loss"]), 1e-12)
        res["stages"][stage] = r
    _print_table(res)
    print(json.dumps(res, sort_keys=True))
    return 0
