"""python -m dreamactor_core.eval [--model PATH] [--clips N --frames F --steps S ...]

Self-reenactment evaluation (eval/reenactment.py) of a model bundle or of a training run's
newest checkpoint (its EMA weights). Prints a table and, as the LAST line, one JSON object with
every figure; writes report.json and sheet.png into --out. With --vae-only it scores the
autoencoder's reconstruction of the same clips alone (no sampling, no sheet): seconds, not
minutes.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
from pathlib import Path

import torch

from ..model.bundle import DreamActorModel
from ..train.checkpoint import find_latest
from .reenactment import BASELINES, SCORES, EvalSettings, evaluate, evaluate_reconstruction
from .sheet import build_sheet, write_png

DEMO_MODEL = Path(__file__).resolve().parent.parent / "embedded" / "dreamactor_demo.safetensors"


def resolve_model(path: str | None) -> Path:
    """A bundle file, a checkpoint folder holding ema.safetensors, or a training run folder
    (its ``checkpoints/`` or itself searched with find_latest) -> the bundle file to load."""
    if path is None:
        if not DEMO_MODEL.is_file():
            raise ValueError(f"no --model given and the embedded demo model {DEMO_MODEL} is "
                             "missing; pass --model with a .safetensors bundle or a training "
                             "run's folder")
        return DEMO_MODEL
    p = Path(path)
    if p.is_file():
        return p
    if p.is_dir():
        if (p / "ema.safetensors").is_file():
            return p / "ema.safetensors"
        for root in (p / "checkpoints", p):
            latest = find_latest(root)
            if latest is not None:
                return latest / "ema.safetensors"
        raise ValueError(f"--model {p} is a folder without ema.safetensors and without complete "
                         "checkpoints (step_*/); pass a bundle file or a training run's folder")
    raise ValueError(f"--model {p} does not exist; pass a .safetensors bundle or a training "
                     "run's folder")


def _json_safe(value):
    """inf / nan -> None recursively (strict JSON has no such numbers)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def _fmt(value, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and math.isinf(value):
        return "inf"
    return f"{value:.{digits}f}"


def table(summary: dict) -> str:
    keys = SCORES
    rows = [("model (video)", summary), ("model (audio)", summary["audio"]),
            ("model (cross)", summary["cross"])]
    rows += [(name, summary["baselines"][name]) for name in BASELINES]
    lines = [f"{'':16}" + "".join(f"{k:>13}" for k in keys)]
    for name, scores in rows:
        lines.append(f"{name:16}" + "".join(f"{_fmt(scores.get(k)):>13}" for k in keys))
    closed = summary["baselines"]["closed_mouth"]["mouth_error"]
    mouth_column = 13 * keys.index("mouth_error")
    lines.append(f"{'closed mouth':16}{'':{mouth_column}}{_fmt(closed):>13}")
    lines.append(f"VAE reconstruction PSNR {_fmt(summary['vae_psnr'], 2)} dB (moving pixels "
                 f"{_fmt(summary.get('vae_moving_psnr'), 2)} dB, SSIM "
                 f"{_fmt(summary.get('vae_ssim'))}, reference image "
                 f"alone {_fmt(summary.get('vae_reference_psnr'), 2)} dB), mouth error "
                 f"{_fmt(summary['vae_mouth_error'])}; mouth measure floor "
                 f"{_fmt(summary['mouth_floor'])} over {summary['mouth_clips']} clip(s)")
    lines.append(f"mouth opening kept by the VAE (nearest of 11 renders, all through it) "
                 f"{_fmt(summary.get('vae_mouth_kept'))}; the same on the truth "
                 f"{_fmt(summary.get('mouth_match_floor'))}")
    lines.append(f"latent_jump of the ground truth {_fmt(summary.get('truth_latent_jump'))}, "
                 f"of the VAE reconstruction {_fmt(summary.get('vae_latent_jump'))}")
    per_draw = summary.get("per_draw", {}).get("video", {})
    if len(per_draw.get("psnr", [])) > 1:
        spans = ", ".join(f"{key} {_fmt(min(v))}..{_fmt(max(v))}" for key, v in per_draw.items()
                          if None not in v)
        lines.append(f"video driver over {len(per_draw['psnr'])} draws (each draw's mean): {spans}")
    return "\n".join(lines + bar_lines(summary))


def bar_lines(summary: dict) -> list[str]:
    return [f"  {'PASS' if summary['meets'][name] else 'fail'} {name} {bar['op']} "
            f"{_fmt(bar['value'])}" for name, bar in summary["bars"].items()]


def reconstruction_table(summary: dict) -> str:
    lines = [f"VAE reconstruction over {len(summary['clip_seeds'])} clip(s): PSNR "
             f"{_fmt(summary['vae_psnr'], 2)} dB, moving pixels "
             f"{_fmt(summary['vae_moving_psnr'], 2)} dB, SSIM {_fmt(summary['vae_ssim'])}, "
             f"reference image alone {_fmt(summary['vae_reference_psnr'], 2)} dB",
             f"latent_jump of the ground truth {_fmt(summary['truth_latent_jump'])}, of the VAE "
             f"reconstruction {_fmt(summary['vae_latent_jump'])}"]
    return "\n".join(lines + bar_lines(summary))


def _write_json(path: Path, data: dict) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=2)
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    defaults = EvalSettings()
    parser = argparse.ArgumentParser(prog="python -m dreamactor_core.eval", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model",
                        help=f"bundle file or training run folder (default: {DEMO_MODEL})")
    parser.add_argument("--clips", type=int, default=defaults.clips)
    parser.add_argument("--frames", type=int, default=defaults.frames,
                        help="frames per clip; more than the model's segment (17 for the demo "
                             "model) generates several segments and measures seam_error")
    parser.add_argument("--steps", type=int, default=defaults.steps)
    parser.add_argument("--ref-scale", type=float, default=defaults.ref_scale)
    parser.add_argument("--motion-scale", type=float, default=defaults.motion_scale)
    parser.add_argument("--solver", default=defaults.solver)
    parser.add_argument("--shift", type=float, default=defaults.shift)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--draws", type=int, default=defaults.draws,
                        help="samples per clip and driver with different noise; every figure is "
                             "their mean and per_draw in the report gives each draw's (N times "
                             "the generation time)")
    parser.add_argument("--mean-clips", type=int, default=defaults.mean_clips)
    parser.add_argument("--out", default="eval_out", help="folder for report.json and sheet.png")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--vae-only", action="store_true",
                        help="score only the VAE's reconstruction of the same clips (the vae_* "
                             "figures and their bar; --steps, --draws and the scales are unused)")
    args = parser.parse_args(argv)

    try:
        path = resolve_model(args.model)
        model = DreamActorModel.load(path, device=args.device)
        settings = EvalSettings(clips=args.clips, frames=args.frames, steps=args.steps,
                                ref_scale=args.ref_scale, motion_scale=args.motion_scale,
                                solver=args.solver, shift=args.shift, seed=args.seed,
                                draws=args.draws, mean_clips=args.mean_clips)
        def progress(i: int, n: int) -> None:
            print(f"clip {i}/{n} done", file=sys.stderr)

        if args.vae_only:
            summary, results = evaluate_reconstruction(model, settings, progress), None
        else:
            summary, results = evaluate(model, settings, progress=progress)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    summary["model"] = str(path)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if results is None:
        print(reconstruction_table(summary))
    else:
        write_png(out / "sheet.png", build_sheet(results))
        print(table(summary))
    summary = _json_safe(summary)
    _write_json(out / "report.json", summary)
    print(json.dumps(summary, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
