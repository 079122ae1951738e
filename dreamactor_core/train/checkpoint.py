"""Training checkpoints: safetensors only, written atomically.

Layout under ``<out>/checkpoints/``::

    step_00001000/model.safetensors      model-bundle format (model/weights.py): tensors
                                         "<component>.<key>", ModelConfig (and the motion
                                         encoders' configs) in the metadata, so
                                         weights.load_component and DreamActorModel.load
                                         (model/bundle.py) read it directly
    step_00001000/ema.safetensors        same format, EMA weights of the trained parameters
                                         (frozen parameters as in the model)
    step_00001000/optimizer.safetensors  optimizer state flattened to "<param name>/<key>"
                                         tensors; metadata: param groups, non-tensor state and
                                         the trainer state (step, stage, config) as JSON
    latest                               the name of the newest complete checkpoint

A checkpoint is written into a hidden temporary folder, then renamed into place with
``os.replace`` and only then named in ``latest`` (itself replaced atomically), so a run killed
at any moment leaves every previously completed checkpoint intact and loses at most the steps
since the last one. ``find_latest`` ignores temporary folders and falls back to the newest
complete folder if ``latest`` names a missing or damaged one.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from ..model.weights import FORMAT

FILES = ("model.safetensors", "ema.safetensors", "optimizer.safetensors")
OPTIMIZER_FORMAT = "dreamactor-optimizer-v1"


def _plain(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu").contiguous() for k, v in state.items()}


MOTION_CONFIG_KEY = "dreamactor_motion_config"  # model/bundle.py's metadata entry


def _bundle_metadata(state: dict[str, torch.Tensor], model_config_json: str,
                     motion_config_json: str | None) -> dict[str, str]:
    components = sorted({k.split(".", 1)[0] for k in state})
    meta = {"format": FORMAT, "components": json.dumps(components), "dtype": "float32",
            "dreamactor_config": model_config_json}
    if motion_config_json is not None:
        meta[MOTION_CONFIG_KEY] = motion_config_json
    return meta


def flatten_optimizer_state(state_dict: dict) -> tuple[dict[str, torch.Tensor], dict]:
    """A name-keyed optimizer state dict (torch.distributed.checkpoint.state_dict's
    ``get_optimizer_state_dict``) -> (tensors "<param>/<key>", JSON-able rest)."""
    tensors, scalars = {}, {}
    for pname, entry in state_dict["state"].items():
        for key, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{pname}/{key}"] = value
            else:
                scalars.setdefault(pname, {})[key] = value
    return tensors, {"param_groups": state_dict["param_groups"], "scalars": scalars}


def unflatten_optimizer_state(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    state: dict[str, dict] = {}
    for name, value in tensors.items():
        pname, key = name.rsplit("/", 1)
        state.setdefault(pname, {})[key] = value
    for pname, entry in meta.get("scalars", {}).items():
        state.setdefault(pname, {}).update(entry)
    groups = []
    for group in meta["param_groups"]:
        group = dict(group)
        if "betas" in group:
            group["betas"] = tuple(group["betas"])
        groups.append(group)
    return {"state": state, "param_groups": groups}


def _write(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
    save_file(_plain(tensors), str(path), metadata=metadata)


def _atomic_text(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def step_dir_name(step: int) -> str:
    return f"step_{int(step):08d}"


def write_checkpoint(root: str | Path, step: int, model_state: dict[str, torch.Tensor],
                     ema_state: dict[str, torch.Tensor], optimizer_state: dict, trainer_state: dict,
                     model_config_json: str, keep: int = 2,
                     motion_config_json: str | None = None) -> Path:
    """Writes one complete checkpoint; returns its folder. Keeps the newest ``keep``."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    final = root / step_dir_name(step)
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".tmp-{final.name}-"))
    try:
        for name, state in ((FILES[0], model_state), (FILES[1], ema_state)):
            _write(tmp / name, state,
                   _bundle_metadata(state, model_config_json, motion_config_json))
        opt_tensors, opt_meta = flatten_optimizer_state(optimizer_state)
        _write(tmp / FILES[2], opt_tensors, {"format": OPTIMIZER_FORMAT,
                                             "optimizer": json.dumps(opt_meta),
                                             "trainer_state": json.dumps(trainer_state)})
        for name in FILES:  # data on disk before the rename makes the folder visible
            with open(tmp / name, "rb") as f:
                os.fsync(f.fileno())
        if final.exists():  # re-saving the same step: move the old one aside first
            old = root / f".old-{final.name}-{os.getpid()}"
            os.replace(final, old)
            shutil.rmtree(old, ignore_errors=True)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _atomic_text(root / "latest", final.name)
    _prune(root, keep)
    return final


def _prune(root: Path, keep: int) -> None:
    done = sorted(p for p in root.glob("step_*") if p.is_dir())
    for old in done[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


def is_complete(folder: Path) -> bool:
    """All three files present and readable as safetensors (headers parse)."""
    try:
        for name in FILES:
            with safe_open(str(folder / name), framework="pt", device="cpu") as f:
                f.metadata()
        return True
    except (SafetensorError, OSError, ValueError):
        return False


def find_latest(root: str | Path) -> Path | None:
    """The newest complete checkpoint folder under ``root``, or None."""
    root = Path(root)
    if not root.is_dir():
        return None
    pointer = root / "latest"
    if pointer.is_file():
        named = root / pointer.read_text().strip()
        if named.name.startswith("step_") and is_complete(named):
            return named
    for folder in sorted((p for p in root.glob("step_*") if p.is_dir()), reverse=True):
        if is_complete(folder):
            return folder
    return None


def _read(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata() or {})
    except (SafetensorError, OSError, ValueError) as exc:
        raise ValueError(f"checkpoint file {path} is unreadable ({exc}); delete that checkpoint "
                         "folder to resume from the previous one") from None


def read_checkpoint(folder: str | Path, tensors: bool = True) -> dict:
    """{"model", "ema": name -> tensor, "optimizer": optimizer state dict, "trainer_state"}.
    ``tensors=False`` reads only the trainer state (model, ema, optimizer come back empty):
    FSDP ranks other than 0 receive the tensors by broadcast instead of reading the files."""
    folder = Path(folder)
    try:
        with safe_open(str(folder / FILES[2]), framework="pt", device="cpu") as f:
            meta = dict(f.metadata() or {})
    except (SafetensorError, OSError, ValueError) as exc:
        raise ValueError(f"checkpoint file {folder / FILES[2]} is unreadable ({exc})") from None
    if meta.get("format") != OPTIMIZER_FORMAT:
        raise ValueError(f"{folder / FILES[2]} is not a DreamActor optimizer checkpoint "
                         f"(format {meta.get('format')!r})")
    trainer_state = json.loads(meta["trainer_state"])
    if not tensors:
        return {"model": {}, "ema": {}, "optimizer": {}, "trainer_state": trainer_state}
    model, _ = _read(folder / FILES[0])
    ema, _ = _read(folder / FILES[1])
    opt_tensors, _ = _read(folder / FILES[2])
    optimizer = unflatten_optimizer_state(opt_tensors, json.loads(meta["optimizer"]))
    return {"model": model, "ema": ema, "optimizer": optimizer, "trainer_state": trainer_state}
