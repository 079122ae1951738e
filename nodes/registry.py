"""Which node modules the pack offers, loaded so that one missing optional dependency only
leaves out the nodes that need it. Imports nothing from ComfyUI itself."""

from __future__ import annotations

import importlib
import importlib.util
import logging
import sys

log = logging.getLogger("ComfyUI-DreamActor")

# module (relative to the nodes package) -> third-party modules its nodes cannot work without
NODE_MODULES: dict[str, tuple[str, ...]] = {
    "reference": ("mediapipe", "cv2"),
    "skeleton": ("mediapipe", "cv2"),
    "head_sphere": ("cv2",),
    "face_crop": ("cv2",),
    "pseudo_reference": ("mediapipe", "cv2"),
    "smplx_pose": (),
    "model_loader": ("safetensors",),
    "motion": (),
    "sampler": ("einops",),
    "stitcher": (),
}


def missing_dependencies(requires: tuple[str, ...]) -> list[str]:
    return [name for name in requires if not _importable(name)]


def _importable(name: str) -> bool:
    if name in sys.modules:
        return sys.modules[name] is not None  # None marks a module known to be absent
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def load_node_classes(package: str, modules: dict[str, tuple[str, ...]] | None = None) -> list[type]:
    """Imports each node module of ``package`` and collects its ``NODES`` list.

    A module whose dependencies are missing, or whose import fails, is skipped with one log line
    naming the module and the fix; the others still load.
    """
    classes: list[type] = []
    for name, requires in (NODE_MODULES if modules is None else modules).items():
        missing = missing_dependencies(requires)
        if missing:
            log.warning("DreamActor: nodes in '%s' left out: missing %s (pip install %s)",
                        name, ", ".join(missing), " ".join(_pip_name(m) for m in missing))
            continue
        try:
            module = importlib.import_module(f"{package}.{name}")
        except Exception as exc:  # one broken module must not hide the rest of the pack
            log.warning("DreamActor: nodes in '%s' left out: %s: %s", name, type(exc).__name__, exc)
            continue
        for node_cls in module.NODES:
            try:
                node_cls.GET_SCHEMA()  # a broken schema must not take the whole pack down
            except Exception as exc:
                log.warning("DreamActor: node %s left out: invalid schema: %s", node_cls.__name__, exc)
                continue
            classes.append(node_cls)
    return classes


def _pip_name(module: str) -> str:
    return {"cv2": "opencv-contrib-python", "onnxruntime": "onnxruntime"}.get(module, module)
