"""The pack's own ComfyUI socket types (DA_ prefix): what has no native ComfyUI type."""

from comfy_api.latest import io

PoseTrackType = io.Custom("DA_POSE")  # dreamactor_core.guidance.PoseTrack
ReferenceType = io.Custom("DA_REFERENCE")  # dreamactor_core.guidance.reference.ReferenceSet
