"""ComfyUI-DreamActor: ComfyUI entry point.

ComfyUI imports this folder as a package and calls ``comfy_entrypoint`` (V3 node API).
All maths lives in ``dreamactor_core``; ``nodes/`` only adapts it to ComfyUI.
"""

from comfy_api.latest import ComfyExtension, io
from typing_extensions import override

from .nodes.registry import load_node_classes

WEB_DIRECTORY = "./web"


class DreamActorExtension(ComfyExtension):
    @override
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return load_node_classes(__name__ + ".nodes")


async def comfy_entrypoint() -> DreamActorExtension:
    return DreamActorExtension()


__all__ = ["WEB_DIRECTORY", "comfy_entrypoint"]
