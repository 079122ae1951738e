"""Stage freezing (which parameters learn) and that training lowers the loss."""

import math

import pytest
import torch

from dreamactor_core.model.dit import FaceAttention
from dreamactor_core.train.datasets import collate
from dreamactor_core.train.modules import build_modules
from dreamactor_core.train.stages import (face_attention_parameters, latent_shape, make_draws,
                                          stage_loss, trainable_names)
from dreamactor_core.train.trainer import Trainer


def snapshot(modules):
    return {n: p.detach().clone() for n, p in modules.named_parameters()}


def changed(before, modules):
    return {n for n, p in modules.named_parameters() if not torch.equal(before[n], p)}


def test_face_attention_found_by_module_type(tiny_config):
    overrides = tiny_config().model_overrides
    modules = build_modules(tiny_config(model_overrides={**overrides,
                                                         "dit": {**overrides["dit"], "depth": 2}}))
    names = face_attention_parameters(modules.dit)
    count = sum(isinstance(m, FaceAttention) for m in modules.dit.modules())
    assert count == 2
    assert names and all(".face." in n for n in names)
    per_layer = sum(p.numel() for p in next(m for m in modules.dit.modules()
                                             if isinstance(m, FaceAttention)).parameters())
    assert sum(p.numel() for p in names.values()) == 2 * per_layer


def test_trainable_sets_per_stage(tiny_config):
    modules = build_modules(tiny_config())
    all_names = {n for n, _ in modules.named_parameters()}
    face_attn = {f"dit.{n}" for n in face_attention_parameters(modules.dit)}
    by = {c: {n for n in all_names if n.startswith(c + ".")} for c in
          ("vae", "pose_encoder", "dit", "face_encoder", "audio_encoder")}
    assert trainable_names(modules, "vae") == by["vae"]
    assert trainable_names(modules, "0") == by["vae"]
    assert trainable_names(modules, 1) == (by["dit"] - face_attn) | by["pose_encoder"]
    assert trainable_names(modules, "2") == by["face_encoder"] | face_attn
    assert trainable_names(modules, "3") == by["dit"] | by["pose_encoder"] | by["face_encoder"]
    assert trainable_names(modules, "audio") == by["audio_encoder"]
    with pytest.raises(ValueError, match="stage must be one of"):
        trainable_names(modules, "4")


@pytest.mark.parametrize("stage", ["1", "2", "3", "audio"])
def test_a_step_changes_only_the_stage_parameters(tmp_path, tiny_config, stage1_run, stage):
    # no weight decay and no dropout: whatever moves, moved because of its gradient
    config = tiny_config(p_drop_ref=0.0, p_drop_motion=0.0, weight_decay=0.0)
    init = None if stage == "1" else stage1_run
    trainer = Trainer(config, stage, tmp_path, 2, init_from=init, device="cpu")
    before = snapshot(trainer.modules)
    trainer.run()
    moved = changed(before, trainer.modules)
    allowed = trainable_names(trainer.modules, stage)
    assert moved, "the step must change something"
    assert moved <= allowed, f"frozen parameters changed: {sorted(moved - allowed)[:5]}"
    frozen = [p for n, p in trainer.modules.named_parameters() if n not in allowed]
    assert all(not p.requires_grad for p in frozen)
    if stage in ("2", "3"):  # both the face encoder and the face attention learn
        assert any(n.startswith("face_encoder.") for n in moved)
        assert any(".face.attn.proj." in n for n in moved)
    if stage == "3":
        assert any(n.startswith("pose_encoder.") for n in moved)


def test_motion_stages_need_a_trained_model(tmp_path, tiny_config):
    for stage in ("2", "audio"):
        with pytest.raises(ValueError, match="--init"):
            Trainer(tiny_config(), stage, tmp_path, 1, device="cpu")


def fixed_batch_loss(modules, stage, batch, config):
    draws = make_draws(config, 0, [0, 1], latent_shape(modules.model_config, batch["video"].shape))
    with torch.no_grad():
        return float(stage_loss(modules, batch, draws, stage, config)[0])


