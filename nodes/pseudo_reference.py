"""Pseudo-Reference Picker node: driving frames that show the person from views the reference
lacks (profile, back, other poses), kept only when they look like the same person."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import torch
from comfy_api.latest import io

from ..dreamactor_core.guidance.pseudo_reference import frame_like_reference, pick_pseudo_references
from .comfy_glue import image_batch_to_uint8, uint8_to_image_batch
from .types import PoseTrackType, ReferenceType

CATEGORY = "DreamActor"
CLIP_BATCH = 16


def _clip_embeddings(clip_vision, images: torch.Tensor) -> np.ndarray:
    """CLIP vision image embeddings [B, D] of an IMAGE batch, in chunks."""
    chunks = [clip_vision.encode_image(images[i:i + CLIP_BATCH]).image_embeds.float().cpu()
              for i in range(0, images.shape[0], CLIP_BATCH)]
    return torch.cat(chunks).numpy()


class DreamActorPseudoReferencePicker(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="DreamActorPseudoReferencePicker",
            display_name="DreamActor Pseudo-Reference Picker",
            category=CATEGORY,
            description=(
                "Picks up to k driving frames with the greatest pose and view diversity relative to the "
                "reference (farthest-point sampling, preferring profile and back views the reference lacks), "
                "keeps those that look like the same person (CLIP vision similarity when a CLIP vision model "
                "is connected, otherwise a colour measure inside the person), and frames them like the "
                "reference."),
            inputs=[
                io.Image.Input("images", tooltip="Driving frames (or any frames of the person)."),
                PoseTrackType.Input("pose", tooltip="The Skeleton Extractor's measured_pose for these frames."),
                ReferenceType.Input("reference"),
                io.Int.Input("k", default=4, min=1, max=16),
                io.Float.Input("identity_threshold", default=0.0, min=0.0, max=1.0, step=0.01,
                               tooltip="0 = the measure's default (CLIP 0.8, colour 0.5)."),
                io.ClipVision.Input("clip_vision", optional=True),
            ],
            outputs=[
                io.Image.Output("pseudo_references", display_name="pseudo_references"),
                ReferenceType.Output("reference_out", display_name="reference",
                                     tooltip="The reference with these pseudo-references attached."),
                io.String.Output("scores", display_name="scores"),
            ],
        )

    @classmethod
    def execute(cls, images, pose, reference, k, identity_threshold, clip_vision=None) -> io.NodeOutput:
        frames = image_batch_to_uint8(images, "images")
        if len(frames) != len(pose) or frames.shape[1:3] != tuple(pose.image_size):
            raise ValueError(
                f"images ({len(frames)} frames of {frames.shape[2]}x{frames.shape[1]}) do not match the pose track "
                f"({len(pose)} frames of {pose.image_size[1]}x{pose.image_size[0]}): connect the frames and the "
                "Skeleton Extractor's measured_pose made from them")
        embeddings = reference_embedding = None
        if clip_vision is not None:
            embeddings = _clip_embeddings(clip_vision, images)
            reference_embedding = _clip_embeddings(clip_vision, uint8_to_image_batch(reference.image[None]))[0]
        pick = pick_pseudo_references(frames, pose, reference, k=k,
                                      identity_threshold=identity_threshold or None,
                                      embeddings=embeddings, reference_embedding=reference_embedding)
        if not pick.indices:
            raise ValueError(
                "no driving frame passed the identity check: lower identity_threshold, or check that the "
                f"frames show the reference person ({json.dumps(pick.report, default=str)[:300]})")
        framed = np.stack(frame_like_reference(pick, pose, reference))
        scores = {"indices": pick.indices, "diversity": np.round(pick.diversity_scores, 4).tolist(),
                  "identity": np.round(pick.identity_scores, 4).tolist(), **pick.report}
        with_pseudo = replace(reference, pseudo_references=list(framed))
        return io.NodeOutput(uint8_to_image_batch(framed), with_pseudo, json.dumps(scores, default=str))


NODES = [DreamActorPseudoReferencePicker]
