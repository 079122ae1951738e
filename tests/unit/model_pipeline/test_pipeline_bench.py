import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
COMFYUI = REPO / ".comfyui"


def _run(*args, timeout=120):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout)


@pytest.mark.skipif(not (COMFYUI / "comfy").is_dir(), reason="needs ComfyUI at <repo>/.comfyui")
def test_dit_benchmark_minimal_run_ends_with_json():
    proc = _run("-m", "dreamactor_core.bench", "dit", "--dim", "32", "--heads", "2",
                "--depth", "1", "--tokens", "32", "--latent-frames", "2", "--repeats", "1",
                "--rss-steps", "1", "--rss-segments", "2", "--rss-runs", "1", "--no-fixed-mmap",
                "--comfyui-path", str(COMFYUI))
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    assert any(line.startswith("block ms") for line in lines)  # the table comes first
    result = json.loads(lines[-1])
    assert result["dim"] == 32 and result["video_tokens"] == 32 and result["depth"] == 1
    for key in ("block_ratio", "forward_ratio"):
        assert result[key] > 0
    for name in ("base", "face", "refs", "refs_face"):
        assert result["ours_block"][name]["ms"] > 0 and result["ours_block"][name]["peak_mb"] > 0
    assert result["wan_block"]["ms"] > 0 and result["wan_attention"] == "attention_pytorch"
    assert result["ref_face_extra"]["both_ratio"] > 0
    assert result["gflops"]["ours_forward_refs_face"] > 0 and result["gflops"]["matmul"] > 0
    rss = result["rss"]
    assert rss["segments"] == 2 and rss["ratio"] > 0 and rss["one_segment_kb"] > 0
    assert rss["tensor_peak_mb"]["ratio"] > 0 and rss["fixed_mmap_threshold"] is None


def test_missing_comfyui_is_a_clear_error(tmp_path):
    proc = _run("-m", "dreamactor_core.bench", "dit", "--comfyui-path", str(tmp_path))
    assert proc.returncode == 2
    assert "ComfyUI not found" in proc.stderr and "Traceback" not in proc.stderr


def test_core_library_never_imports_comfy_at_module_level():
    pattern = re.compile(r"^(import comfy|from comfy)", re.MULTILINE)
    offenders = [str(p.relative_to(REPO)) for p in (REPO / "dreamactor_core").rglob("*.py")
                 if pattern.search(p.read_text())]
    assert offenders == []
    code = ("import sys, dreamactor_core.bench.dit, dreamactor_core.model.pipeline; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('comfy', 'folder_paths')))")
    proc = _run("-c", code)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
