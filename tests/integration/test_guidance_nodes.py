"""Guidance nodes in a real ComfyUI: pseudo-references and clear errors for miswired inputs."""

import json

import numpy as np
import pytest
from PIL import Image

from comfy_server import execution_error

pytestmark = pytest.mark.comfy


def _base() -> dict:
    return {
        "1": {"class_type": "LoadImage", "inputs": {"image": "reference_astronaut.jpg"}},
        "2": {"class_type": "DreamActorReferenceLoader",
              "inputs": {"image": ["1", 0], "width": 288, "height": 384, "margin": 0.08}},
        "3": {"class_type": "LoadVideo", "inputs": {"file": "driver_head_turn.mp4"}},
        "4": {"class_type": "GetVideoComponents", "inputs": {"video": ["3", 0]}},
        "5": {"class_type": "DreamActorSkeletonExtractor",
              "inputs": {"images": ["4", 0], "fps": ["4", 2], "retarget_mode": "auto", "max_gap_frames": 8, "pose_backend": "mediapipe", "head_backend": "mediapipe",
                         "reference": ["2", 0]}},
    }


def test_pseudo_reference_picker_picks_distinct_framed_views(comfy):
    prompt = _base()
    prompt["6"] = {"class_type": "DreamActorPseudoReferencePicker",
                   "inputs": {"images": ["4", 0], "pose": ["5", 1], "reference": ["2", 0], "k": 2,
                              "identity_threshold": 0.0}}
    prompt["7"] = {"class_type": "SaveImage", "inputs": {"images": ["6", 0], "filename_prefix": "test/pseudo"}}
    prompt["8"] = {"class_type": "PreviewAny", "inputs": {"source": ["6", 2]}}
    entry = comfy.run(prompt, timeout=300)
    assert entry["status"]["status_str"] == "success", execution_error(entry)
    images = entry["outputs"]["7"]["images"]
    assert len(images) == 2
    picked = [np.asarray(Image.open(comfy.output_dir / i["subfolder"] / i["filename"]).convert("RGB")) for i in images]
    assert all(p.shape == (384, 288, 3) for p in picked)
    assert np.abs(picked[0].astype(int) - picked[1]).mean() > 2  # two different views
    scores = json.loads(entry["outputs"]["8"]["text"][0])
    assert len(set(scores["indices"])) == 2 and scores["measure"] == "hsv-histogram"


def test_face_crop_with_the_retargeted_pose_is_a_clear_error(comfy):
    prompt = _base()
    prompt["2"]["inputs"]["width"] = 256  # the retargeted pose is 256x384, the frames 288x384
    prompt["6"] = {"class_type": "DreamActorFaceCrop", "inputs": {"images": ["4", 0], "pose": ["5", 0], "size": 224}}
    prompt["7"] = {"class_type": "PreviewImage", "inputs": {"images": ["6", 0]}}
    entry = comfy.run(prompt, timeout=300)
    error = execution_error(entry)
    assert error is not None and error["node_type"] == "DreamActorFaceCrop"
    assert "connect the Skeleton Extractor's measured_pose" in error["exception_message"]
    assert comfy.alive()


def test_missing_insightface_models_name_the_folder_and_files(comfy):
    prompt = _base()
    prompt["5"]["inputs"]["head_backend"] = "insightface"
    prompt["6"] = {"class_type": "PreviewImage", "inputs": {"images": ["5", 2]}}
    entry = comfy.run(prompt, timeout=300)
    error = execution_error(entry)
    assert error is not None and error["node_type"] == "DreamActorSkeletonExtractor"
    message = error["exception_message"]
    assert "det_10g.onnx" in message and "insightface" in message
    assert comfy.alive()


def test_smplx_pose_without_parameters_is_a_clear_error(comfy):
    prompt = {"1": {"class_type": "DreamActorSmplxPose",
                    "inputs": {"params_path": "/nonexistent/params.npz", "gender": "neutral", "width": 0,
                               "height": 0, "fps": 25.0}},
              "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 1]}}}
    error = execution_error(comfy.run(prompt, timeout=120))
    assert error is not None and "does not exist" in error["exception_message"]
