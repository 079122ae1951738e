"""Reference Loader node: frames the reference person and measures skeleton, head and face."""

from __future__ import annotations

import torch
from comfy_api.latest import io

from ..dreamactor_core.guidance.reference import prepare_reference
from .comfy_glue import image_batch_to_uint8, uint8_to_image_batch
from .types import ReferenceType

CATEGORY = "DreamActor"


class DreamActorReferenceLoader(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="DreamActorReferenceLoader",
            display_name="DreamActor Reference Loader",
            category=CATEGORY,
            description=(
                "Finds the person in the reference image, frames them at the output size "
                "(crop or pad, aspect kept) and measures their skeleton, head size and face. "
                "The first image of the batch is used."),
            inputs=[
                io.Image.Input("image", tooltip="The person to animate (first image of the batch)."),
                io.Int.Input("width", default=288, min=64, max=4096, step=16,
                             tooltip="Output width; the generator's frame width."),
                io.Int.Input("height", default=384, min=64, max=4096, step=16,
                             tooltip="Output height; the generator's frame height."),
                io.Float.Input("margin", default=0.08, min=0.0, max=1.0, step=0.01,
                               tooltip="Space kept around the person, as a fraction of their size."),
                io.Mask.Input("mask", optional=True,
                              tooltip="Person mask; when missing, MediaPipe selfie segmentation makes one."),
            ],
            outputs=[
                ReferenceType.Output("reference", display_name="reference"),
                io.Image.Output("framed_image", display_name="framed_image", tooltip="The framed reference."),
                io.Mask.Output("framed_mask", display_name="framed_mask", tooltip="The person mask of the framed reference."),
            ],
        )

    @classmethod
    def execute(cls, image, width, height, margin, mask=None) -> io.NodeOutput:
        frames = image_batch_to_uint8(image, "image")
        person = None
        if mask is not None:
            person = (mask[0] if mask.ndim == 3 else mask).detach().cpu().float().numpy()
        ref = prepare_reference(frames[0], (height, width), mask=person, margin=margin)
        out_mask = torch.from_numpy(ref.mask)[None].to(uint8_to_image_batch(ref.image[None]).device)
        return io.NodeOutput(ref, uint8_to_image_batch(ref.image[None]), out_mask)


NODES = [DreamActorReferenceLoader]
