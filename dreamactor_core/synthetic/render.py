"""Rendering a posed puppet: limbs as shaded, patterned capsules, a polygon torso, mitten hands
with fingers, and the head, composited far-to-near (painter's order by camera depth).

Drawing happens on a canvas ``supersample`` times larger than the output and is averaged down
(cv2.INTER_AREA), which anti-aliases patterns and feature edges; shape outlines are
anti-aliased analytically (capsules, head) or by cv2.LINE_AA (polygons) on top of that.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ..guidance.topology import J
from .character import CharacterSpec
from .head import paint_back_hair, paint_head
from .kinematics import Camera, Skeleton3D
from .painter import Painter, capsule_coords, cloth_color, render_background

_PALM = (0, 1, 2, 5, 9, 13, 17)
_FINGER_CHAINS = ((1, 2, 3, 4), (5, 6, 7, 8), (9, 10, 11, 12), (13, 14, 15, 16), (17, 18, 19, 20))


@dataclass
class FaceParams:
    blink: np.ndarray  # [T] 0 open .. 1 closed
    mouth_open: np.ndarray  # [T] 0 .. 1
    mouth_width: np.ndarray  # [T] 0 (round) .. 1 (wide)


def torso_outline(spec: CharacterSpec, skeleton: Skeleton3D) -> np.ndarray:
    """3D outline of the shirt (pelvis-centred metres) -> [T, 8, 3], clockwise from the right
    shoulder top."""
    b, rt = skeleton.body, skeleton.torso_rotation
    neck = b[:, J["neck"]]
    pts = []
    for side, sign in (("r", -1.0), ("l", 1.0)):
        shoulder, hip = b[:, J[f"{side}_shoulder"]], b[:, J[f"{side}_hip"]]
        out = sign * (spec.shoulder_width / 2 + 0.6 * spec.arm_radius)
        top = neck + rt @ np.array([0.75 * out, -0.01, 0.0])
        edge = shoulder + rt @ np.array([sign * 0.6 * spec.arm_radius, 0.03, 0.0])
        waist_half = spec.waist_scale * (spec.hip_width / 2 + 0.8 * spec.leg_radius)
        waist = neck + rt @ np.array([sign * waist_half, 0.72 * spec.torso_length, 0.0])
        hip_dir = hip / np.maximum(np.linalg.norm(hip, axis=-1, keepdims=True), 1e-6)
        bottom = hip + hip_dir * 0.8 * spec.leg_radius + np.array([0.0, 0.04, 0.0])
        side_pts = [top, edge, waist, bottom]
        pts.append(side_pts if side == "r" else side_pts[::-1])
    return np.stack(pts[0] + pts[1], 1)


class PuppetRenderer:
    """Renders frames of one character seen by one camera; the background is drawn once."""

    def __init__(self, spec: CharacterSpec, camera: Camera, supersample: int = 2):
        if int(supersample) < 1:
            raise ValueError(f"supersample must be >= 1, got {supersample}")
        self.spec, self.camera, self.ss = spec, camera, int(supersample)
        h, w = camera.image_size
        self.background = render_background(spec, (h * self.ss, w * self.ss))

    def _project(self, points: np.ndarray) -> np.ndarray:
        return (self.camera.project(points) + 0.5) * self.ss - 0.5

    def render(self, skeleton: Skeleton3D, root: np.ndarray, face: FaceParams
               ) -> tuple[np.ndarray, np.ndarray]:
        """root: [T, 3] world position of the pelvis. -> frames uint8 [T, H, W, 3], masks float32
        [T, H, W] (coverage 0..1)."""
        spec = self.spec
        t = skeleton.body.shape[0]
        body = skeleton.body + root[:, None]
        hands = skeleton.hands + root[:, None, None]
        head = skeleton.head_center + root
        torso = torso_outline(spec, skeleton) + root[:, None]
        geo = {
            "body": self._project(body), "body_z": body[..., 2],
            "hands": self._project(hands), "hands_z": hands[..., 2],
            "head": self._project(head), "head_z": head[:, 2],
            "torso": self._project(torso), "torso_z": torso[..., 2].mean(-1),
        }
        geo["ppm"] = self.camera.focal * self.ss / np.maximum(body[..., 2], 1e-3)  # [T, 21] px per metre
        h, w = self.camera.image_size
        frames = np.empty((t, h, w, 3), np.uint8)
        masks = np.empty((t, h, w), np.float32)
        for i in range(t):
            painter = Painter(self.background)
            for _, draw in sorted(self._parts(geo, skeleton, face, i), key=lambda p: -p[0]):
                draw(painter)
            canvas, mask = painter.canvas, painter.mask
            if self.ss > 1:
                canvas = cv2.resize(canvas, (w, h), interpolation=cv2.INTER_AREA)
                mask = cv2.resize(mask, (w, h), interpolation=cv2.INTER_AREA)
            frames[i] = np.clip(canvas + 0.5, 0, 255).astype(np.uint8)
            masks[i] = np.clip(mask, 0.0, 1.0)
        return frames, masks

    def _limb(self, p0, p1, r0, r1, cloth):
        def draw(painter: Painter):
            box = painter.box(np.minimum(p0, p1) - max(r0, r1), np.maximum(p0, p1) + max(r0, r1))
            if box is None:
                return
            xs, ys = painter.grid(box)
            alpha, s, d, r = capsule_coords(xs, ys, p0, p1, r0, r1)
            shade = 1.0 - 0.35 * np.clip(d / r, -1, 1) ** 2
            base, second, kind, period = cloth
            painter.blend(box, alpha, cloth_color(base, second, kind, s, d, period, shade))
        return draw

    def _torso(self, outline, neck, pelvis, half_width, cloth):
        def draw(painter: Painter):
            box = painter.box(outline.min(0), outline.max(0))
            if box is None:
                return
            xs, ys = painter.grid(box)
            alpha = painter.polygon_alpha(box, outline)
            axis = pelvis - neck
            u = axis / max(float(np.hypot(*axis)), 1e-6)
            s = (xs - neck[0]) * u[0] + (ys - neck[1]) * u[1]
            d = (ys - neck[1]) * u[0] - (xs - neck[0]) * u[1]
            shade = 1.0 - 0.3 * np.clip(d / max(half_width, 1e-3), -1, 1) ** 2
            base, second, kind, period = cloth
            painter.blend(box, alpha, cloth_color(base, second, kind, s, d, period, shade))
        return draw

    def _hand(self, points, finger_px):
        skin = 0.95 * np.asarray(self.spec.skin, np.float32)

        def draw(painter: Painter):
            pad = finger_px + 1
            box = painter.box(points.min(0) - pad, points.max(0) + pad)
            if box is None:
                return
            palm = cv2.convexHull(points[list(_PALM)].astype(np.float32))[:, 0]
            alpha = np.maximum(painter.polygon_alpha(box, palm),
                               painter.polyline_alpha(box, [points[list(c)] for c in _FINGER_CHAINS],
                                                      int(round(finger_px))))
            painter.blend(box, alpha, skin)
        return draw

    def _parts(self, geo, skeleton, face: FaceParams, i: int):
        spec = self.spec
        b, z, ppm = geo["body"][i], geo["body_z"][i], geo["ppm"][i]
        top = lambda k: (spec.top_color, spec.top_pattern_color, spec.top_pattern,
                         spec.top_pattern_period * ppm[k])
        bottom = lambda k: (spec.bottom_color, spec.bottom_pattern_color, spec.bottom_pattern,
                            spec.bottom_pattern_period * ppm[k])
        bare = (spec.skin, spec.skin, "solid", 0.0)
        shoe = (spec.shoe_color, spec.shoe_color, "solid", 0.0)
        parts = []

        def limb(a, c, ra, rc, cloth, bias):
            parts.append(((z[a] + z[c]) / 2 + bias,
                          self._limb(b[a], b[c], ra * ppm[a], rc * ppm[c], cloth)))

        ar, lr = spec.arm_radius, spec.leg_radius
        torso_z = geo["torso_z"][i]
        parts.append((torso_z + 0.01, self._limb(b[J["r_hip"]], b[J["l_hip"]], 1.05 * lr, 1.05 * lr,
                                                   bottom(J["pelvis"]))))
        parts.append((torso_z + 0.005, self._limb(b[J["neck"]], geo["head"][i],
                                                    0.4 * spec.head_radius * ppm[J["neck"]],
                                                    0.4 * spec.head_radius * ppm[J["neck"]], bare)))
        half = 0.5 * spec.shoulder_width * ppm[J["neck"]]
        parts.append((torso_z, self._torso(geo["torso"][i], b[J["neck"]], b[J["pelvis"]], half,
                                           top(J["pelvis"]))))
        for s in "rl":
            hip, knee, ankle, foot = (J[f"{s}_{n}"] for n in ("hip", "knee", "ankle", "foot"))
            limb(hip, knee, lr, 0.9 * lr, bottom(hip), 0.004)
            limb(knee, ankle, 0.88 * lr, 0.7 * lr, bottom(knee) if spec.long_legs else bare, 0.003)
            limb(ankle, foot, 0.62 * lr, 0.5 * lr, shoe, -0.002)
            sh, el, wr = (J[f"{s}_{n}"] for n in ("shoulder", "elbow", "wrist"))
            limb(sh, el, ar, 0.92 * ar, top(sh), -0.03)
            limb(el, wr, 0.88 * ar, 0.72 * ar, top(el) if spec.long_sleeves else bare, -0.035)
        for side in range(2):
            hand_ppm = ppm[J["r_wrist" if side == 0 else "l_wrist"]]
            parts.append((geo["hands_z"][i, side].mean() - 0.04,
                          self._hand(geo["hands"][i, side], max(0.024 * hand_ppm, 1.0))))

        head_ppm = self.camera.focal * self.ss / geo["head_z"][i]

        def head(painter: Painter):
            paint_head(painter, spec, geo["head"][i], spec.head_radius * head_ppm,
                       skeleton.head_rotation[i], b[J["nose"]], b[[J["r_ear"], J["l_ear"]]],
                       float(face.blink[i]), float(face.mouth_open[i]), float(face.mouth_width[i]))
        parts.append((geo["head_z"][i] - 0.06, head))
        parts.append((geo["head_z"][i] + 0.08, lambda painter: paint_back_hair(
            painter, spec, geo["head"][i], spec.head_radius * head_ppm, skeleton.head_rotation[i])))
        return parts
