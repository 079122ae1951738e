"""Widen a model file's VAE decoder, keeping what it computes, as the start of a decoder run.

    python -m dreamactor_core.train.widen --model IN.safetensors --out OUT.safetensors
        [--decoder-base-channels 64] [--decoder-temporal-mix 2] [--decoder-refine 32] [--seed 0]
        [--dtype fp32|fp16|bf16]

OUT decodes every latent as IN does and holds every other component unchanged, so the DiT
trained on IN's latent space keeps working. ``--decoder-base-channels`` widens a causal 3D
decoder (model.vae_widen; train the added width with the ``vae_decoder`` stage and a config whose
``model_overrides.vae.decoder_base_channels`` matches, ``configs/demo_64_vae_decoder_wide.json``).
``--decoder-temporal-mix`` gives a frame_stack decoder a causal temporal convolution over that
many earlier frames, at zero (``VAEConfig.decoder_temporal_mix``; train it with
``vae_decoder_sampled`` and a config that sets it, ``configs/demo_64_fs_vae_decoder_mix.json``).
``--decoder-refine`` gives a frame_stack decoder a full-resolution refinement head of that width,
at zero (``VAEConfig.decoder_refine_channels``; ``configs/demo_64_fs_vae_decoder_refine.json``).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

from ..model.bundle import DreamActorModel
from ..model.frame_vae import FrameStackVAE
from ..model.vae_widen import widen_decoder
from .export import report_written


def widen(model_path: str | Path, out: str | Path, decoder_base_channels: int | None = None,
          seed: int = 0, dtype: str | None = None, decoder_temporal_mix: int = 0,
          decoder_refine: int = 0) -> Path:
    if not (decoder_base_channels or decoder_temporal_mix or decoder_refine):
        raise ValueError("nothing to widen: give --decoder-base-channels, --decoder-temporal-mix "
                         "and/or --decoder-refine")
    model = DreamActorModel.load(model_path)
    if decoder_base_channels:
        model.vae = widen_decoder(model.vae, decoder_base_channels, seed)
    additions = (("--decoder-temporal-mix", "decoder_temporal_mix", decoder_temporal_mix),
                 ("--decoder-refine", "decoder_refine_channels", decoder_refine))
    for flag, field, size in additions:
        if not size:
            continue
        if not isinstance(model.vae, FrameStackVAE):
            raise ValueError(f"{flag} needs a frame_stack VAE; {model_path} has the "
                             f"{model.config.vae.architecture} VAE")
        model.vae = model.vae.with_addition(field, size)
    model.config = replace(model.config, vae=model.vae.config)
    return model.save(out, dtype=dtype)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dreamactor_core.train.widen",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="model file (.safetensors bundle)")
    parser.add_argument("--out", required=True, help="output .safetensors file")
    parser.add_argument("--decoder-base-channels", type=int,
                        help="new decoder width: a multiple of the current one (causal3d VAE)")
    parser.add_argument("--decoder-temporal-mix", type=int, default=0,
                        help="earlier frames each decoded frame also sees (frame_stack VAE)")
    parser.add_argument("--decoder-refine", type=int, default=0,
                        help="width of a full-resolution refinement head (frame_stack VAE)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weight split")
    parser.add_argument("--dtype", default="fp32", choices=["fp32", "fp16", "bf16"],
                        help="storage dtype (fp32 keeps the widened decoder exact)")
    args = parser.parse_args(argv)
    return report_written(lambda: widen(args.model, args.out, args.decoder_base_channels,
                                        args.seed, None if args.dtype == "fp32" else args.dtype,
                                        args.decoder_temporal_mix, args.decoder_refine))


if __name__ == "__main__":
    sys.exit(main())