@pytest.mark.parametrize("stage", ["vae", "1"])
def test_loss_decreases_on_a_fixed_batch(tmp_path, tiny_config, stage):
    config = tiny_config(data={"kind": "synthetic", "num_clips": 2, "frames": [5, 5]},
                         lr=3e-3, p_drop_ref=0.0, p_drop_motion=0.0, log_every=5)
    trainer = Trainer(config, stage, tmp_path, 20, device="cpu")
    batch = collate([trainer.dataset[0], trainer.dataset[1]])
    before = fixed_batch_loss(trainer.modules, stage, batch, config)
    rows = trainer.run()
    after = fixed_batch_loss(trainer.modules, stage, batch, config)
    assert len(rows) == 4 and rows[-1]["step"] == 20
    # measured: vae 0.652 -> 0.543, stage 1 1.957 -> 1.574 (flow loss has a high noise floor)
    assert after < 0.9 * before, (before, after)


def test_frame_stack_vae_trains_and_a_dit_stage_runs_on_it(tmp_path, tiny_config):
    vae = {"architecture": "frame_stack", "latent_channels": 4, "base_channels": 8,
           "channel_mults": [1, 2], "num_res_blocks": 1, "spatial_factor": 4,
           "temporal_factor": 4, "patch_size": 2}
    overrides = dict(tiny_config().model_overrides, vae=vae)
    config = tiny_config(model_overrides=overrides, lr=3e-3, log_every=5,
                         data={"kind": "synthetic", "num_clips": 2, "frames": [5, 5]})
    trainer = Trainer(config, "vae", tmp_path / "vae", 20, device="cpu")
    assert type(trainer.modules.vae).__name__ == "FrameStackVAE"
    batch = collate([trainer.dataset[0], trainer.dataset[1]])
    before = fixed_batch_loss(trainer.modules, "vae", batch, config)
    trainer.run()
    assert fixed_batch_loss(trainer.modules, "vae", batch, config) < 0.9 * before
    dit = Trainer(config, "1", tmp_path / "s1", 2, init_from=tmp_path / "vae", device="cpu")
    assert dit.modules.vae.has_latent_stats  # measured on the frame VAE's latents
    rows = dit.run()
    assert rows[-1]["step"] == 2 and math.isfinite(float(rows[-1]["loss"]))


def test_draws_depend_on_position_not_on_batch_split(tiny_config):
    config = tiny_config(p_drop_ref=0.5, p_drop_motion=0.5)
    both = make_draws(config, 3, [6, 7], (4, 2, 8, 8))
    first = make_draws(config, 3, [6], (4, 2, 8, 8))
    second = make_draws(config, 3, [7], (4, 2, 8, 8))
    assert torch.equal(both.noise, torch.cat([first.noise, second.noise]))
    assert torch.equal(both.t, torch.cat([first.t, second.t]))
    assert torch.equal(both.drop_ref, torch.cat([first.drop_ref, second.drop_ref]))
    other = make_draws(config, 4, [6, 7], (4, 2, 8, 8))
    assert not torch.equal(both.noise, other.noise)
    assert ((both.t > 0) & (both.t < 1)).all()


def test_bf16_autocast_and_gradient_checkpointing(tmp_path, tiny_config):
    plain = Trainer(tiny_config(mixed_precision="no"), "1", tmp_path / "a", 2, device="cpu")
    assert not plain.use_bf16
    rows = plain.run()
    ckpt = Trainer(tiny_config(gradient_checkpointing=True, mixed_precision="no"), "1",
                   tmp_path / "b", 2, device="cpu")
    assert ckpt.modules.dit.gradient_checkpointing
    assert [r["loss"] for r in ckpt.run()] == [r["loss"] for r in rows]  # recomputation is exact
    bf16 = Trainer(tiny_config(mixed_precision="bf16"), "1", tmp_path / "c", 2, device="cpu")
    assert bf16.use_bf16
    low = bf16.run()
    assert all(p.dtype == torch.float32 for p in bf16.modules.parameters())  # fp32 master weights
    for r, q in zip(rows, low):
        assert float(q["loss"]) == pytest.approx(float(r["loss"]), rel=0.05)


