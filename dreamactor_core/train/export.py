"""Export a training run's weights to a small shippable file.

    python -m dreamactor_core.train.export --run RUN_DIR --out FILE [--components vae ...]
        [--weights model|ema] [--dtype fp16|bf16|fp32]

Writes the chosen components of the run's newest complete checkpoint as one safetensors bundle
(model config in the metadata), atomically. With every component the file is a full model that
``DreamActorModel.load`` and the Model Loader read (the embedded demo model); with a subset it is
a starting point for the next run (``--init FILE``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..model import weights
from ..model.bundle import COMPONENTS, DreamActorModel
from . import checkpoint as ckpt
from .config import TrainConfig


def export(run: str | Path, out: str | Path, components=COMPONENTS, which: str = "model",
           dtype: str | None = "fp16") -> Path:
    run = Path(run)
    folder = ckpt.find_latest(run / "checkpoints") or ckpt.find_latest(run)
    if folder is None:
        raise ValueError(f"{run}: no complete checkpoint found (expected RUN/checkpoints/step_*/)")
    unknown = sorted(set(components) - set(COMPONENTS))
    if unknown:
        raise ValueError(f"unknown component(s) {unknown}; choose from {list(COMPONENTS)}")
    config = TrainConfig.load(run / "train_config.json")
    model = DreamActorModel(config.model_config(), config.face_motion_config(), config.audio_motion_config())
    source = folder / f"{which}.safetensors"
    for name in components:
        weights.load_component(source, name, getattr(model, name))
    if set(components) == set(COMPONENTS):
        return model.save(out, dtype=dtype)
    parts = {name: getattr(model, name) for name in components}
    return weights.save_bundle(out, parts, model.config, dtype)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dreamactor_core.train.export", description=__doc__.split("\n")[0])
    parser.add_argument("--run", required=True, help="training run folder (holds checkpoints/ and train_config.json)")
    parser.add_argument("--out", required=True, help="output .safetensors file")
    parser.add_argument("--components", nargs="+", default=list(COMPONENTS), choices=list(COMPONENTS))
    parser.add_argument("--weights", default="model", choices=["model", "ema"], help="raw weights or their EMA")
    parser.add_argument("--dtype", default="fp16", choices=["fp16", "bf16", "fp32"])
    args = parser.parse_args(argv)
    return report_written(lambda: export(args.run, args.out, args.components, args.weights,
                                         None if args.dtype == "fp32" else args.dtype))


def report_written(write) -> int:
    """A file-writing command's exit code: runs ``write()`` (which returns the file's path) and
    prints the file and its size, or the error (a ValueError) without a traceback."""
    try:
        path = write()
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
