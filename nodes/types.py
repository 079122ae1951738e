"""The pack's own ComfyUI socket types (DA_ prefix): what has no native ComfyUI type."""

from comfy_api.latest import io

PoseTrackType = io.Custom("DA_POSE")  # dreamactor_core.guidance.PoseTrack
ReferenceType = io.Custom("DA_REFERENCE")  # dreamactor_core.guidance.reference.ReferenceSet
ModelType = io.Custom("DA_MODEL")  # dreamactor_core.model.bundle.DreamActorModel
FaceMotionType = io.Custom("DA_FACE_MOTION")  # dreamactor_core.model.motion_tokens.FaceMotion
SegmentsType = io.Custom("DA_SEGMENTS")  # dreamactor_core.model.pipeline.GenerationResult (unstitched)