def test_vae_decoder_stage_keeps_the_latent_space(tmp_path, tiny_config, stage1_run):
    modules = build_modules(tiny_config())
    decoder = {n for n, _ in modules.named_parameters() if n.startswith("vae.decoder.")}
    assert decoder and trainable_names(modules, "vae_decoder") == decoder

    config = tiny_config(weight_decay=0.0, vae_head_weight=4.0)
    trainer = Trainer(config, "vae_decoder", tmp_path, 2, init_from=stage1_run, device="cpu")
    vae = trainer.modules.vae
    stats = (vae.latent_mean.clone(), vae.latent_std.clone())
    video = collate([trainer.dataset[0]])["video"]
    with torch.no_grad():
        latent_before = vae.encode(video)
    before = snapshot(trainer.modules)
    trainer.run()
    moved = changed(before, trainer.modules)
    assert moved and moved <= decoder
    with torch.no_grad():  # the encoder and the latent normalisation are untouched
        assert torch.equal(vae.encode(video), latent_before)
    assert torch.equal(vae.latent_mean, stats[0]) and torch.equal(vae.latent_std, stats[1])


def test_head_weight_covers_the_head_sphere_and_its_rim():
    from dreamactor_core.train.stages import head_weight

    guidance = torch.zeros(1, 6, 2, 16, 16)
    guidance[0, 0, :, 0:4, 0:4] = 1.0  # a skeleton limb: not the head
    guidance[0, 4, 1, 8:10, 8:10] = 0.5  # the head sphere, in frame 1 only
    w = head_weight(guidance, 3.0)
    assert w.shape == (1, 1, 2, 16, 16)
    assert torch.equal(w[0, 0, 0], torch.ones(16, 16))  # no head in frame 0
    assert (w[0, 0, 1, 6:12, 6:12] == 4.0).all()  # the head grown by 2 pixels
    assert w[0, 0, 1].sum() == 256 + 3.0 * 36


def test_weighted_vae_loss_reduces_to_the_plain_one(tiny_config):
    from dreamactor_core.train.stages import vae_loss

    modules = build_modules(tiny_config())
    video = torch.rand(1, 3, 5, 32, 32) * 2 - 1
    noise = torch.randn(1, 4, 2, 8, 8)
    with torch.no_grad():
        plain, _ = vae_loss(modules.vae, video, noise, 1e-4)
        ones, _ = vae_loss(modules.vae, video, noise, 1e-4, torch.ones(1, 1, 5, 32, 32))
        double, logged = vae_loss(modules.vae, video, noise, 0.0, torch.full((1, 1, 5, 32, 32), 2.0))
    assert torch.allclose(plain, ones)
    assert torch.allclose(double, 2 * (logged["l1"] + logged["mse"]))
    with pytest.raises(ValueError, match="vae_head_weight"):
        tiny_config(vae_head_weight=-1.0)


def test_first_frame_weight_scales_frame_zero_only():
    from dreamactor_core.train.stages import vae_weight

    guidance = torch.zeros(2, 6, 5, 16, 16)
    guidance[:, 4, :, 8:10, 8:10] = 0.5  # the head sphere in every frame
    assert vae_weight(guidance, 0.0, 1.0) is None  # neutral: the plain loss
    w = vae_weight(guidance, 3.0, 4.0)
    head = vae_weight(guidance, 3.0, 1.0)
    assert w.shape == head.shape == (2, 1, 5, 16, 16)
    assert torch.equal(w[:, :, 0], 4.0 * head[:, :, 0])
    assert torch.equal(w[:, :, 1:], head[:, :, 1:])
    assert w[0, 0, 0, 0, 0] == 4.0 and w[0, 0, 0, 8, 8] == 16.0
    only_first = vae_weight(guidance, 0.0, 5.0)
    assert torch.equal(only_first[:, :, 1:], torch.ones(2, 1, 4, 16, 16))
    assert (only_first[:, :, 0] == 5.0).all()


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan")])
def test_first_frame_weight_must_be_positive(tiny_config, bad):
    with pytest.raises(ValueError, match="vae_first_frame_weight"):
        tiny_config(vae_first_frame_weight=bad)


