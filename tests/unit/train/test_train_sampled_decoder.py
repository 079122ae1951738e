"""The vae_decoder_sampled stage: the decoder learns to decode what the frozen model samples."""

import pytest
import torch

from dreamactor_core.model.flow import make_schedule
from dreamactor_core.model.pipeline import GUIDANCE_SCALE, SHIFT, sample_segment
from dreamactor_core.train.config import TrainConfig
from dreamactor_core.train.datasets import collate, stable_seed
from dreamactor_core.train.stages import sampled_latents, trainable_names
from dreamactor_core.train.trainer import Trainer


@pytest.fixture
def trainer(tmp_path, tiny_config, stage1_run):
    def make(**overrides):
        config = tiny_config(**{"sampled_steps": 3, "weight_decay": 0.0, **overrides})
        return Trainer(config, "vae_decoder_sampled", tmp_path / "run", 2, init_from=stage1_run,
                       device="cpu")
    return make


def batch_of(trainer, count):
    return collate([trainer.dataset[i] for i in range(count)])


def test_sampled_latents_are_what_the_pipeline_samples(trainer):
    t = trainer(sampled_true_fraction=0.0)
    batch, config, modules = batch_of(t, 2), t.config, t.modules
    out = sampled_latents(modules, batch, config, step=5, positions=[10, 11])
    with torch.no_grad():
        latent = modules.vae.encode(batch["video"])
        for i, pos in enumerate([10, 11]):
            gen = torch.Generator().manual_seed(stable_seed(config.seed, 5, pos, 13))
            torch.rand(1, generator=gen)  # the true-or-sampled draw
            noise = torch.randn(latent.shape[1:], generator=gen)[None]
            expected = sample_segment(
                modules, modules.pose_encoder(batch["guidance"][i:i + 1]),
                modules.vae.encode(batch["reference"][i:i + 1, :, None]), noise,
                make_schedule(config.sampled_steps, SHIFT), "euler", GUIDANCE_SCALE,
                GUIDANCE_SCALE, modules.face_encoder(batch["face_crops"][i:i + 1]),
                batch["face_mask"][i:i + 1])
            torch.testing.assert_close(out["decode_latent"][i:i + 1], expected,
                                       rtol=1e-4, atol=1e-4)
        assert not torch.allclose(out["decode_latent"], latent, atol=1e-2)
    again = sampled_latents(modules, batch, config, step=5, positions=[10, 11])
    assert torch.equal(again["decode_latent"], out["decode_latent"])  # a pure function of the draw
    other = sampled_latents(modules, batch, config, step=6, positions=[10, 11])
    assert not torch.equal(other["decode_latent"], out["decode_latent"])


def test_true_fraction_one_decodes_the_clips_own_latent_without_sampling(trainer, monkeypatch):
    t = trainer(sampled_true_fraction=1.0)
    batch = batch_of(t, 2)

    def no_dit(*args, **kwargs):
        raise AssertionError("the DiT ran although every sample uses its own latent")

    monkeypatch.setattr(t.modules.dit, "forward", no_dit)
    out = sampled_latents(t.modules, batch, t.config, step=0, positions=[0, 1])
    with torch.no_grad():
        assert torch.equal(out["decode_latent"], t.modules.vae.encode(batch["video"]))
    assert set(batch) < set(out)


def test_the_stage_trains_only_the_decoder_and_lowers_its_loss(trainer):
    t = trainer(sampled_true_fraction=0.0, batch_size=1, data_echo=6)
    t.steps = 6
    decoder = {n for n, _ in t.modules.named_parameters() if n.startswith("vae.decoder.")}
    assert trainable_names(t.modules, "vae_decoder_sampled") == decoder
    before = {n: p.detach().clone() for n, p in t.modules.named_parameters()}
    video = batch_of(t, 1)["video"]
    with torch.no_grad():
        latent_before = t.modules.vae.encode(video)
    rows = t.run()  # one clip, sampled once, decoded six times
    moved = {n for n, p in t.modules.named_parameters() if not torch.equal(before[n], p)}
    assert moved and moved <= decoder
    with torch.no_grad():
        assert torch.equal(t.modules.vae.encode(video), latent_before)
    losses = [float(r["loss"]) for r in rows]
    assert {r["stage"] for r in rows} == {"vae_decoder_sampled"}
    assert len(losses) == 6 and losses[-1] < losses[0]


