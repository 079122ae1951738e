"""Writes the shipped UI-format workflows in workflows/ from compact graph descriptions.

The node input/output lists come from a live server's /object_info, so a workflow always
matches the nodes as they are declared. Run after changing a node's inputs or outputs:

    .venv/bin/python scripts/build_workflows.py
"""

from __future__ import annotations

import json
import pathlib
import sys
import tempfile

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from comfy_server import ROOT, ComfyServer  # noqa: E402
from workflow_api import _is_widget  # noqa: E402


class Graph:
    def __init__(self, object_info: dict):
        self.info = object_info
        self.nodes: list[dict] = []
        self.links: list[list] = []

    def add(self, node_type: str, widgets: list, pos: tuple[float, float], title: str | None = None) -> int:
        info = self.info[node_type]
        specs = {**info["input"].get("required", {}), **info["input"].get("optional", {})}
        order = info.get("input_order", {})
        inputs = []
        for name in order.get("required", []) + order.get("optional", []):
            kind = specs[name][0]
            slot = {"name": name, "type": "COMBO" if isinstance(kind, list) else kind, "link": None}
            if _is_widget(specs[name]):
                slot["widget"] = {"name": name}
            inputs.append(slot)
        outputs = [{"name": name, "type": kind, "links": [], "slot_index": i}
                   for i, (name, kind) in enumerate(zip(info["output_name"], info["output"]))]
        node = {"id": len(self.nodes) + 1, "type": node_type, "pos": list(pos), "size": [320, 160],
                "flags": {}, "order": len(self.nodes), "mode": 0, "inputs": inputs, "outputs": outputs,
                "properties": {"Node name for S&R": node_type}, "widgets_values": widgets}
        if title:
            node["title"] = title
        self.nodes.append(node)
        return node["id"]

    def default(self, node_type: str, name: str):
        """The node's own default for widget ``name`` (so workflows follow the pack's defaults)."""
        inputs = self.info[node_type]["input"]
        return {**inputs.get("required", {}), **inputs.get("optional", {})}[name][1]["default"]

    def link(self, src: int, output: str, dst: int, input_name: str) -> None:
        src_node, dst_node = self.nodes[src - 1], self.nodes[dst - 1]
        slot = next(i for i, o in enumerate(src_node["outputs"]) if o["name"] == output)
        dst_slot = next(i for i, o in enumerate(dst_node["inputs"]) if o["name"] == input_name)
        link_id = len(self.links) + 1
        kind = src_node["outputs"][slot]["type"]
        self.links.append([link_id, src, slot, dst, dst_slot, kind])
        src_node["outputs"][slot]["links"].append(link_id)
        dst_node["inputs"][dst_slot]["link"] = link_id

    def to_json(self) -> dict:
        return {"last_node_id": len(self.nodes), "last_link_id": len(self.links), "nodes": self.nodes,
                "links": self.links, "groups": [], "config": {}, "extra": {"ds": {"scale": 0.62, "offset": [40, 60]}},
                "version": 0.4}


def _guidance(g: Graph, size: tuple[int, int]) -> tuple[int, int, int, int]:
    """Reference photo + driving video -> framed reference, video parts, retargeted skeleton and
    head sphere (the front half every shipped workflow shares). Returns (ref, parts, skel, sphere)."""
    photo = g.add("LoadImage", ["reference_astronaut.jpg", "image"], (0, 0), "Reference photo")
    ref = g.add("DreamActorReferenceLoader", [*size, 0.08], (380, 0))
    video = g.add("LoadVideo", ["driver_astronaut.mp4", "image"], (0, 480), "Driving video")
    parts = g.add("GetVideoComponents", [], (380, 480))
    skel = g.add("DreamActorSkeletonExtractor", [25.0, "auto", 8, "mediapipe", "mediapipe"], (760, 240))
    sphere = g.add("DreamActorHeadSphereRenderer", [1.0], (1140, 120))
    g.link(photo, "IMAGE", ref, "image")
    g.link(video, "VIDEO", parts, "video")
    g.link(parts, "images", skel, "images")
    g.link(parts, "fps", skel, "fps")
    g.link(ref, "reference", skel, "reference")
    g.link(skel, "pose", sphere, "pose")
    g.link(ref, "reference", sphere, "reference")
    return ref, parts, skel, sphere