def test_vae_stage_resets_latent_stats_and_the_next_dit_stage_remeasures(tmp_path, tiny_config,
                                                                         stage1_run):
    # stage1_run measured its latent stats on its encoder; retraining that encoder moves the
    # latent space, so a DiT stage after it must not reuse them.
    measured = Trainer(tiny_config(), "1", tmp_path / "probe", 1, init_from=stage1_run,
                       device="cpu").modules.vae
    assert not torch.equal(measured.latent_std, torch.ones_like(measured.latent_std))
    assert measured.has_latent_stats

    vae_run = Trainer(tiny_config(), "vae", tmp_path / "vae", 2, init_from=stage1_run,
                      device="cpu")
    assert torch.equal(vae_run.modules.vae.latent_mean, torch.zeros_like(measured.latent_mean))
    assert torch.equal(vae_run.modules.vae.latent_std, torch.ones_like(measured.latent_std))
    assert not vae_run.modules.vae.has_latent_stats
    vae_run.run()

    dit_run = Trainer(tiny_config(), "1", tmp_path / "dit", 1, init_from=tmp_path / "vae",
                      device="cpu")
    vae = dit_run.modules.vae
    assert not torch.equal(vae.latent_std, torch.ones_like(vae.latent_std))
    assert not torch.allclose(vae.latent_std, measured.latent_std)  # measured on the new encoder
    video = collate([dit_run.dataset[i] for i in range(2)])["video"]
    with torch.no_grad():
        latent = vae.encode(video)  # [B, C, T', h, w], normalised with the new stats
    assert latent.std().item() == pytest.approx(1.0, abs=0.35)


def test_clean_first_draws_are_one_choice_per_step(tiny_config):
    shape = (4, 2, 8, 8)
    assert not any(make_draws(tiny_config(), s, [0, 1], shape).clean_first for s in range(20))
    assert all(make_draws(tiny_config(p_clean_first=1.0), s, [0, 1], shape).clean_first
               for s in range(20))
    half = tiny_config(p_clean_first=0.5)
    flags = [make_draws(half, s, [0, 1], shape).clean_first for s in range(40)]
    assert 5 < sum(flags) < 35
    assert flags == [make_draws(half, s, [5], shape).clean_first for s in range(40)]
    # the per-sample draws are the ones a run without clean frames sees
    assert torch.equal(make_draws(half, 3, [0, 1], shape).noise,
                       make_draws(tiny_config(), 3, [0, 1], shape).noise)


