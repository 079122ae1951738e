"""Widen a model file's VAE decoder or deepen its DiT, keeping what it computes, as the start of
a training run.

    python -m dreamactor_core.train.widen --model IN.safetensors --out OUT.safetensors
        [--decoder-base-channels 64] [--decoder-temporal-mix 2] [--decoder-refine 32]
        [--decoder-reference 32] [--decoder-reference-attention 4]
        [--dit-depth 8] [--seed 0] [--dtype fp32|fp16|bf16]

OUT decodes every latent as IN does and holds every other component unchanged, so the DiT
trained on IN's latent space keeps working. ``--decoder-base-channels`` widens a causal 3D
decoder (model.vae_widen; train the added width with the ``vae_decoder`` stage and a config whose
``model_overrides.vae.decoder_base_channels`` matches, ``configs/demo_64_vae_decoder_wide.json``).
``--decoder-temporal-mix`` gives a frame_stack decoder a causal temporal convolution over that
many earlier frames, at zero (``VAEConfig.decoder_temporal_mix``; train it with
``vae_decoder_sampled`` and a config that sets it, ``configs/demo_64_fs_vae_decoder_mix.json``).
``--decoder-refine`` gives a frame_stack decoder a full-resolution refinement head of that width,
at zero (``VAEConfig.decoder_refine_channels``; ``configs/demo_64_fs_vae_decoder_refine.json``).
``--decoder-reference`` gives a frame_stack decoder a head of that width that corrects each frame
from the reference image, at zero (``VAEConfig.decoder_reference_channels``; train it with
``vae_decoder_sampled``, which decodes with the clip's reference, and a config that sets it).
``--decoder-reference-attention`` gives a frame_stack decoder an attention with that many heads
from its first level to the reference image's encoder features, at zero
(``VAEConfig.decoder_reference_attention``; trained like the reference head).
``--dit-depth`` gives the DiT more blocks, spread evenly between the trained ones, each a copy of
the block before it with its gates at zero (DreamActorDiT.deepened; train with stage 3 and
``--set model_overrides.dit.depth=N``).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import torch

from ..model.bundle import DreamActorModel
from ..model.frame_vae import FrameStackVAE
from ..model.vae_widen import widen_decoder
from .export import report_written


def insertion_points(depth: int, new_depth: int) -> list[int]:
    """Block indices to add a block after, going from ``depth`` to ``new_depth`` blocks with
    the added ones spread evenly (6 -> 8: after blocks 1 and 3)."""
    if new_depth <= depth:
        raise ValueError(f"--dit-depth {new_depth}: the DiT already has {depth} blocks; give a "
                         f"larger depth")
    added = new_depth - depth
    return [max(0, (k + 1) * depth // (added + 1) - 1) for k in range(added)]


def widen(model_path: str | Path, out: str | Path, decoder_base_channels: int | None = None,
          seed: int = 0, dtype: str | None = None, decoder_temporal_mix: int = 0,
          decoder_refine: int = 0, dit_depth: int = 0, decoder_reference: int = 0,
          decoder_reference_attention: int = 0) -> Path:
    if not (decoder_base_channels or decoder_temporal_mix or decoder_refine or dit_depth
            or decoder_reference or decoder_reference_attention):
        raise ValueError("nothing to widen: give --decoder-base-channels, --decoder-temporal-mix, "
                         "--decoder-refine, --decoder-reference, --decoder-reference-attention "
                         "and/or --dit-depth")
    model = DreamActorModel.load(model_path)
    if dit_depth:
        model.dit = model.dit.deepened(insertion_points(model.config.dit.depth, dit_depth))
    if decoder_base_channels:
        model.vae = widen_decoder(model.vae, decoder_base_channels, seed)
    additions = (("--decoder-temporal-mix", "decoder_temporal_mix", decoder_temporal_mix),
                 ("--decoder-refine", "decoder_refine_channels", decoder_refine),
                 ("--decoder-reference", "decoder_reference_channels", decoder_reference),
                 ("--decoder-reference-attention", "decoder_reference_attention",
                  decoder_reference_attention))
    # the new parts' inner layers start random (only their outputs are zero): seeded, so the
    # same command writes the same file
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for flag, field, size in additions:
            if not size:
                continue
            if not isinstance(model.vae, FrameStackVAE):
                raise ValueError(f"{flag} needs a frame_stack VAE; {model_path} has the "
                                 f"{model.config.vae.architecture} VAE")
            model.vae = model.vae.with_addition(field, size)
    model.config = replace(model.config, vae=model.vae.config, dit=model.dit.config)
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
    parser.add_argument("--decoder-reference", type=int, default=0,
                        help="width of a head that corrects each frame from the reference image "
                             "(frame_stack VAE)")
    parser.add_argument("--decoder-reference-attention", type=int, default=0,
                        help="heads of an attention from the decoder to the reference image's "
                             "encoder features (frame_stack VAE)")
    parser.add_argument("--dit-depth", type=int, default=0,
                        help="new number of DiT blocks (more than the model has)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the random weight split and of the added parts' random init")
    parser.add_argument("--dtype", default="fp32", choices=["fp32", "fp16", "bf16"],
                        help="storage dtype (fp32 keeps the widened decoder exact)")
    args = parser.parse_args(argv)
    return report_written(lambda: widen(args.model, args.out, args.decoder_base_channels,
                                        args.seed, None if args.dtype == "fp32" else args.dtype,
                                        args.decoder_temporal_mix, args.decoder_refine,
                                        args.dit_depth, args.decoder_reference,
                                        args.decoder_reference_attention))


if __name__ == "__main__":
    sys.exit(main())
