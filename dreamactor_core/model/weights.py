"""Model bundles: several nn.Modules and their ModelConfig in ONE safetensors file.

File layout: tensors named ``<component>.<state_dict key>`` (``vae.``, ``dit.``,
``pose_encoder.``, or any other component name), metadata
``{"format": "dreamactor-bundle-v1", "dreamactor_config": <ModelConfig JSON>,
"components": <JSON list>, "dtype": "float32" | "float16" | "bfloat16"}``.
Loading is strict (every tensor present, none unexpected, shapes equal) and never unpickles.
Half-precision files load back into the modules' own dtype (float32 for a fresh model).
Writes are atomic: a temporary file in the same folder, then ``os.replace``.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from .config import ModelConfig

FORMAT = "dreamactor-bundle-v1"
_DTYPES = {None: None, "fp32": torch.float32, "float32": torch.float32,
           "fp16": torch.float16, "float16": torch.float16,
           "bf16": torch.bfloat16, "bfloat16": torch.bfloat16}
STANDARD_COMPONENTS = ("vae", "pose_encoder", "dit")


def _storage_dtype(dtype) -> torch.dtype | None:
    if isinstance(dtype, torch.dtype):
        dtype = str(dtype).removeprefix("torch.")
    if dtype not in _DTYPES:
        raise ValueError(f"storage dtype must be one of fp32, fp16, bf16 (or None), got {dtype!r}")
    return _DTYPES[dtype]


def save_bundle(path: str | os.PathLike, modules: Mapping[str, nn.Module],
                config: ModelConfig | None = None, dtype=None,
                extra_metadata: Mapping[str, str] | None = None) -> Path:
    """Saves ``{name: module}`` (and the config) to one safetensors file, atomically; returns
    the path.

    ``dtype`` "fp16"/"bf16" stores floating tensors in half precision (integer buffers as-is).
    ``extra_metadata`` adds string entries (e.g. the motion encoders' configs).
    """
    path = Path(path)
    if not modules:
        raise ValueError("save_bundle: pass at least one component, e.g. {'dit': dit}")
    storage = _storage_dtype(dtype)
    tensors: dict[str, torch.Tensor] = {}
    for name, module in modules.items():
        if not name or "." in name:
            raise ValueError(f"component name {name!r} must be non-empty and contain no '.'")
        for key, tensor in module.state_dict().items():
            tensor = tensor.detach().to("cpu")
            if storage is not None and tensor.is_floating_point():
                tensor = tensor.to(storage)
            tensors[f"{name}.{key}"] = tensor.contiguous()
    metadata = {"format": FORMAT, "components": json.dumps(list(modules)),
                "dtype": str(storage or torch.float32).removeprefix("torch.")}
    if config is not None:
        metadata["dreamactor_config"] = config.to_json()
    metadata.update(extra_metadata or {})

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata=metadata)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def save_component(path: str | os.PathLike, name: str, module: nn.Module,
                   config: ModelConfig | None = None, dtype=None) -> Path:
    """A single-component file: the bundle format with one component."""
    return save_bundle(path, {name: module}, config, dtype)


class _Reader:
    """Opens a safetensors file and turns every failure into a ValueError naming the file."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if not self.path.is_file():
            raise ValueError(f"model file {self.path} does not exist; put it in the models folder "
                             "or pass the right path")
        try:
            with safe_open(str(self.path), framework="pt", device="cpu") as f:
                self.metadata = dict(f.metadata() or {})
                self.shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
        except (SafetensorError, OSError, ValueError) as exc:
            raise ValueError(f"{self.path} is not a valid safetensors file ({exc}); it may be "
                             "truncated or corrupt: download or save it again") from None

    def tensors(self, keys) -> dict[str, torch.Tensor]:
        try:
            with safe_open(str(self.path), framework="pt", device="cpu") as f:
                return {k: f.get_tensor(k) for k in keys}
        except (SafetensorError, OSError, ValueError) as exc:
            raise ValueError(f"{self.path} is not a valid safetensors file ({exc}); it may be "
                             "truncated or corrupt: download or save it again") from None


def read_config(path: str | os.PathLike) -> ModelConfig:
    """The ModelConfig stored in a bundle's metadata."""
    reader = _Reader(path)
    text = reader.metadata.get("dreamactor_config")
    if text is None:
        raise ValueError(f"{reader.path} has no 'dreamactor_config' metadata; it is not a "
                         "DreamActor model bundle (save it with dreamactor_core.model.weights)")
    try:
        return ModelConfig.from_json(text)
    except ValueError as exc:
        raise ValueError(f"{reader.path}: bad model config in metadata: {exc}") from None


def _fmt(shape) -> str:
    return "[" + ", ".join(str(int(s)) for s in shape) + "]"


def _load_component(reader: _Reader, name: str | None, module: nn.Module,
                    partial: bool = False) -> list[str]:
    """Loads ``module`` strictly; with ``partial`` a tensor whose shape differs keeps the
    module's current value instead of raising. Returns the keys kept that way."""
    prefix = "" if name is None else f"{name}."
    expected = module.state_dict()
    found = {k[len(prefix):]: k for k in reader.shapes if k.startswith(prefix)}
    missing = [k for k in expected if k not in found]
    if missing:
        key = prefix + missing[0]
        raise ValueError(f"{reader.path}: tensor '{key}' (expected shape "
                         f"{_fmt(expected[missing[0]].shape)}) is missing"
                         + (f", and {len(missing) - 1} more" if len(missing) > 1 else "")
                         + "; the file was saved from a different model or configuration")
    unexpected = [k for k in found if k not in expected]
    if unexpected:
        key = found[unexpected[0]]
        raise ValueError(f"{reader.path}: unexpected tensor '{key}' (found shape "
                         f"{_fmt(reader.shapes[key])}) that the model does not have"
                         + (f", and {len(unexpected) - 1} more" if len(unexpected) > 1 else ""))
    kept = set()
    for k, target in expected.items():
        shape = reader.shapes[found[k]]
        if shape != tuple(target.shape):
            if partial:
                kept.add(k)
                continue
            raise ValueError(f"{reader.path}: tensor '{found[k]}' has shape {_fmt(shape)}, expected "
                             f"{_fmt(target.shape)}; the file was saved with a different config")
    loaded = reader.tensors([found[k] for k in expected if k not in kept])
    state = {k: (target if k in kept else
                 loaded[found[k]].to(target.dtype) if target.is_floating_point() else loaded[found[k]])
             for k, target in expected.items()}
    module.load_state_dict(state, strict=True)
    return [prefix + k for k in expected if k in kept]


def load_into(path: str | os.PathLike, modules: Mapping[str, nn.Module]) -> dict[str, str]:
    """Strictly loads every component of a bundle into the given modules ``{name: module}``.

    The file may hold no component that is not passed. Returns the file's metadata.
    """
    reader = _Reader(path)
    components = {k.split(".", 1)[0] for k in reader.shapes}
    extra = sorted(components - set(modules))
    if extra:
        key = next(k for k in reader.shapes if k.split(".", 1)[0] == extra[0])
        raise ValueError(f"{reader.path}: unexpected tensor '{key}' from component(s) {extra} that "
                         f"were not given to load; pass modules for them")
    for name, module in modules.items():
        _load_component(reader, name, module)
    return reader.metadata


def _component_prefix(reader: _Reader, name: str) -> str | None:
    """``name``, or None for a plain state dict without the bundle format (no prefix)."""
    bare = (reader.metadata.get("format") != FORMAT
            and not any(k.startswith(f"{name}.") for k in reader.shapes))
    return None if bare else name


def load_component(path: str | os.PathLike, name: str, module: nn.Module) -> nn.Module:
    """Loads one component (tensors ``<name>.*``) from a bundle or single-component file; other
    components in the file are ignored. A plain safetensors state dict without the bundle
    format (no prefix) is accepted too."""
    reader = _Reader(path)
    _load_component(reader, _component_prefix(reader, name), module)
    return module


def load_component_partial(path: str | os.PathLike, name: str, module: nn.Module) -> list[str]:
    """load_component, except that tensors stored with another shape keep the module's own
    values: warm-starting a model whose config changed in a few layers (e.g. a DiT for a VAE
    with more latent channels: only its latent in/out layers differ). Every tensor must still
    be present and none unexpected. Returns the keys not loaded."""
    reader = _Reader(path)
    return _load_component(reader, _component_prefix(reader, name), module, partial=True)


def load_bundle(path: str | os.PathLike, extra_modules: Mapping[str, nn.Module] | None = None,
                device: str | torch.device = "cpu") -> tuple[ModelConfig, dict[str, nn.Module]]:
    """Builds the VAE, pose encoder and DiT from the stored config and loads them strictly.

    Components of other kinds (e.g. a face-motion encoder) must be constructed by the caller
    and passed in ``extra_modules``; they are loaded in place and returned in the dict too.
    All returned modules are moved to ``device`` and put in eval mode.
    """
    from .dit import DreamActorDiT
    from .pose_encoder import PoseEncoder
    from .vae import build_vae

    config = read_config(path)
    modules: dict[str, nn.Module] = {"vae": build_vae(config.vae),
                                     "pose_encoder": PoseEncoder.from_config(config),
                                     "dit": DreamActorDiT(config.dit)}
    for name in extra_modules or {}:
        if name in modules:
            raise ValueError(f"extra module name {name!r} clashes with a standard component")
    modules.update(extra_modules or {})
    load_into(path, modules)
    return config, {name: m.to(device).eval() for name, m in modules.items()}