def test_clean_first_loss_is_a_continued_segment(tmp_path, tiny_config, stage1_run, monkeypatch):
    """A clean-first step trains what the pipeline runs when it continues a video: latent 0
    (the first frame, encoded alone) is clean context and the loss covers the later latents.
    So the noise of latent 0 cannot change the loss, that of latent 1 does, and the DiT sees
    latent 0 unchanged with num_clean_frames=1."""
    config = tiny_config(data={"kind": "synthetic", "num_clips": 2, "frames": [9, 9]},
                         p_clean_first=1.0, p_drop_ref=0.0, p_drop_motion=0.0)
    trainer = Trainer(config, "3", tmp_path, 1, init_from=stage1_run, device="cpu")
    modules = trainer.modules.eval()
    batch = collate([trainer.dataset[0], trainer.dataset[1]])
    draws = make_draws(config, 0, [0, 1], latent_shape(config.model_config(), batch["video"].shape))
    assert draws.clean_first and draws.noise.shape[2] == 3
    seen = []
    forward = type(modules.dit).forward

    def spy(self, x_t, timestep, **kwargs):
        seen.append((x_t.clone(), kwargs["num_clean_frames"]))
        return forward(self, x_t, timestep, **kwargs)

    monkeypatch.setattr(type(modules.dit), "forward", spy)

    def loss_with(noise):
        d = type(draws)(draws.t, noise, draws.drop_ref, draws.drop_motion, True)
        with torch.no_grad():
            return float(stage_loss(modules, batch, d, "3", config)[0])

    def noisier(frame):
        noise = draws.noise.clone()
        noise[:, :, frame] = torch.randn_like(noise[:, :, frame]) * 3
        return noise

    base = loss_with(draws.noise)
    x_t, clean = seen[0]
    with torch.no_grad():
        latent0 = modules.vae.encode(batch["video"])[:, :, 0]
    assert clean == 1 and x_t.shape[2] == 3
    assert torch.equal(x_t[:, :, 0], latent0)
    assert loss_with(noisier(0)) == pytest.approx(base, rel=1e-6)
    assert loss_with(noisier(1)) != pytest.approx(base, rel=1e-3)


def test_clean_first_training_runs_and_marks_the_model(tmp_path, tiny_config, stage1_run):
    config = tiny_config(p_clean_first=1.0)
    assert config.model_config().dit.clean_context
    assert not tiny_config().model_config().dit.clean_context
    rows = Trainer(config, "3", tmp_path, 2, init_from=stage1_run, device="cpu").run()
    assert len(rows) == 2 and all(torch.isfinite(torch.tensor(float(r["loss"]))) for r in rows)
    with pytest.raises(ValueError, match="p_clean_first must be a probability"):
        tiny_config(p_clean_first=1.5)


def _sphere_guidance(yaw: float) -> torch.Tensor:
    from dreamactor_core.guidance.head_sphere import render_sphere

    sphere = render_sphere((yaw, 0.0, 0.0), (16.0, 16.0), 12.0, (32, 32))  # [H, W, 3] uint8
    guidance = torch.zeros(1, 6, 1, 32, 32)
    guidance[0, 3:6, 0] = torch.from_numpy(sphere).permute(2, 0, 1).float() / 255
    return guidance


def test_mouth_mask_sits_below_the_centre_of_a_frontal_head_and_vanishes_when_it_turns_away():
    from dreamactor_core.train.stages import mouth_mask

    front = mouth_mask(_sphere_guidance(0.0))[0, 0, 0]  # [32, 32]
    ys, xs = torch.nonzero(front, as_tuple=True)
    assert 10 <= len(ys) <= 0.25 * 3.1416 * 12 ** 2  # a cap, not the whole face
    assert ys.float().mean() > 16 + 3  # below the centre: the mouth's head-frame y is +0.5
    assert abs(xs.float().mean().item() - 16) < 1.0  # on the face's midline
    assert not mouth_mask(_sphere_guidance(180.0)).any()  # the back of the head
    assert not mouth_mask(torch.zeros(1, 6, 1, 32, 32)).any()  # no head sphere


def test_mouth_mask_covers_the_rendered_mouth_of_a_puppet():
    # The pixels that change when only mouth_open changes are the mouth: they must lie in the
    # mask found from the head-sphere guidance alone.
    import numpy as np

    from dreamactor_core.synthetic.clip import make_clip, rerender_clip
    from dreamactor_core.train.datasets import guidance_maps
    from dreamactor_core.train.stages import mouth_mask

    covered, total = 0, 0
    for seed in (3, 5, 8):
        clip = make_clip(seed, 5, (64, 64), 25.0, with_audio=False)
        closed, opened = (rerender_clip(seed, clip, level).astype(np.int16) for level in (0.0, 1.0))
        moved = torch.from_numpy(np.abs(opened - closed).max(-1) > 20)  # [T, H, W]
        guidance = torch.from_numpy(guidance_maps(clip.track, (64, 64))).permute(3, 0, 1, 2)
        mask = mouth_mask(guidance[None].float() / 255)[0, 0]  # [T, H, W]
        covered += int((moved & mask).sum())
        total += int(moved.sum())
        head = guidance[3:6].amax(0) > 0
        assert mask.sum() < 0.25 * head.sum()  # the mouth, not the whole head
    assert total > 0 and covered >= 0.9 * total


