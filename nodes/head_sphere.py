"""Head-Sphere Renderer node: a colour-coded sphere per frame whose colours encode head yaw,
pitch and roll, drawn at the head's position with the reference's head size."""

from __future__ import annotations

from comfy_api.latest import io

from ..dreamactor_core.guidance.driving import composite_over
from ..dreamactor_core.guidance.head_sphere import render_head_spheres
from .comfy_glue import image_batch_to_uint8, uint8_to_image_batch
from .types import PoseTrackType, ReferenceType

CATEGORY = "DreamActor"


class DreamActorHeadSphereRenderer(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="DreamActorHeadSphereRenderer",
            display_name="DreamActor Head-Sphere Renderer",
            category=CATEGORY,
            description=(
                "Draws the 3D head sphere for every frame of a pose track: placed on the head, sized "
                "like the reference's head, coloured so that its orientation (yaw, pitch, roll) can be "
                "read back from the picture. Optionally drawn over other maps (e.g. the skeleton)."),
            inputs=[
                PoseTrackType.Input("pose", tooltip="From DreamActor Skeleton Extractor."),
                io.Float.Input("radius_scale", default=1.0, min=0.25, max=4.0, step=0.05,
                               tooltip="Multiplies the sphere radius."),
                ReferenceType.Input("reference", optional=True,
                                    tooltip="Sizes the sphere like the reference's head."),
                io.Image.Input("background", optional=True,
                               tooltip="Maps to draw the sphere over (same frame count), e.g. skeleton maps."),
            ],
            outputs=[io.Image.Output("sphere_maps", display_name="sphere_maps")],
        )

    @classmethod
    def execute(cls, pose, radius_scale, reference=None, background=None) -> io.NodeOutput:
        reference_radius = None if reference is None else reference.head_radius
        spheres = render_head_spheres(pose, size=pose.image_size, radius_scale=radius_scale,
                                      reference_radius=reference_radius)
        if background is not None:
            back = image_batch_to_uint8(background, "background")
            if back.shape[:3] != (len(pose), *pose.image_size):
                raise ValueError(
                    f"background has {back.shape[0]} frames of {back.shape[2]}x{back.shape[1]} but the "
                    f"pose track has {len(pose)} frames of {pose.image_size[1]}x{pose.image_size[0]}: "
                    "connect maps made from the same pose (e.g. the extractor's skeleton_maps)")
            spheres = composite_over(spheres, back)
        return io.NodeOutput(uint8_to_image_batch(spheres))


NODES = [DreamActorHeadSphereRenderer]
