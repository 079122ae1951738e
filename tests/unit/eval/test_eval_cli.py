"""End to end: python -m dreamactor_core.eval on a tiny random-weight model, model-path
resolution, and the contact sheet."""

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from dreamactor_core.eval.__main__ import main, resolve_model
from dreamactor_core.eval.sheet import build_sheet, composite_guidance, sample_times
from dreamactor_core.model.audio_motion import AudioMotionConfig
from dreamactor_core.model.bundle import DreamActorModel
from dreamactor_core.model.config import DiTConfig, ModelConfig, VAEConfig
from dreamactor_core.model.face_motion import FaceMotionConfig

torch.set_num_threads(1)
REPO = Path(__file__).resolve().parents[3]
FIGURES = ("psnr", "ssim", "moving_psnr", "flicker", "mouth_error")


def tiny_model() -> DreamActorModel:
    """32x32 frames, DiT dim 32 / depth 1, random non-zero weights."""
    torch.manual_seed(0)
    config = ModelConfig(
        vae=VAEConfig(latent_channels=4, base_channels=8, channel_mults=(1, 1, 1),
                      num_res_blocks=1, spatial_factor=4, temporal_factor=4),
        dit=DiTConfig(latent_channels=4, temporal_factor=4, pose_latent_channels=4,
                      pose_hidden_channels=8, dim=32, depth=1, heads=2, face_token_dim=16,
                      face_tokens_per_frame=2, time_freq_dim=32),
        segment_frames=5, frame_height=32, frame_width=32, name="eval-test")
    face = FaceMotionConfig(token_dim=16, tokens_per_frame=2, image_size=32, channels=(8, 16),
                            hidden_dim=16)
    audio = AudioMotionConfig(token_dim=16, tokens_per_frame=2, hidden_dim=16, num_heads=2,
                              window_layers=1, temporal_layers=1)
    model = DreamActorModel.from_config(config, face, audio).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model


@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> Path:
    return tiny_model().save(tmp_path_factory.mktemp("model") / "tiny.safetensors")


def test_cli_prints_the_report_as_its_last_line_and_writes_the_sheet(model_file, tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "dreamactor_core.eval", "--model", str(model_file), "--clips", "2",
         "--frames", "5", "--steps", "2", "--mean-clips", "2", "--out", str(out),
         "--device", "cpu"], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    report = json.loads(lines[-1])
    assert "psnr" in lines[0] and "ssim" in lines[0]  # the table comes first
    assert json.loads((out / "report.json").read_text()) == report

    for scores in (report, report["audio"], report["cross"],
                   report["baselines"]["copy_reference"], report["baselines"]["mean_frame"]):
        assert set(FIGURES) <= set(scores)
        assert 0 < scores["head_psnr"] < 60
        assert 0 < scores["psnr"] < 60 and -1 <= scores["ssim"] <= 1
        assert scores["flicker"] >= 0
    assert report["baselines"]["copy_reference"]["flicker"] == 0.0  # a still video
    assert report["seam_error"] is None  # 5 frames: one segment, no joins
    assert report["latent_jump"] > 0 and report["audio"]["latent_jump"] > 0
    assert report["baselines"]["copy_reference"]["latent_jump"] is None  # no change to compare
    assert report["truth_latent_jump"] > 0 and report["vae_latent_jump"] > 0
    assert "mouth_error" in report["baselines"]["closed_mouth"]
    assert 0 < report["vae_psnr"] < 60
    assert 0 < report["vae_reference_psnr"] < 60
    assert 0 < report["vae_moving_psnr"] < 60
    assert 0 < report["vae_ssim"] <= 1
    assert report["vae_mouth_error"] is None or 0 <= report["vae_mouth_error"] <= 1
    for key in ("vae_mouth_kept", "mouth_match_floor"):  # None where no frame is readable
        assert key in report and (report[key] is None or 0 <= report[key] <= 1)
    assert "mouth opening kept by the VAE" in proc.stdout and "model (cross)" in proc.stdout
    assert set(report["generate_s"]) == {"video", "audio", "cross"}
    # the cross-identity driver is another face: its tokens, so its video, differ
    assert report["cross"]["psnr"] != report["psnr"]
    assert report["settings"]["clips"] == 2 and report["settings"]["steps"] == 2
    assert report["clip_seeds"] == [10_000_000, 10_000_001]
    assert set(report["meets"]) == set(report["bars"]) == {
        "vae_psnr", "psnr", "ssim", "moving_psnr", "flicker", "audio_mouth_error"}
    assert all(isinstance(v, bool) for v in report["meets"].values())
    # A random-weight model meets none of the quality bars.
    assert not report["meets"]["vae_psnr"] and not report["meets"]["ssim"]
    assert report["bars"]["psnr"]["value"] == pytest.approx(
        report["baselines"]["copy_reference"]["psnr"] + 7.0)

    sheet = cv2.imread(str(out / "sheet.png"))
    # header + 2 rows of 2x-upscaled 32 px tiles; 2 + 2*3 columns
    assert sheet.shape[0] > 2 * 64 and sheet.shape[1] == 8 * 64 + 7 * 2


