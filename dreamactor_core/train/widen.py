"""Widen a model file's VAE decoder, keeping what it computes, as the start of a decoder run.

    python -m dreamactor_core.train.widen --model IN.safetensors --decoder-base-channels 64 \\
        --out OUT.safetensors [--seed 0] [--dtype fp32|fp16|bf16]

OUT decodes every latent as IN does (model.vae_widen) and holds every other component
unchanged, so the DiT trained on IN's latent space keeps working; train the added width with
the ``vae_decoder`` stage and a config whose ``model_overrides.vae.decoder_base_channels``
matches (``configs/demo_64_vae_decoder_wide.json``).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

from ..model.bundle import DreamActorModel
from ..model.vae_widen import widen_decoder
from .export import report_written


def widen(model_path: str | Path, out: str | Path, decoder_base_channels: int, seed: int = 0,
          dtype: str | None = None) -> Path:
    model = DreamActorModel.load(model_path)
    model.vae = widen_decoder(model.vae, decoder_base_channels, seed)
    model.config = replace(model.config, vae=model.vae.config)
    return model.save(out, dtype=dtype)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dreamactor_core.train.widen",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="model file (.safetensors bundle)")
    parser.add_argument("--out", required=True, help="output .safetensors file")
    parser.add_argument("--decoder-base-channels", type=int, required=True,
                        help="new decoder width: a multiple of the current one")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weight split")
    parser.add_argument("--dtype", default="fp32", choices=["fp32", "fp16", "bf16"],
                        help="storage dtype (fp32 keeps the widened decoder exact)")
    args = parser.parse_args(argv)
    return report_written(lambda: widen(args.model, args.out, args.decoder_base_channels,
                                        args.seed, None if args.dtype == "fp32" else args.dtype))


if __name__ == "__main__":
    sys.exit(main())
