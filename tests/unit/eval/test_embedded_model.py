"""The shipped demo model (dreamactor_core/embedded/): small, strict, and it really animates.

Quality is checked on one held-out synthetic clip (the eval's first clip, fewer sampling steps)
against the copy-the-reference baseline computed in the same run; the full figures live in the
model card (dreamactor_core/embedded/README.md) and come from ``python -m dreamactor_core.eval``.
"""

from pathlib import Path

import numpy as np
import pytest
import torch

from dreamactor_core.eval.reenactment import EvalSettings, evaluate_clip, mean_frame
from dreamactor_core.model.bundle import DreamActorModel
from dreamactor_core.model.motion_tokens import embedded_models

torch.set_num_threads(1)
DEMO = Path(__file__).resolve().parents[3] / "dreamactor_core" / "embedded" / "dreamactor_demo.safetensors"
# Measured on this clip when the model shipped (session 33, see the model card): +12.6 dB PSNR
# and +10.7 dB moving-pixel PSNR over copying the reference (+12.5 dB PSNR with the audio
# driver); the session-22 file gave +12.9 / +11.0 (audio +10.2), the session-2 model +3.5 / +3.3.
# The margins guard against a regression to such a model or to "copy the reference" (0 dB), not
# against small numerical drift.
PSNR_MARGIN = 5.0
MOVING_MARGIN = 5.0
# A 33-frame clip is two segments (the same clip, 33 frames). Measured at its join when the
# model shipped: seam_error 0.007 (0.007 with audio; the session-22 file 0.007); the session-6
# model gave 0.074 when each segment continued from the previous one's last latent, 0.042 from
# its re-encoded last frame.
SEAM_MAX = 0.03
# metrics.latent_jump on the 17-frame clip (the truth: 0.95). Measured when the model shipped:
# 1.09 (the session-30 file 1.11, the session-16 file 1.12, the session-19 file 1.09, the session-20 file 1.07, the
# session-22 file 1.08); the frame-stacking model before its decoder learnt the temporal mix
# 1.39, the previous embedded model (causal 3D VAE) 1.60.
LATENT_JUMP_MAX = 1.32
# head_psnr (the head disk alone) with the face driven by crops of another character acting the
# same motion ("cross") against the clip's own crops ("video"). Measured on this clip when the
# model shipped: cross 18.19 dB, audio 18.20 dB, video 18.21 dB; the session-22 file, whose
# face-motion tokens carried the driver's face, read cross 13.52 dB and audio 14.52 dB against
# video 18.42 dB (so this test fails on it). The margin guards against that leak coming back.
HEAD_LEAK_MARGIN = 2.0


@pytest.fixture(scope="module")
def model() -> DreamActorModel:
    assert DEMO.is_file(), f"the embedded demo model {DEMO} is missing"
    return DreamActorModel.load(DEMO)


@pytest.fixture(scope="module")
def long_clip(model):
    settings = EvalSettings(clips=1, frames=33, steps=12, mean_clips=2)
    size = (model.config.frame_height, model.config.frame_width)
    return evaluate_clip(model, 0, settings, mean_frame(size, settings))


@pytest.fixture(scope="module")
def clip(model):
    settings = EvalSettings(clips=1, frames=17, steps=12, mean_clips=2)
    size = (model.config.frame_height, model.config.frame_width)
    return evaluate_clip(model, 0, settings, mean_frame(size, settings))


def test_embedded_model_is_listed_small_and_a_video_model(model):
    assert DEMO in embedded_models()
    assert DEMO.stat().st_size <= 40 * 2**20
    cfg = model.config
    assert (cfg.frame_height, cfg.frame_width) == (64, 64)
    assert cfg.vae.temporal_factor == 4 and cfg.segment_frames == 17  # clips, not single frames
    with torch.no_grad():  # one latent frame holds four video frames: the VAE mixes time
        video = torch.zeros(1, 3, 5, 64, 64)
        moved = video.clone()
        moved[:, :, 2, 20:40, 20:40] = 0.8
        z0, z1 = model.vae.encode(video), model.vae.encode(moved)
    assert torch.equal(z0[:, :, 0], z1[:, :, 0]) and not torch.allclose(z0[:, :, 1], z1[:, :, 1])


@torch.no_grad()
def test_embedded_decoder_reads_the_reference_image(model):
    # the reference head (session 33) is trained: given the reference, a still clip of it decodes
    # closer to it (measured when the model shipped: mean error 0.126 against 0.145 without it;
    # the same file with the head at zero: 0.145 both), and without it the decoder still decodes
    assert model.vae.uses_reference
    from skimage.data import astronaut

    photo = torch.from_numpy(astronaut()).permute(2, 0, 1)[None].float() / 127.5 - 1  # [1, 3, 512, 512]
    reference = torch.nn.functional.interpolate(photo, size=(64, 64), mode="area")
    z = model.vae.encode(reference[:, :, None].expand(-1, -1, 5, -1, -1))  # a still clip of it
    plain, with_ref = model.vae.decode(z), model.vae.decode(z, reference=reference)
    assert with_ref.shape == plain.shape == (1, 3, 5, 64, 64)
    err_plain = (plain - reference[:, :, None]).abs().mean()
    err_ref = (with_ref - reference[:, :, None]).abs().mean()
    assert err_ref < 0.95 * err_plain, (float(err_ref), float(err_plain))


def test_generated_clip_follows_the_driver_better_than_copying_the_reference(clip):
    video, copy = clip.scores["video"], clip.scores["copy_reference"]
    assert video["psnr"] >= copy["psnr"] + PSNR_MARGIN, clip.scores
    assert video["moving_psnr"] >= copy["moving_psnr"] + MOVING_MARGIN, clip.scores
    assert video["ssim"] > copy["ssim"], clip.scores
    generated = clip.videos["video"]
    assert generated.shape == clip.truth.shape
    # it moves: consecutive generated frames differ where the puppet moves
    assert float(np.abs(np.diff(generated, axis=0)).mean()) > 0.002


def test_audio_driver_gives_a_clip_of_the_same_quality_class(clip):
    audio, copy = clip.scores["audio"], clip.scores["copy_reference"]
    assert audio["psnr"] >= copy["psnr"] + PSNR_MARGIN, clip.scores
    assert clip.videos["audio"].shape == clip.truth.shape


def test_a_two_segment_clip_continues_without_a_jump(model, long_clip):
    assert model.config.dit.clean_context  # trained to continue from a clean first latent
    video, copy = long_clip.scores["video"], long_clip.scores["copy_reference"]
    assert video["psnr"] >= copy["psnr"] + PSNR_MARGIN, long_clip.scores
    assert video["seam_error"] <= SEAM_MAX, long_clip.scores
    assert long_clip.scores["audio"]["seam_error"] <= SEAM_MAX, long_clip.scores


def test_generated_clip_does_not_jump_where_latent_frames_begin(clip):
    assert clip.truth_latent_jump < 1.0  # the puppet's own motion: no seams every 4 frames
    assert clip.scores["video"]["latent_jump"] <= LATENT_JUMP_MAX, clip.scores


def test_another_actors_face_does_not_replace_the_characters_head(clip):
    """Driving the face with someone else's crops must not paste their face onto the character."""
    head = {name: clip.scores[name]["head_psnr"] for name in ("video", "audio", "cross")}
    assert head["cross"] >= head["video"] - HEAD_LEAK_MARGIN, head
    assert head["audio"] >= head["video"] - HEAD_LEAK_MARGIN, head
