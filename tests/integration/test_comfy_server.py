"""The pack inside a real ComfyUI 0.3.75 server: registration, prompts, errors, cancel."""

import json
import pathlib
import time

import numpy as np
import pytest
from PIL import Image

from comfy_server import PromptRejected, execution_error
from workflow_api import workflow_to_prompt

pytestmark = pytest.mark.comfy
ROOT = pathlib.Path(__file__).resolve().parents[2]

# node id -> (inputs, outputs) every one of them must declare
EXPECTED = {
    "DreamActorReferenceLoader": ({"image", "width", "height", "margin", "mask"},
                                  ["reference", "framed_image", "framed_mask"]),
    "DreamActorSkeletonExtractor": ({"images", "fps", "retarget_mode", "max_gap_frames", "pose_backend",
                                     "head_backend", "reference", "external_pose"},
                                    ["pose", "measured_pose", "skeleton_maps", "report"]),
    "DreamActorHeadSphereRenderer": ({"pose", "radius_scale", "reference", "background"}, ["sphere_maps"]),
    "DreamActorFaceCrop": ({"images", "pose", "size"}, ["face_crops", "report"]),
    "DreamActorPseudoReferencePicker": ({"images", "pose", "reference", "k", "identity_threshold", "clip_vision"},
                                        ["pseudo_references", "reference", "scores"]),
    "DreamActorModelLoader": ({"model_name"}, ["model"]),
    "DreamActorSmplxPose": ({"params_path", "gender", "width", "height", "fps"}, ["pose", "report"]),
    "DreamActorFaceMotionEncoder": ({"model", "face_crops", "fps"}, ["face_motion"]),
    "DreamActorAudioToMotion": ({"model", "audio", "num_frames", "fps", "pose"}, ["face_motion", "report"]),
    "DreamActorSampler": ({"model", "reference", "skeleton_maps", "sphere_maps", "steps", "solver", "shift",
                           "ref_scale", "motion_scale", "seed", "segment_frames", "face_motion",
                           "pseudo_references"}, ["segments"]),
    "DreamActorSegmentStitcher": ({"segments", "colour_match", "crossfade_frames", "reference_strength",
                                   "reference"}, ["frames"]),
}


def test_every_pack_node_is_registered_with_its_inputs_and_outputs(comfy):
    info = comfy.object_info()
    for node_id, (inputs, outputs) in EXPECTED.items():
        assert node_id in info, f"{node_id} missing from /object_info"
        declared = set(info[node_id]["input"].get("required", {})) | set(info[node_id]["input"].get("optional", {}))
        assert declared == inputs, node_id
        assert info[node_id]["output_name"] == outputs, node_id
        assert info[node_id]["category"].startswith("DreamActor")
    pack = {k for k, v in info.items() if v.get("python_module", "").endswith("ComfyUI-DreamActor")}
    assert pack == set(EXPECTED)


def test_log_shows_a_clean_import(comfy):
    log = comfy.log()
    assert "IMPORT FAILED" not in log
    assert "left out" not in log  # every optional dependency is installed here
    times = log.split("Import times for custom nodes:")[1].split("\n\n")[0]
    assert "custom_nodes/ComfyUI-DreamActor" in times


def _reference_prompt(image_name: str) -> dict:
    return {
        "1": {"class_type": "LoadImage", "inputs": {"image": image_name}},
        "2": {"class_type": "DreamActorReferenceLoader",
              "inputs": {"image": ["1", 0], "width": 384, "height": 512, "margin": 0.08}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 1], "filename_prefix": "test/reference"}},
    }


def test_reference_prompt_runs_to_success(comfy):
    entry = comfy.run(_reference_prompt("reference_astronaut.jpg"), timeout=300)
    assert entry["status"]["status_str"] == "success", execution_error(entry)
    image = entry["outputs"]["3"]["images"][0]
    saved = Image.open(comfy.output_dir / image["subfolder"] / image["filename"])
    assert saved.size == (384, 512)
    # The framed reference still shows the orange suit in its lower half.
    pixels = np.asarray(saved.convert("RGB"), np.float32)
    lower = pixels[300:, 100:300]
    assert (lower[..., 0] - lower[..., 2]).mean() > 60


