"""The pose track: everything the guidance stack knows about one person over a video.

A plain dataclass of numpy arrays so that any backend (MediaPipe, RTMPose ONNX, SMPL-X files)
can fill it and any consumer (retargeter, renderers, face cropper, ComfyUI nodes) can read it.
Coordinates:
  * ``*_2d``  are pixels in the source image, x right, y down.
  * ``*_3d``  are metric world coordinates centred on the pelvis, x right, y down, z away from
    the camera (MediaPipe's world-landmark convention).
  * ``conf``  is in 0..1; a joint with confidence 0 is missing in that frame.
  * ``head_rotation`` is yaw, pitch, roll in degrees (yaw > 0: the head turns to the image's
    right; pitch > 0: looks up; roll > 0: tilts clockwise in the image).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from .topology import HAND_JOINTS, NUM_BODY


@dataclass
class PoseTrack:
    image_size: tuple[int, int]  # (height, width) of the frames the track was measured on
    fps: float
    body_2d: np.ndarray  # [T, NUM_BODY, 2]
    body_3d: np.ndarray  # [T, NUM_BODY, 3]
    body_conf: np.ndarray  # [T, NUM_BODY]
    hands_2d: np.ndarray  # [T, 2, 21, 2]   (0 = right hand, 1 = left hand)
    hands_3d: np.ndarray  # [T, 2, 21, 3]
    hands_conf: np.ndarray  # [T, 2, 21]
    face_2d: np.ndarray | None = None  # [T, F, 2] face landmarks, F = 468 for MediaPipe
    face_conf: np.ndarray | None = None  # [T]
    head_rotation: np.ndarray | None = None  # [T, 3] yaw, pitch, roll (degrees)
    head_center: np.ndarray | None = None  # [T, 2] pixels
    head_radius: np.ndarray | None = None  # [T] pixels
    head_conf: np.ndarray | None = None  # [T]
    source: str = "unknown"  # which backend measured it
    report: dict = field(default_factory=dict)  # gaps filled, frames lost, warnings

    @property
    def num_frames(self) -> int:
        return int(self.body_2d.shape[0])

    def __len__(self) -> int:
        return self.num_frames

    def validate(self) -> "PoseTrack":
        """Checks every array's shape against the frame count; raises ValueError naming the field."""
        t = self.num_frames
        expected = {
            "body_2d": (t, NUM_BODY, 2), "body_3d": (t, NUM_BODY, 3), "body_conf": (t, NUM_BODY),
            "hands_2d": (t, 2, HAND_JOINTS, 2), "hands_3d": (t, 2, HAND_JOINTS, 3),
            "hands_conf": (t, 2, HAND_JOINTS),
        }
        optional = {"face_conf": (t,), "head_rotation": (t, 3), "head_center": (t, 2),
                    "head_radius": (t,), "head_conf": (t,)}
        for name, shape in {**expected, **optional}.items():
            value = getattr(self, name)
            if value is None and name in optional:
                continue
            if value is None or tuple(value.shape) != shape:
                got = None if value is None else tuple(value.shape)
                raise ValueError(f"PoseTrack.{name} has shape {got}, expected {shape}")
        if self.face_2d is not None and (self.face_2d.ndim != 3 or self.face_2d.shape[0] != t):
            raise ValueError(f"PoseTrack.face_2d has shape {self.face_2d.shape}, expected [{t}, F, 2]")
        return self

    def slice(self, start: int, stop: int) -> "PoseTrack":
        """Frames [start, stop) as a new track (arrays are views)."""
        def cut(a):
            return None if a is None else a[start:stop]
        return replace(
            self,
            **{name: cut(getattr(self, name)) for name in (
                "body_2d", "body_3d", "body_conf", "hands_2d", "hands_3d", "hands_conf",
                "face_2d", "face_conf", "head_rotation", "head_center", "head_radius", "head_conf")},
            report=dict(self.report),
        )

    def transformed(self, scale: tuple[float, float], offset: tuple[float, float],
                    image_size: tuple[int, int]) -> "PoseTrack":
        """The same track in another pixel frame: p' = p * scale + offset (2D only; 3D unchanged)."""
        sc, off = np.asarray(scale, np.float32), np.asarray(offset, np.float32)

        def move(a):
            return None if a is None else a * sc + off
        radius = None if self.head_radius is None else self.head_radius * float(np.sqrt(sc[0] * sc[1]))
        return replace(self, image_size=tuple(image_size), body_2d=move(self.body_2d),
                       hands_2d=move(self.hands_2d), face_2d=move(self.face_2d),
                       head_center=move(self.head_center), head_radius=radius, report=dict(self.report))

    @staticmethod
    def empty(num_frames: int, image_size: tuple[int, int], fps: float, source: str = "unknown") -> "PoseTrack":
        """A track of ``num_frames`` frames with every joint missing (confidence 0)."""
        t = num_frames
        return PoseTrack(
            image_size=tuple(image_size), fps=float(fps),
            body_2d=np.zeros((t, NUM_BODY, 2), np.float32),
            body_3d=np.zeros((t, NUM_BODY, 3), np.float32),
            body_conf=np.zeros((t, NUM_BODY), np.float32),
            hands_2d=np.zeros((t, 2, HAND_JOINTS, 2), np.float32),
            hands_3d=np.zeros((t, 2, HAND_JOINTS, 3), np.float32),
            hands_conf=np.zeros((t, 2, HAND_JOINTS), np.float32),
            source=source,
        )