def test_mouth_weight_adds_on_the_mouth_only():
    from dreamactor_core.train.stages import mouth_mask, vae_weight

    guidance = _sphere_guidance(0.0)
    mask = mouth_mask(guidance).float()
    head = vae_weight(guidance, 3.0, 1.0)
    both = vae_weight(guidance, 3.0, 1.0, mouth_extra=10.0)
    assert torch.equal(both, head + 10.0 * mask)
    assert torch.equal(vae_weight(guidance, 0.0, 1.0, mouth_extra=2.0), 1.0 + 2.0 * mask)


@pytest.mark.parametrize("bad", [-1.0, float("inf")])
def test_mouth_weight_must_be_a_number_at_least_zero(tiny_config, bad):
    with pytest.raises(ValueError, match="vae_mouth_weight"):
        tiny_config(vae_mouth_weight=bad)


def test_latent_weight_marks_the_cells_that_hold_head_and_mouth_pixels():
    from dreamactor_core.train.stages import head_weight, latent_weight, mouth_mask

    guidance = _sphere_guidance(0.0).repeat(1, 1, 9, 1, 1)  # [1, 6, 9, 32, 32]
    guidance[:, :, 5:] = 0  # the head leaves after pixel frame 4
    assert latent_weight(guidance, (4, 3, 8, 8), 0.0, 0.0) is None
    weight = latent_weight(guidance, (4, 3, 8, 8), 2.0, 10.0)  # [1, 1, 3, 8, 8]
    assert weight.shape == (1, 1, 3, 8, 8)
    head = (head_weight(guidance[:, :, :1], 1.0) > 1)[0, 0, 0]  # [32, 32]
    mouth = mouth_mask(guidance[:, :, :1])[0, 0, 0]
    for cell_y in range(8):
        for cell_x in range(8):
            block = (slice(4 * cell_y, 4 * cell_y + 4), slice(4 * cell_x, 4 * cell_x + 4))
            expected = 1 + 2.0 * bool(head[block].any()) + 10.0 * bool(mouth[block].any())
            # latent 0 = pixel frame 0, latent 1 = frames 1..4 (all with the head)
            assert weight[0, 0, 0, cell_y, cell_x] == expected
            assert weight[0, 0, 1, cell_y, cell_x] == expected
    assert torch.equal(weight[0, 0, 2], torch.ones(8, 8))  # frames 5..8: no head
    mouth_cells, head_cells = int((weight[0, 0, 0] > 3).sum()), int((weight[0, 0, 0] > 1).sum())
    assert 1 <= mouth_cells < 0.3 * head_cells  # the mouth: a few of the face's cells
    with pytest.raises(ValueError, match="does not pack"):
        latent_weight(guidance[:, :, :8], (4, 3, 8, 8), 1.0, 0.0)


def test_dit_weights_scale_the_flow_loss_on_the_face_only(tmp_path, tiny_config, stage1_run):
    config = tiny_config(data={"kind": "synthetic", "num_clips": 2, "frames": [5, 5]},
                         p_drop_ref=0.0, p_drop_motion=0.0)
    trainer = Trainer(config, "3", tmp_path, 1, init_from=stage1_run, device="cpu")
    modules = trainer.modules.eval()
    batch = collate([trainer.dataset[0], trainer.dataset[1]])
    plain = fixed_batch_loss(modules, "3", batch, config)
    weighted = fixed_batch_loss(modules, "3", batch, tiny_config(dit_head_weight=2.0,
                                                                 dit_mouth_weight=8.0))
    # same draws, the face cells count more: a larger loss, but not by more than the largest
    # weight (11) and not as if every cell were weighted
    assert plain < weighted < 11 * plain
    batch_no_head = {**batch, "guidance": torch.zeros_like(batch["guidance"])}
    assert fixed_batch_loss(modules, "3", batch_no_head, tiny_config(dit_head_weight=2.0)) == \
        pytest.approx(fixed_batch_loss(modules, "3", batch_no_head, config), rel=1e-6)


