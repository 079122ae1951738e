"""The generator nodes in a real ComfyUI: model loading, video and audio drivers, sampling in
segments, stitching, errors and cancel. The model has random weights (tests/tiny_model.py)."""

import time

import numpy as np
import pytest

from comfy_server import execution_error
pytestmark = pytest.mark.comfy
MODEL = "tiny_random_test.safetensors"  # written by the comfy fixture (tests/conftest.py)


@pytest.fixture(scope="module")
def server(comfy):
    (comfy.models_dir / "corrupt.safetensors").write_bytes(b"\x00" * 64)
    return comfy


def _prompt(driver: str, steps: int = 2, frames: int = 13, seed: int = 7) -> dict:
    p = {
        "1": {"class_type": "DreamActorModelLoader", "inputs": {"model_name": MODEL}},
        "2": {"class_type": "LoadImage", "inputs": {"image": "reference_astronaut.jpg"}},
        "3": {"class_type": "DreamActorReferenceLoader",
              "inputs": {"image": ["2", 0], "width": 64, "height": 64, "margin": 0.08}},
        "4": {"class_type": "LoadVideo", "inputs": {"file": "driver_astronaut.mp4"}},
        "5": {"class_type": "GetVideoComponents", "inputs": {"video": ["4", 0]}},
        "6": {"class_type": "ImageFromBatch", "inputs": {"image": ["5", 0], "batch_index": 0, "length": frames}},
        "7": {"class_type": "DreamActorSkeletonExtractor",
              "inputs": {"images": ["6", 0], "fps": ["5", 2], "retarget_mode": "auto", "max_gap_frames": 8, "pose_backend": "mediapipe", "head_backend": "mediapipe",
                         "reference": ["3", 0]}},
        "8": {"class_type": "DreamActorHeadSphereRenderer",
              "inputs": {"pose": ["7", 0], "radius_scale": 1.0, "reference": ["3", 0]}},
        "10": {"class_type": "DreamActorSampler",
               "inputs": {"model": ["1", 0], "reference": ["3", 0], "skeleton_maps": ["7", 2],
                          "sphere_maps": ["8", 0], "steps": steps, "solver": "euler", "shift": 3.0,
                          "ref_scale": 2.5, "motion_scale": 2.5, "seed": seed, "segment_frames": 0,
                          "face_motion": ["9", 0]}},
        "11": {"class_type": "DreamActorSegmentStitcher",
               "inputs": {"segments": ["10", 0], "colour_match": True, "crossfade_frames": 0,
                          "reference_strength": 0.5, "reference": ["3", 0]}},
        "12": {"class_type": "SaveImage", "inputs": {"images": ["11", 0], "filename_prefix": f"test/{driver}"}},
    }
    if driver == "video":
        p["13"] = {"class_type": "DreamActorFaceCrop", "inputs": {"images": ["6", 0], "pose": ["7", 1], "size": 224}}
        p["9"] = {"class_type": "DreamActorFaceMotionEncoder",
                  "inputs": {"model": ["1", 0], "face_crops": ["13", 0], "fps": ["5", 2]}}
    else:
        p["13"] = {"class_type": "LoadAudio", "inputs": {"audio": "speech_espeak.flac"}}
        p["9"] = {"class_type": "DreamActorAudioToMotion",
                  "inputs": {"model": ["1", 0], "audio": ["13", 0], "num_frames": 1, "fps": 25.0, "pose": ["7", 0]}}
    return p


def _saved_frames(server, entry, node="12"):
    from PIL import Image

    images = entry["outputs"][node]["images"]
    return np.stack([np.asarray(Image.open(server.output_dir / i["subfolder"] / i["filename"]).convert("RGB"))
                     for i in images])


def test_loader_lists_models_folder(server):
    options = server.object_info("DreamActorModelLoader")["DreamActorModelLoader"]["input"]["required"]["model_name"]
    names = options[1]["options"] if options[0] == "COMBO" else options[0]
    assert MODEL in names and "corrupt.safetensors" in names


@pytest.mark.parametrize("driver", ["video", "audio"])
def test_generation_runs_with_either_driver(server, driver):
    entry = server.run(_prompt(driver), timeout=600)
    assert entry["status"]["status_str"] == "success", execution_error(entry)
    frames = _saved_frames(server, entry)
    # 13 driving frames at 9 frames per segment: two segments sharing one frame -> 13 frames.
    assert frames.shape == (13, 64, 64, 3)
    assert frames.std() > 1.0  # not a constant image


def test_same_seed_same_frames(server):
    a = _saved_frames(server, server.run(_prompt("video", seed=3), timeout=600))
    b = _saved_frames(server, server.run(_prompt("video", seed=3), timeout=600))
    c = _saved_frames(server, server.run(_prompt("video", seed=4), timeout=600))
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_corrupt_model_file_is_a_clear_error(server):
    prompt = _prompt("video")
    prompt["1"]["inputs"]["model_name"] = "corrupt.safetensors"
    entry = server.run(prompt, timeout=300)
    error = execution_error(entry)
    assert error is not None and error["node_type"] == "DreamActorModelLoader"
    assert "not a valid safetensors file" in error["exception_message"]
    assert "corrupt.safetensors" in error["exception_message"]
    assert server.alive()


def test_cancel_during_sampling_stops_within_a_step(server):
    prompt = _prompt("video", steps=200, frames=40)  # 5 segments x 200 steps: far from done at step 5
    prompt_id = server.wait_for_progress(prompt, node="10", at_least=5)
    server.interrupt()
    interrupted_at = time.time()
    entry = server.wait(prompt_id, timeout=120)
    assert time.time() - interrupted_at < 5
    assert "execution_interrupted" in [kind for kind, _ in entry["status"]["messages"]]
