"""Model Loader node: a DreamActor model bundle (one safetensors file) from ComfyUI's
models/dreamactor/ folder or the pack's embedded default."""

from __future__ import annotations

import os

import folder_paths
from comfy_api.latest import io
import comfy.model_management as mm

from ..dreamactor_core.model.bundle import DreamActorModel
from ..dreamactor_core.model.motion_tokens import embedded_models
from .types import ModelType

CATEGORY = "DreamActor"
FOLDER = "dreamactor"
EMBEDDED_PREFIX = "embedded/"

# Keep paths a user set in extra_model_paths.yaml, add the default folder, accept .safetensors only.
_paths, _ = folder_paths.folder_names_and_paths.get(FOLDER, ([], set()))
_default = os.path.join(folder_paths.models_dir, FOLDER)
folder_paths.folder_names_and_paths[FOLDER] = (list(_paths) + [_default] * (_default not in _paths), {".safetensors"})

# Node classes are re-created on every run, so loaded models live here: path -> (stamp, model).
_CACHE: dict[str, tuple[tuple, DreamActorModel]] = {}


def available_models() -> list[str]:
    names = [EMBEDDED_PREFIX + p.name for p in embedded_models()]
    return names + sorted(folder_paths.get_filename_list(FOLDER))


def resolve(name: str) -> str:
    if name.startswith(EMBEDDED_PREFIX):
        for path in embedded_models():
            if path.name == name[len(EMBEDDED_PREFIX):]:
                return str(path)
    path = folder_paths.get_full_path(FOLDER, name)
    if path is None:
        folders = ", ".join(folder_paths.get_folder_paths(FOLDER))
        raise ValueError(f"model '{name}' was not found: put DreamActor .safetensors bundles in {folders} "
                         "(or pick one of the listed models)")
    return path


def load_model(name: str) -> DreamActorModel:
    path = resolve(name)
    stat = os.stat(path)
    stamp = (stat.st_mtime_ns, stat.st_size)
    cached = _CACHE.get(path)
    if cached is not None and cached[0] == stamp:
        return cached[1]
    model = DreamActorModel.load(path, device=mm.get_torch_device())
    _CACHE.clear()  # one model at a time: they can be large
    _CACHE[path] = (stamp, model)
    return model


class DreamActorModelLoader(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="DreamActorModelLoader",
            display_name="DreamActor Model Loader",
            category=CATEGORY,
            description=(
                "Loads a DreamActor model bundle (VAE, pose encoder, DiT, face-motion and audio-to-motion "
                "encoders in one .safetensors file, config in its metadata) from models/dreamactor/ or the "
                "pack's embedded default. Loading is strict: a missing or mis-shaped tensor is named."),
            inputs=[io.Combo.Input("model_name", options=available_models(),
                                   tooltip="Files in models/dreamactor/ and the embedded default.")],
            outputs=[ModelType.Output("model", display_name="model")],
        )

    @classmethod
    def fingerprint_inputs(cls, model_name):
        try:
            stat = os.stat(resolve(model_name))
            return (model_name, stat.st_mtime_ns, stat.st_size)
        except ValueError:
            return model_name

    @classmethod
    def execute(cls, model_name) -> io.NodeOutput:
        return io.NodeOutput(load_model(model_name))


NODES = [DreamActorModelLoader]