@pytest.mark.parametrize("name", ["dit_head_weight", "dit_mouth_weight"])
def test_dit_weights_must_be_numbers_at_least_zero(tiny_config, name):
    with pytest.raises(ValueError, match=name):
        tiny_config(**{name: -0.5})


def test_temporal_weight_adds_the_error_in_frame_changes():
    from dreamactor_core.train.stages import reconstruction_loss

    video = torch.rand(2, 3, 5, 8, 8) * 2 - 1
    steady = video + 0.1  # off by the same amount in every frame: frame changes are exact
    plain, _ = reconstruction_loss(steady, video)
    weighted, metrics = reconstruction_loss(steady, video, temporal_weight=3.0)
    assert torch.allclose(weighted, plain) and float(metrics["temporal"]) < 1e-6

    jumpy = video.clone()
    jumpy[:, :, 2:] += 0.2  # one jump between frames 1 and 2: one of 4 changes is off by 0.2
    plain, _ = reconstruction_loss(jumpy, video)
    weighted, metrics = reconstruction_loss(jumpy, video, temporal_weight=3.0)
    assert float(metrics["temporal"]) == pytest.approx(0.2 / 4, rel=1e-4)
    assert float(weighted - plain) == pytest.approx(3.0 * 0.2 / 4, rel=1e-4)
    _, unweighted = reconstruction_loss(jumpy, video)
    assert "temporal" not in unweighted  # logged only when it is part of the loss


def test_temporal_weight_reaches_the_decoder_sampled_loss(tiny_config):
    from dreamactor_core.train.stages import stage_loss

    video = torch.rand(1, 3, 5, 16, 16) * 2 - 1
    batch = {"video": video, "guidance": torch.zeros(1, 6, 5, 16, 16),
             "decode_latent": torch.randn(1, 4, 2, 4, 4)}

    class Decoder(torch.nn.Module):
        def decode(self, latent, reference=None):  # the truth, jumping at the second latent frame
            out = video.clone()
            out[:, :, 1:] += 0.3
            return out

    modules = torch.nn.Module()
    modules.vae = Decoder()
    plain, _ = stage_loss(modules, batch, None, "vae_decoder_sampled", tiny_config())
    weighted, _ = stage_loss(modules, batch, None, "vae_decoder_sampled",
                             tiny_config(vae_temporal_weight=2.0))
    assert float(weighted - plain) == pytest.approx(2.0 * 0.3 / 4, rel=1e-4)


@pytest.mark.parametrize("name", ["vae_temporal_weight", "vae_ssim_weight"])
@pytest.mark.parametrize("bad", [-0.5, float("nan")])
def test_temporal_and_ssim_weights_must_be_numbers_at_least_zero(tiny_config, name, bad):
    with pytest.raises(ValueError, match=name):
        tiny_config(**{name: bad})