def test_bad_input_is_a_clear_error_and_the_server_survives(comfy):
    Image.new("RGB", (256, 256), (120, 120, 120)).save(comfy.input_dir / "blank.png")
    entry = comfy.run(_reference_prompt("blank.png"), timeout=300)
    error = execution_error(entry)
    assert entry["status"]["status_str"] == "error" and error is not None
    assert error["node_type"] == "DreamActorReferenceLoader"
    assert "no person was found in the reference image" in error["exception_message"]
    assert comfy.alive()
    assert comfy.run(_reference_prompt("reference_astronaut.jpg"), timeout=300)["status"]["status_str"] == "success"


def test_wrong_widget_value_is_refused_before_running(comfy):
    prompt = _reference_prompt("reference_astronaut.jpg")
    prompt["2"]["inputs"]["width"] = 8
    with pytest.raises(PromptRejected) as err:
        comfy.queue(prompt)
    assert "width" in json.dumps(err.value.body)


def test_shipped_workflows_run_to_success_on_the_embedded_model(comfy):
    info = comfy.object_info()
    options = info["DreamActorModelLoader"]["input"]["required"]["model_name"][1]["options"]
    assert "embedded/dreamactor_demo.safetensors" in options
    for path in sorted((ROOT / "workflows").glob("*.json")):
        workflow = json.loads(path.read_text())
        prompt = workflow_to_prompt(workflow, info)
        for node in prompt.values():
            if node["class_type"] == "DreamActorModelLoader":
                assert node["inputs"]["model_name"] == "embedded/dreamactor_demo.safetensors"
        entry = comfy.run(prompt, workflow=workflow, timeout=900)
        assert entry["status"]["status_str"] == "success", (path.name, execution_error(entry))
        saved = [item for out in entry["outputs"].values() for items in out.values()
                 for item in (items if isinstance(items, list) else []) if isinstance(item, dict)]
        assert saved, f"{path.name} saved nothing"
        for item in saved:
            assert (comfy.output_dir / item["subfolder"] / item["filename"]).stat().st_size > 1000


def test_cancel_stops_a_long_extraction_promptly(comfy):
    # 400 frames of the driving clip: far longer than the time we allow after the interrupt.
    prompt = {
        "1": {"class_type": "LoadVideo", "inputs": {"file": "driver_astronaut.mp4"}},
        "2": {"class_type": "GetVideoComponents", "inputs": {"video": ["1", 0]}},
        "3": {"class_type": "RepeatImageBatch", "inputs": {"image": ["2", 0], "amount": 10}},
        "4": {"class_type": "DreamActorSkeletonExtractor",
              "inputs": {"images": ["3", 0], "fps": ["2", 2], "retarget_mode": "auto",
                         "max_gap_frames": 8, "pose_backend": "mediapipe", "head_backend": "mediapipe"}},
        "5": {"class_type": "PreviewImage", "inputs": {"images": ["4", 2]}},
    }
    prompt_id = comfy.queue(prompt)
    comfy.wait_until_running(prompt_id)
    time.sleep(3.0)
    comfy.interrupt()
    interrupted_at = time.time()
    entry = comfy.wait(prompt_id, timeout=120)
    assert time.time() - interrupted_at < 10
    assert entry["status"]["status_str"] == "error"
    kinds = [kind for kind, _ in entry["status"]["messages"]]
    assert "execution_interrupted" in kinds
    assert comfy.alive()


def test_without_mediapipe_only_its_nodes_are_left_out(tmp_path):
    """A real ComfyUI where mediapipe cannot be imported: one log line per left-out module, the
    other nodes still register."""
    from comfy_server import ComfyServer

    hide = tmp_path / "hide"
    hide.mkdir()
    (hide / "sitecustomize.py").write_text("import sys\nsys.modules['mediapipe'] = None\n")
    server = ComfyServer(tmp_path / "server", env={"PYTHONPATH": str(hide)})
    with server:
        info = server.object_info()
        log = server.log()
    pack = {k for k, v in info.items() if v.get("python_module", "").endswith("ComfyUI-DreamActor")}
    needs_mediapipe = {"DreamActorReferenceLoader", "DreamActorSkeletonExtractor", "DreamActorPseudoReferencePicker"}
    assert pack == set(EXPECTED) - needs_mediapipe
    left_out = [line for line in log.splitlines() if "left out" in line]
    assert len(left_out) == 3
    assert all("missing mediapipe (pip install mediapipe)" in line for line in left_out)
    assert "IMPORT FAILED" not in log
