"""DiT Sampler node: reference + guidance maps + face motion -> generated video segments."""

from __future__ import annotations

import torch
from comfy_api.latest import io

from ..dreamactor_core.model.pipeline import GUIDANCE_SCALE, SHIFT, generate
from ..dreamactor_core.model.segments import plan_segments
from .comfy_glue import Progress
from .types import FaceMotionType, ModelType, ReferenceType, SegmentsType

CATEGORY = "DreamActor"


def _maps(images: torch.Tensor, name: str) -> torch.Tensor:
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"{name} must be an IMAGE batch [T, H, W, 3]")
    return images.to("cpu", torch.float32)


class DreamActorSampler(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="DreamActorSampler",
            display_name="DreamActor DiT Sampler",
            category=CATEGORY,
            description=(
                "Generates the animation with the flow-matching video DiT: the reference (and pseudo-"
                "references) fused by joint attention, skeleton + head-sphere maps through the pose "
                "encoder, face-motion tokens (from video or audio) through face attention. Long drivers "
                "are generated in segments; each segment's last frame, re-encoded, starts the next one. Classifier-"
                "free guidance has separate reference and motion scales."),
            inputs=[
                ModelType.Input("model"),
                ReferenceType.Input("reference", tooltip="From DreamActor Reference Loader."),
                io.Image.Input("skeleton_maps", tooltip="From the Skeleton Extractor (retargeted to the reference)."),
                io.Image.Input("sphere_maps", tooltip="From the Head-Sphere Renderer, without background."),
                io.Int.Input("steps", default=20, min=1, max=200),
                io.Combo.Input("solver", options=["euler", "heun"], default="euler",
                               tooltip="heun: second order, two model calls per step."),
                io.Float.Input("shift", default=SHIFT, min=0.1, max=20.0, step=0.1,
                               tooltip="Timestep shift of the flow-matching schedule."),
                io.Float.Input("ref_scale", default=GUIDANCE_SCALE, min=1.0, max=10.0, step=0.05,
                               tooltip="Classifier-free guidance on the reference (1 = off)."),
                io.Float.Input("motion_scale", default=GUIDANCE_SCALE, min=1.0, max=10.0, step=0.05,
                               tooltip="Classifier-free guidance on pose and face motion (1 = off)."),
                io.Int.Input("seed", default=0, min=0, max=2**63 - 1, control_after_generate=True),
                io.Int.Input("segment_frames", default=0, min=0, max=1001,
                             tooltip="Frames per segment (4k+1); 0 uses the model's (the paper: 73)."),
                FaceMotionType.Input("face_motion", optional=True,
                                     tooltip="From the Face-Motion or the Audio-to-Motion encoder."),
                io.Image.Input("pseudo_references", optional=True,
                               tooltip="Extra views of the person, same size as the reference; by default those the "
                                       "Pseudo-Reference Picker attached to the reference."),
            ],
            outputs=[SegmentsType.Output("segments", display_name="segments")],
        )

    @classmethod
    def execute(cls, model, reference, skeleton_maps, sphere_maps, steps, solver, shift, ref_scale,
                motion_scale, seed, segment_frames, face_motion=None, pseudo_references=None) -> io.NodeOutput:
        skeleton, sphere = _maps(skeleton_maps, "skeleton_maps"), _maps(sphere_maps, "sphere_maps")
        if skeleton.shape != sphere.shape:
            raise ValueError(
                f"skeleton_maps {tuple(skeleton.shape)} and sphere_maps {tuple(sphere.shape)} differ: render both "
                "from the same pose track")
        guidance = torch.cat([skeleton, sphere], dim=-1)  # [T, H, W, 6]
        frames, height, width = guidance.shape[:3]
        ref_image = torch.from_numpy(reference.image).float() / 255.0
        if tuple(ref_image.shape[:2]) != (height, width):
            raise ValueError(
                f"the reference is {ref_image.shape[1]}x{ref_image.shape[0]} but the guidance maps are "
                f"{width}x{height}: connect the Skeleton Extractor's maps retargeted to this reference")
        tokens = mask = None
        if face_motion is not None:
            tokens, mask = face_motion.tokens, face_motion.mask
        if pseudo_references is not None:
            pseudo = list(pseudo_references.to("cpu", torch.float32))
        else:  # those the Pseudo-Reference Picker attached to the reference, if any
            pseudo = [torch.from_numpy(p).float() / 255.0 for p in reference.pseudo_references] or None
        segment_len = segment_frames or None
        num_segments = len(plan_segments(frames, segment_len or model.config.segment_frames))
        progress = Progress(steps * num_segments)
        result = generate(model, ref_image, guidance, face_tokens=tokens, pseudo_references=pseudo,
                          steps=steps, solver=solver, shift=shift, ref_scale=ref_scale,
                          motion_scale=motion_scale, seed=seed, segment_frames=segment_len,
                          face_mask=mask, resample_tokens=True, on_step=lambda done, total: progress.step(),
                          stitch=False)
        return io.NodeOutput(result)


NODES = [DreamActorSampler]
