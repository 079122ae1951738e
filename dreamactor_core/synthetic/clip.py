"""Synthetic training clips: a seeded puppet character, its motion, speech audio, the rendered
frames and masks, and the exact ground-truth PoseTrack, all on one timeline.

``make_clip(seed, ...)`` is a pure function of its arguments (same arguments -> identical
bytes). ``render_reference(seed, size, pose_seed)`` draws the same character, background and
camera in an independent random pose, for use as the reference image.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..guidance.pose_track import PoseTrack
from ..guidance.topology import J
from .audio import SAMPLE_RATE, mouth_params, speech_audio, speech_plan
from .character import (STREAM_CAMERA, STREAM_MOTION, STREAM_REFERENCE, CharacterSpec, rng_for,
                        sample_character)
from .kinematics import FACE_POINTS, Camera, forward_kinematics, frame_camera, ground_offset
from .motion import Motion, sample_motion
from .render import FaceParams, PuppetRenderer

CAMERA_DISTANCE = 4.0  # metres from the camera to the standing character's pelvis


@dataclass
class SyntheticClip:
    frames: np.ndarray  # [T, H, W, 3] uint8 RGB
    masks: np.ndarray  # [T, H, W] float32 foreground coverage 0..1
    track: PoseTrack  # exact ground truth, source "synthetic"
    face: dict  # {"blink", "mouth_open", "mouth_width"}: each float32 [T] in 0..1
    audio: dict | None  # {"waveform": torch.Tensor [1, 1, S], "sample_rate": 16000} or None
    spec: CharacterSpec
    camera: Camera
    fps: float

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])


def _check_size(size) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in size)
    except (TypeError, ValueError):
        raise ValueError(f"size must be (height, width), got {size!r}") from None
    if h < 16 or w < 16:
        raise ValueError(f"size must be at least 16x16 pixels, got {(h, w)}")
    return h, w


def _camera(spec: CharacterSpec, size: tuple[int, int], framing: str) -> tuple[Camera, float]:
    fill = rng_for(spec.seed, STREAM_CAMERA).uniform(0.78, 0.9)
    return frame_camera(spec, size, fill, CAMERA_DISTANCE, framing)


def _track(spec, skeleton, root, camera, pose, fps) -> PoseTrack:
    h, w = camera.image_size
    t = skeleton.body.shape[0]
    body_2d = camera.project(skeleton.body + root[:, None])
    hands_2d = camera.project(skeleton.hands + root[:, None, None])
    head_world = skeleton.head_center + root

    def inside(p):
        return ((p[..., 0] >= 0) & (p[..., 0] <= w - 1) & (p[..., 1] >= 0) & (p[..., 1] <= h - 1))

    body_conf = inside(body_2d).astype(np.float32)
    # Face joints count only while they face the camera.
    facing = {name: np.einsum("tij,j->ti", skeleton.head_rotation, v)[:, 2] for name, v in FACE_POINTS.items()}
    limits = {"nose": 0.2 * np.linalg.norm(FACE_POINTS["nose"]), "r_eye": -0.1, "l_eye": -0.1,
              "r_ear": 0.3, "l_ear": 0.3}
    for name, limit in limits.items():
        body_conf[:, J[name]] *= (facing[name] < limit)
    head_center = camera.project(head_world)
    head_in = inside(head_center).astype(np.float32)
    track = PoseTrack(
        image_size=(h, w), fps=float(fps),
        body_2d=body_2d.astype(np.float32), body_3d=skeleton.body.astype(np.float32), body_conf=body_conf,
        hands_2d=hands_2d.astype(np.float32), hands_3d=skeleton.hands.astype(np.float32),
        hands_conf=inside(hands_2d).astype(np.float32),
        face_2d=None, face_conf=head_in,
        head_rotation=np.stack([pose.head_yaw, pose.head_pitch, pose.head_roll], -1).astype(np.float32),
        head_center=head_center.astype(np.float32),
        head_radius=(camera.focal * spec.head_radius / head_world[:, 2]).astype(np.float32),
        head_conf=head_in, source="synthetic",
        report={"character_seed": spec.seed, "frames": t},
    )
    return track.validate()


def render_motion(spec: CharacterSpec, motion: Motion, face: FaceParams, size: tuple[int, int],
                  fps: float = 25.0, supersample: int = 2, framing: str = "full"
                  ) -> tuple[np.ndarray, np.ndarray, PoseTrack, Camera]:
    """Renders any motion of ``spec`` with the character's camera -> (frames uint8 [T, H, W, 3],
    masks float32 [T, H, W], ground-truth track, camera)."""
    size = _check_size(size)
    camera, ground_y = _camera(spec, size, framing)
    skeleton = forward_kinematics(spec, motion.pose)
    root = np.stack([motion.root_offset[:, 0], ground_y - ground_offset(spec, skeleton),
                     CAMERA_DISTANCE + motion.root_offset[:, 2]], -1)
    frames, masks = PuppetRenderer(spec, camera, supersample).render(skeleton, root, face)
    return frames, masks, _track(spec, skeleton, root, camera, motion.pose, fps), camera


def make_clip(seed: int, num_frames: int, size: tuple[int, int] = (64, 64), fps: float = 25.0,
              with_audio: bool = True, supersample: int = 2, framing: str = "full") -> SyntheticClip:
    """A clip of character ``seed`` moving and speaking for ``num_frames`` frames at ``fps``.

    Mouth motion always follows the clip's speech timeline, whether or not the waveform is
    returned, so ``with_audio`` changes no frame. ``framing`` is "full" (head to feet) or
    "upper" (head to mid-thigh, a portrait shot); joints that leave the image get confidence 0.
    """
    if int(num_frames) < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    if not float(fps) > 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    size = _check_size(size)
    spec = sample_character(seed)
    motion = sample_motion(rng_for(seed, STREAM_MOTION), int(num_frames), float(fps))
    plan = speech_plan(seed, num_frames / float(fps))
    mouth_open, mouth_width = mouth_params(plan, int(num_frames), float(fps))
    face = FaceParams(blink=motion.blink.astype(np.float32), mouth_open=mouth_open, mouth_width=mouth_width)
    frames, masks, track, camera = render_motion(spec, motion, face, size, fps, supersample, framing)
    audio = None
    if with_audio:
        import torch

        wave, rate = speech_audio(seed, num_frames / float(fps), SAMPLE_RATE)
        audio = {"waveform": torch.from_numpy(wave)[None], "sample_rate": rate}  # [1, 1, S]
    return SyntheticClip(frames=frames, masks=masks, track=track,
                         face={"blink": face.blink, "mouth_open": face.mouth_open,
                               "mouth_width": face.mouth_width},
                         audio=audio, spec=spec, camera=camera, fps=float(fps))


def _act(seed: int, clip: SyntheticClip, spec: CharacterSpec, mouth_open: float | None = None
         ) -> tuple[np.ndarray, np.ndarray, PoseTrack, Camera]:
    """``clip``'s motion stream (from ``seed``), blinks and mouth rendered on ``spec``: the mouth
    held at ``mouth_open`` when that is given."""
    motion = sample_motion(rng_for(seed, STREAM_MOTION), clip.num_frames, clip.fps)
    opening = clip.face["mouth_open"] if mouth_open is None else np.full(
        clip.num_frames, mouth_open, np.float32)
    face = FaceParams(blink=clip.face["blink"], mouth_open=opening,
                      mouth_width=clip.face["mouth_width"])
    return render_motion(spec, motion, face, tuple(clip.frames.shape[1:3]), clip.fps)


def rerender_clip(seed: int, clip: SyntheticClip, mouth_open: float | None = None) -> np.ndarray:
    """Frames uint8 [T, H, W, 3] of ``clip`` (made by make_clip from ``seed``, default
    supersample and framing) rendered again from the seed's motion stream, its blinks and mouth
    width: the clip itself, or with the mouth held at ``mouth_open`` when that is given."""
    return _act(seed, clip, clip.spec, mouth_open)[0]


def render_driver(seed: int, clip: SyntheticClip, driver_seed: int
                  ) -> tuple[np.ndarray, PoseTrack]:
    """``clip`` (made by make_clip from ``seed``, default supersample and framing) acted by
    another character: character ``driver_seed`` with the clip's motion stream, blinks and mouth,
    framed by its own camera -> (frames uint8 [T, H, W, 3], its exact track). The same head
    turns and expression on a different face: a cross-identity driver with exact ground truth."""
    frames, _, track, _ = _act(seed, clip, sample_character(driver_seed))
    return frames, track


def render_reference(seed: int, size: tuple[int, int] = (64, 64), pose_seed: int = 0,
                     supersample: int = 2, framing: str = "full") -> SyntheticClip:
    """Character ``seed`` (same background and camera as its clips) in an independent random
    pose chosen by ``pose_seed``, eyes open and mouth nearly closed; a one-frame clip."""
    size = _check_size(size)
    spec = sample_character(seed)
    rng = rng_for(seed, STREAM_REFERENCE, pose_seed)
    motion = sample_motion(rng, 1, 25.0)
    face = FaceParams(blink=np.zeros(1, np.float32),
                      mouth_open=np.array([rng.uniform(0.0, 0.15)], np.float32),
                      mouth_width=np.array([rng.uniform(0.35, 0.65)], np.float32))
    frames, masks, track, camera = render_motion(spec, motion, face, size, 25.0, supersample, framing)
    return SyntheticClip(frames=frames, masks=masks, track=track,
                         face={"blink": face.blink, "mouth_open": face.mouth_open,
                               "mouth_width": face.mouth_width},
                         audio=None, spec=spec, camera=camera, fps=25.0)