def test_cli_is_deterministic_and_rejects_bad_settings(model_file, tmp_path, capsys):
    args = ["--model", str(model_file), "--clips", "1", "--frames", "5", "--steps", "1",
            "--mean-clips", "1", "--device", "cpu"]
    assert main(args + ["--out", str(tmp_path / "a")]) == 0
    first = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert main(args + ["--out", str(tmp_path / "b")]) == 0
    second = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert first["psnr"] == second["psnr"] and first["audio"] == second["audio"]

    # 9 frames = two 5-frame segments sharing one frame: one join, measured for every variant
    assert main(args[:4] + ["--frames", "9", "--out", str(tmp_path / "d")]) == 0
    two = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert two["seam_error"] > 0 and two["audio"]["seam_error"] > 0
    still = two["baselines"]["copy_reference"]["seam_error"]
    assert 0 < still < 0.5  # a still video's seam error is the truth's own change at the join

    assert main(args[:4] + ["--frames", "6", "--out", str(tmp_path / "c")]) == 2
    assert "4*k+1" in capsys.readouterr().err
    assert main(["--model", str(tmp_path / "missing.safetensors")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_draws_average_the_sampling_noise(model_file, tmp_path, capsys):
    args = ["--model", str(model_file), "--clips", "2", "--frames", "5", "--steps", "1",
            "--mean-clips", "1", "--device", "cpu"]
    assert main(args + ["--out", str(tmp_path / "one")]) == 0
    one = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert main(args + ["--draws", "3", "--out", str(tmp_path / "three")]) == 0
    out = capsys.readouterr().out
    three = json.loads(out.strip().splitlines()[-1])
    assert "over 3 draws" in out

    for variant, scores in (("video", three), ("audio", three["audio"]), ("cross", three["cross"])):
        drawn = three["per_draw"][variant]
        assert len(drawn["psnr"]) == 3
        assert scores["psnr"] == pytest.approx(np.mean(drawn["psnr"]))  # the figure is their mean
        assert scores["ssim"] == pytest.approx(np.mean(drawn["ssim"]))
        assert len(set(drawn["psnr"])) == 3  # each draw its own noise
    # draw 0 is the one-draw run (its seeds unchanged), and so is the sheet's video
    assert three["per_draw"]["video"]["psnr"][0] == pytest.approx(one["psnr"])
    assert three["per_draw"]["audio"]["moving_psnr"][0] == pytest.approx(one["audio"]["moving_psnr"])
    assert one["per_draw"]["video"]["psnr"] == [pytest.approx(one["psnr"])]
    # the baselines and the autoencoder's figures do not depend on the sampling
    assert three["baselines"] == one["baselines"] and three["vae_psnr"] == one["vae_psnr"]
    assert three["settings"]["draws"] == 3

    assert main(args + ["--draws", "0", "--out", str(tmp_path / "zero")]) == 2
    assert "draws must be an integer >= 1" in capsys.readouterr().err


def test_vae_only_scores_the_autoencoder_on_the_same_clips(model_file, tmp_path, capsys):
    args = ["--model", str(model_file), "--clips", "2", "--frames", "5", "--steps", "1",
            "--mean-clips", "1", "--device", "cpu"]
    assert main(args + ["--out", str(tmp_path / "full")]) == 0
    full = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert main(args + ["--vae-only", "--out", str(tmp_path / "vae")]) == 0
    out = capsys.readouterr().out
    vae = json.loads(out.strip().splitlines()[-1])

    assert out.startswith("VAE reconstruction over 2 clip(s)")
    keys = ("vae_psnr", "vae_moving_psnr", "vae_ssim", "vae_reference_psnr",
            "truth_latent_jump", "vae_latent_jump")
    for key in keys:  # the same figures as the full evaluation's, clip for clip
        assert vae[key] == pytest.approx(full[key], rel=1e-6), key
        assert len(vae["per_clip"][key]) == 2
        assert vae[key] == pytest.approx(np.mean(vae["per_clip"][key]))
    assert vae["per_clip"]["vae_psnr"][0] != vae["per_clip"]["vae_psnr"][1]  # two clips
    assert vae["clip_seeds"] == full["clip_seeds"]
    assert vae["bars"] == {"vae_psnr": full["bars"]["vae_psnr"]}
    assert vae["meets"] == {"vae_psnr": False}  # random weights
    assert "psnr" not in vae and "audio" not in vae  # nothing was generated
    assert json.loads((tmp_path / "vae" / "report.json").read_text()) == vae
    assert not (tmp_path / "vae" / "sheet.png").exists()

    assert main(args[:4] + ["--frames", "6", "--vae-only", "--out", str(tmp_path / "bad")]) == 2
    assert "4*k+1" in capsys.readouterr().err


def test_resolve_model_accepts_a_bundle_a_checkpoint_and_a_run_folder(model_file, tmp_path):
    assert resolve_model(str(model_file)) == model_file
    step = tmp_path / "run" / "checkpoints" / "step_00000010"
    step.mkdir(parents=True)
    for name in ("model.safetensors", "ema.safetensors"):
        (step / name).write_bytes(model_file.read_bytes())
    save_file({"x": torch.zeros(1)}, str(step / "optimizer.safetensors"))
    assert resolve_model(str(step)) == step / "ema.safetensors"
    assert resolve_model(str(tmp_path / "run")) == step / "ema.safetensors"
    with pytest.raises(ValueError, match="without ema.safetensors"):
        resolve_model(str(tmp_path))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="complete"):
        resolve_model(str(tmp_path / "empty"))


def test_sheet_helpers():
    assert sample_times(17, 3) == [0, 8, 16]
    assert sample_times(2, 5) == [0, 1]
    maps = np.zeros((4, 4, 6), np.float32)
    maps[..., 3:] = 0.5  # sphere everywhere
    maps[0, 0, :3] = (1, 0, 0)  # one skeleton pixel on top
    image = composite_guidance(maps)
    np.testing.assert_array_equal(image[0, 0], (1, 0, 0))
    np.testing.assert_array_equal(image[1, 1], (0.5, 0.5, 0.5))
    with pytest.raises(ValueError, match="no clip results"):
        build_sheet([])