def guidance_from_video(info: dict) -> dict:
    g = Graph(info)
    ref, parts, skel, sphere = _guidance(g, (288, 384))
    faces = g.add("DreamActorFaceCrop", [224], (1140, 480))
    guidance_video = g.add("CreateVideo", [25.0], (1520, 120))
    save_guidance = g.add("SaveVideo", ["dreamactor/guidance", "auto", "auto"], (1860, 120))
    faces_video = g.add("CreateVideo", [25.0], (1520, 480))
    save_faces = g.add("SaveVideo", ["dreamactor/face_crops", "auto", "auto"], (1860, 480))
    save_ref = g.add("SaveImage", ["dreamactor/reference"], (760, 0))
    g.link(skel, "skeleton_maps", sphere, "background")
    g.link(parts, "images", faces, "images")
    g.link(skel, "measured_pose", faces, "pose")
    g.link(sphere, "sphere_maps", guidance_video, "images")
    g.link(parts, "fps", guidance_video, "fps")
    g.link(guidance_video, "VIDEO", save_guidance, "video")
    g.link(faces, "face_crops", faces_video, "images")
    g.link(parts, "fps", faces_video, "fps")
    g.link(faces_video, "VIDEO", save_faces, "video")
    g.link(ref, "framed_image", save_ref, "images")
    return g.to_json()


DEMO_MODEL = "embedded/dreamactor_demo.safetensors"
DEMO_SIZE = (64, 64)  # width, height the embedded demo model was trained at


def _animate(info: dict, driver: str) -> dict:
    """Reference photo + driving video -> animation; the face is driven by the video's face
    crops (driver="video") or by a speech track (driver="audio")."""
    g = Graph(info)
    model = g.add("DreamActorModelLoader", [DEMO_MODEL], (0, -220))
    ref, parts, skel, sphere = _guidance(g, DEMO_SIZE)
    scales = [g.default("DreamActorSampler", name) for name in ("ref_scale", "motion_scale")]
    sampler = g.add("DreamActorSampler", [20, "euler", 3.0, *scales, 0, "fixed", 0], (1520, 0))
    stitch = g.add("DreamActorSegmentStitcher", [True, 0, 0.5], (1900, 0))
    out = g.add("CreateVideo", [25.0], (2280, 0))
    save = g.add("SaveVideo", [f"dreamactor/animation_{driver}", "auto", "auto"], (2620, 0))
    g.link(model, "model", sampler, "model")
    g.link(ref, "reference", sampler, "reference")
    g.link(skel, "skeleton_maps", sampler, "skeleton_maps")
    g.link(sphere, "sphere_maps", sampler, "sphere_maps")
    g.link(sampler, "segments", stitch, "segments")
    g.link(ref, "reference", stitch, "reference")
    g.link(stitch, "frames", out, "images")
    g.link(parts, "fps", out, "fps")
    g.link(out, "VIDEO", save, "video")
    if driver == "video":
        faces = g.add("DreamActorFaceCrop", [224], (760, 560))
        motion = g.add("DreamActorFaceMotionEncoder", [25.0], (1140, 480))
        g.link(parts, "images", faces, "images")
        g.link(skel, "measured_pose", faces, "pose")
        g.link(model, "model", motion, "model")
        g.link(faces, "face_crops", motion, "face_crops")
        g.link(parts, "fps", motion, "fps")
    else:
        speech = g.add("LoadAudio", ["speech_espeak.flac", None, None], (760, 560), "Speech")
        motion = g.add("DreamActorAudioToMotion", [49, 25.0], (1140, 480))
        g.link(model, "model", motion, "model")
        g.link(speech, "AUDIO", motion, "audio")
        g.link(skel, "pose", motion, "pose")
        g.link(speech, "AUDIO", out, "audio")
    g.link(motion, "face_motion", sampler, "face_motion")
    return g.to_json()


WORKFLOWS = {
    "dreamactor_guidance_from_video.json": guidance_from_video,
    "dreamactor_animate_video_driven.json": lambda info: _animate(info, "video"),
    "dreamactor_animate_audio_driven.json": lambda info: _animate(info, "audio"),
}


def main() -> None:
    with ComfyServer(pathlib.Path(tempfile.mkdtemp(prefix="dreamactor-build-"))) as server:
        info = server.object_info()
    for name, build in WORKFLOWS.items():
        path = ROOT / "workflows" / name
        path.write_text(json.dumps(build(info), indent=1) + "\n")
        print("wrote", path.relative_to(ROOT))


if __name__ == "__main__":
    main()