def test_the_stage_needs_a_trained_model(tmp_path, tiny_config):
    with pytest.raises(ValueError, match="--init"):
        Trainer(tiny_config(), "vae_decoder_sampled", tmp_path, 2, device="cpu")
    vae_run = tmp_path / "vae"
    Trainer(tiny_config(), "vae", vae_run, 1, device="cpu").run()  # no DiT stage: no latent stats
    with pytest.raises(ValueError, match="no latent mean/std"):
        Trainer(tiny_config(), "vae_decoder_sampled", tmp_path / "decs", 2, init_from=vae_run,
                device="cpu")


def test_a_run_resumes_from_its_own_checkpoint(tmp_path, tiny_config, stage1_run):
    config = tiny_config(sampled_steps=2, checkpoint_every=1)
    Trainer(config, "vae_decoder_sampled", tmp_path, 1, init_from=stage1_run, device="cpu").run()
    resumed = Trainer(config, "vae_decoder_sampled", tmp_path, 2, resume=True, device="cpu")
    assert resumed.step == 1 and resumed.modules.vae.has_latent_stats
    assert [r["step"] for r in resumed.run()] == [2]


def test_the_reference_stage_trains_only_the_decoders_reference_parts(tmp_path, tiny_config):
    vae = {"architecture": "frame_stack", "latent_channels": 4, "base_channels": 8,
           "channel_mults": [1, 2], "num_res_blocks": 1, "spatial_factor": 4,
           "temporal_factor": 4, "patch_size": 2, "decoder_reference_channels": 4,
           "decoder_reference_attention": 2}
    config = tiny_config(model_overrides=dict(tiny_config().model_overrides, vae=vae),
                         weight_decay=0.0, sampled_steps=2, sampled_true_fraction=0.5,
                         batch_size=1, data_echo=6, lr=3e-3)
    Trainer(config, "1", tmp_path / "s1", 1, device="cpu").run()  # measures the latent stats
    t = Trainer(config, "vae_reference", tmp_path / "ref", 6, init_from=tmp_path / "s1",
                device="cpu")
    head = {n for n, _ in t.modules.named_parameters()
            if n.startswith(("vae.decoder.reference.", "vae.decoder.reference_attention."))}
    assert head and trainable_names(t.modules, "vae_reference") == head
    before = {n: p.detach().clone() for n, p in t.modules.named_parameters()}
    rows = t.run()  # one clip, decoded six times
    moved = {n for n, p in t.modules.named_parameters() if not torch.equal(before[n], p)}
    assert "vae.decoder.reference.conv_out.weight" in moved and moved <= head
    assert {"vae.decoder.reference_attention.attn.proj.weight",  # zero at the start
            "vae.decoder.reference_attention.attn.kv.weight"} <= moved  # reached once proj moved
    losses = [float(r["loss"]) for r in rows]
    assert {r["stage"] for r in rows} == {"vae_reference"}
    assert len(losses) == 6 and losses[-1] < losses[0]


def test_the_reference_stage_needs_a_decoder_with_the_head(tmp_path, tiny_config, stage1_run):
    with pytest.raises(ValueError, match="--init"):
        Trainer(tiny_config(), "vae_reference", tmp_path / "a", 2, device="cpu")
    with pytest.raises(ValueError, match="has none: add one with .*widen --decoder-reference"):
        Trainer(tiny_config(), "vae_reference", tmp_path / "b", 2, init_from=stage1_run,
                device="cpu")


@pytest.mark.parametrize("field, value, message", [("sampled_steps", 0, "sampled_steps"),
                                                   ("sampled_true_fraction", 1.5, "probability")])
def test_bad_sampling_settings_are_named(tiny_config, field, value, message):
    with pytest.raises(ValueError, match=message):
        tiny_config(**{field: value})
    assert isinstance(tiny_config(), TrainConfig)
