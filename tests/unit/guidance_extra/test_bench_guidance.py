"""The guidance benchmark end to end with tiny settings: a table, then one JSON line last."""

import json

from dreamactor_core.bench import guidance
from dreamactor_core.bench.guidance import letterbox


def test_tiny_run_prints_json_last(capsys):
    assert guidance.main(["--frames", "4", "--long-frames", "8", "--size", "128", "--repeats", "1"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("guidance stack, 4 frames at 128x128")
    result = json.loads(lines[-1])
    stages = {"raw_holistic", "tracking", "smoothing", "head_pose", "retarget", "skeleton_render",
              "sphere_render", "face_crops", "whole"}
    assert set(result["fps"]) == stages and all(v > 0 for v in result["fps"].values())
    assert result["frames"] == 4 and result["size"] == 128
    assert abs(result["ratio_whole_raw"] - result["fps"]["whole"] / result["fps"]["raw_holistic"]) < 0.01
    assert result["render_fps"] > 0 and set(result["meets"]) == {"ratio_whole_raw", "render_fps"}
    memory = result["memory"]
    assert memory["short"]["tracked_frames"] == 4 and memory["long"]["tracked_frames"] == 8
    assert memory["short"]["peak_growth_mb"] >= 0 and isinstance(memory["flat"], bool)


def test_letterbox_keeps_aspect_and_pads():
    import numpy as np

    frame = np.full((384, 288, 3), 200, np.uint8)
    out = letterbox(frame, 512)
    assert out.shape == (512, 512, 3)
    cols = np.flatnonzero(out[256, :, 0] > 100)
    assert cols[0] == 64 and cols[-1] == 447  # 288 * 4/3 = 384 wide, centred
    assert out[:, :60].max() == 0
