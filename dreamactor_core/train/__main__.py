"""CLI: ``python -m dreamactor_core.train --config X.json --stage 1 --steps N --out DIR
[--resume] [--init PATH[:components]]... [--init-partial] [--fsdp] [--device auto|cpu|cuda]
[--mixed-precision auto|bf16|no] [--set KEY=VALUE]...``
(see __init__.py for torchrun)."""

from __future__ import annotations

import argparse
import sys

from .config import MIXED_PRECISION, STAGES, TrainConfig
from .distributed import shutdown
from .trainer import Trainer


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m dreamactor_core.train",
                                     description="Train a DreamActor model, one stage at a time.")
    parser.add_argument("--config", help="TrainConfig JSON file (defaults for missing keys)")
    parser.add_argument("--stage", required=True, choices=list(STAGES) + ["0"],
                        help="vae (= 0), vae_decoder, vae_decoder_sampled, vae_reference, 1, 2, 3 or audio")
    parser.add_argument("--steps", type=int, required=True,
                        help="total optimizer steps of this stage (a resumed run continues to it)")
    parser.add_argument("--out", required=True, help="run folder: checkpoints/, metrics.csv")
    parser.add_argument("--resume", action="store_true",
                        help="continue from --out's latest checkpoint")
    parser.add_argument("--init", action="append",
                        help="weights to start from: a model/ema .safetensors file or a previous "
                             "stage's run folder, optionally with ':comp1,comp2' to take only "
                             "those components (vae, pose_encoder, dit, face_encoder, "
                             "audio_encoder); repeat it to combine files, later ones win")
    parser.add_argument("--init-partial", action="store_true",
                        help="tensors whose shape differs from the model (e.g. the DiT's latent "
                             "in/out layers after a VAE with other latent_channels) keep their "
                             "fresh initialisation instead of failing")
    parser.add_argument("--fsdp", action="store_true", help="shard with FSDP instead of DDP")
    parser.add_argument("--device", default="auto", help="auto (cuda if available), cpu or cuda")
    parser.add_argument("--mixed-precision", choices=MIXED_PRECISION,
                        help="overrides the config's mixed_precision: auto (bf16 autocast where "
                             "it is native: CUDA, or a CPU with AVX512-BF16 or AMX; fp32 "
                             "elsewhere), bf16 (forced, emulated and slow on other CPUs; see "
                             "`python -m dreamactor_core.bench train`) or no")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override one config value (JSON value, dotted keys reach into "
                             "sections), e.g. --set lr=1.5e-4 --set seed=35 --set "
                             "data.frames=[17,33]; repeatable, checked like the config file")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        config = TrainConfig.load(args.config) if args.config else TrainConfig()
        config = config.with_overrides(args.set)
        if args.fsdp:
            config.fsdp = True
        if args.mixed_precision:
            config.mixed_precision = args.mixed_precision
        trainer = Trainer(config, args.stage, args.out, args.steps, resume=args.resume,
                          init_from=args.init, device=args.device,
                          init_partial=args.init_partial)
        rows = trainer.run()
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        shutdown()
    if rows and trainer.ctx.is_main:
        print(f"stage {trainer.stage}: step {rows[-1]['step']} loss {rows[-1]['loss']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