def test_ssim_weight_adds_one_minus_the_eval_ssim_and_reaches_the_decoder(tiny_config):
    from dreamactor_core.eval.metrics import ssim
    from dreamactor_core.train.stages import reconstruction_loss, stage_loss

    gen = torch.Generator().manual_seed(0)
    video = torch.rand(1, 3, 5, 16, 16, generator=gen) * 2 - 1  # [B, 3, T, H, W] in -1..1
    blurred = torch.nn.functional.avg_pool3d(video, (1, 3, 3), stride=1, padding=(0, 1, 1),
                                             count_include_pad=False).requires_grad_()
    plain, _ = reconstruction_loss(blurred, video)
    weighted, metrics = reconstruction_loss(blurred, video, ssim_weight=2.0)
    as_frames = lambda v: ((v.detach()[0].permute(1, 2, 3, 0) + 1) / 2).numpy()  # [T, H, W, 3]
    expected = ssim(as_frames(blurred), as_frames(video))
    assert expected < 0.5  # blur destroys the noise's structure
    assert float(metrics["ssim"]) == pytest.approx(expected, abs=1e-5)
    assert (weighted - plain).item() == pytest.approx(2.0 * (1 - expected), rel=1e-4)
    weighted.backward()
    assert blurred.grad is not None and blurred.grad.abs().sum() > 0
    _, exact = reconstruction_loss(video, video, ssim_weight=1.0)
    assert float(exact["ssim"]) == pytest.approx(1.0, abs=1e-5)

    batch = {"video": video, "guidance": torch.zeros(1, 6, 5, 16, 16),
             "decode_latent": torch.randn(1, 4, 2, 4, 4)}
    modules = torch.nn.Module()
    modules.vae = type("Decoder", (torch.nn.Module,), {"decode": lambda self, z, reference=None: blurred})()
    plain, _ = stage_loss(modules, batch, None, "vae_decoder_sampled", tiny_config())
    weighted, _ = stage_loss(modules, batch, None, "vae_decoder_sampled",
                             tiny_config(vae_ssim_weight=0.5))
    assert (weighted - plain).item() == pytest.approx(0.5 * (1 - expected), rel=1e-4)


def test_the_ssim_term_is_the_same_under_bf16_autocast():
    # smooth frames with a little noise, like decoded puppets: their local variances are tiny
    # differences of large means, which bf16 convolutions used to turn to noise (SSIM ~0)
    from dreamactor_core.train.stages import reconstruction_loss

    gen = torch.Generator().manual_seed(0)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 32), torch.linspace(0, 1, 32), indexing="ij")
    video = (0.3 + 0.2 * torch.sin(6 * xx) * torch.cos(4 * yy)).expand(1, 3, 3, 32, 32)
    recon = (video + 0.02 * torch.randn(video.shape, generator=gen)).requires_grad_()
    fp32, fp32_metrics = reconstruction_loss(recon, video, ssim_weight=1.0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        bf16, bf16_metrics = reconstruction_loss(recon, video, ssim_weight=1.0)
    assert 0.3 < float(fp32_metrics["ssim"]) < 0.95
    assert float(bf16_metrics["ssim"]) == pytest.approx(float(fp32_metrics["ssim"]), abs=1e-5)
    assert bf16.dtype == torch.float32 and bf16.item() == pytest.approx(fp32.item(), abs=1e-5)


def test_ssim_weight_on_frames_smaller_than_its_window_names_the_setting():
    from dreamactor_core.train.stages import reconstruction_loss

    video = torch.zeros(1, 3, 1, 8, 8)
    with pytest.raises(ValueError, match="vae_ssim_weight.*11x11.*8x8"):
        reconstruction_loss(video, video, ssim_weight=1.0)
    reconstruction_loss(video, video)  # without the weight, any size


def test_the_decoder_stages_decode_with_the_clips_reference(tiny_config):
    from dreamactor_core.train.stages import stage_loss

    video = torch.rand(2, 3, 5, 16, 16) * 2 - 1
    reference = torch.rand(2, 3, 16, 16) * 2 - 1
    batch = {"video": video, "guidance": torch.zeros(2, 6, 5, 16, 16), "reference": reference,
             "decode_latent": torch.randn(2, 4, 2, 4, 4)}
    given = []

    class Decoder(torch.nn.Module):
        def decode(self, latent, reference=None):
            given.append(reference)
            return video

    modules = torch.nn.Module()
    modules.vae = Decoder()
    loss, _ = stage_loss(modules, batch, None, "vae_decoder_sampled", tiny_config())
    assert float(loss) == 0.0 and given[0] is reference
