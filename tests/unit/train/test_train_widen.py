import pytest
import torch

from dreamactor_core.model.bundle import DreamActorModel
from dreamactor_core.train import export as export_cli
from dreamactor_core.train import widen as widen_cli
from dreamactor_core.train.trainer import build_modules, load_init


@pytest.fixture(scope="module")
def model_file(stage1_run, tmp_path_factory):
    return export_cli.export(stage1_run, tmp_path_factory.mktemp("w") / "m.safetensors",
                             which="model", dtype=None)


def _wide_config(tiny_config, width):
    config = tiny_config()
    vae = dict(config.model_overrides["vae"], decoder_base_channels=width)
    return tiny_config(model_overrides=dict(config.model_overrides, vae=vae))


@torch.no_grad()
def test_widened_file_decodes_the_same_and_keeps_the_rest(model_file, tmp_path, capsys):
    out = tmp_path / "wide.safetensors"
    assert widen_cli.main(["--model", str(model_file), "--out", str(out),
                           "--decoder-base-channels", "16"]) == 0
    assert "wrote" in capsys.readouterr().out
    narrow, wide = DreamActorModel.load(model_file), DreamActorModel.load(out)
    assert wide.config.vae.decoder_base_channels == 16
    z = torch.randn(1, 4, 2, 8, 8, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(wide.vae.decode(z), narrow.vae.decode(z), atol=1e-5, rtol=1e-5)
    for name in ("pose_encoder", "dit", "face_encoder", "audio_encoder"):
        for (key, a), b in zip(getattr(narrow, name).state_dict().items(),
                               getattr(wide, name).state_dict().values()):
            assert torch.equal(a, b), f"{name}.{key}"


def test_a_decoder_run_starts_from_the_widened_file(model_file, tmp_path, tiny_config):
    out = widen_cli.widen(model_file, tmp_path / "wide.safetensors", 16)
    modules = build_modules(_wide_config(tiny_config, 16))
    assert "vae" in load_init(modules, out)
    with pytest.raises(ValueError, match="vae.decoder"):  # the run config must say the width
        load_init(build_modules(tiny_config()), out)


def test_bad_width_is_a_clear_error(model_file, tmp_path, capsys):
    assert widen_cli.main(["--model", str(model_file), "--out", str(tmp_path / "x.safetensors"),
                           "--decoder-base-channels", "12"]) == 2
    assert "multiple of the current decoder width 8" in capsys.readouterr().err
    assert not (tmp_path / "x.safetensors").exists()
    assert widen_cli.main(["--model", str(tmp_path / "none.safetensors"), "--out",
                           str(tmp_path / "x.safetensors"), "--decoder-base-channels", "16"]) == 2
    assert "does not exist" in capsys.readouterr().err


def _refused(capsys, tmp_path, args, message):
    """widen with ``args`` exits 2 with ``message`` on stderr and writes nothing."""
    capsys.readouterr()
    assert widen_cli.main([*args, "--out", str(tmp_path / "x.safetensors")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "x.safetensors").exists()


def _frame_stack_config(tiny_config, mix=0, refine=0):
    config = tiny_config()
    vae = {"architecture": "frame_stack", "latent_channels": 4, "base_channels": 8,
           "channel_mults": [1, 2], "num_res_blocks": 1, "spatial_factor": 4,
           "temporal_factor": 4, "patch_size": 2, "decoder_temporal_mix": mix,
           "decoder_refine_channels": refine}
    return tiny_config(model_overrides=dict(config.model_overrides, vae=vae))


@torch.no_grad()
def test_a_frame_stack_decoder_gets_a_temporal_mix(model_file, tmp_path, tiny_config, capsys):
    config = _frame_stack_config(tiny_config)
    plain = DreamActorModel.from_config(config.model_config(), config.face_motion_config(),
                                        config.audio_motion_config())
    source, out = plain.save(tmp_path / "fs.safetensors"), tmp_path / "mix.safetensors"
    assert widen_cli.main(["--model", str(source), "--out", str(out),
                           "--decoder-temporal-mix", "2"]) == 0
    mixed = DreamActorModel.load(out)
    assert mixed.config.vae.decoder_temporal_mix == 2
    z = torch.randn(1, 4, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(mixed.vae.decode(z), plain.vae.decode(z), atol=1e-6, rtol=0)
    assert "vae" in load_init(build_modules(_frame_stack_config(tiny_config, 2)), out)
    with pytest.raises(ValueError, match="temporal_mix"):  # the run config must say the reach
        load_init(build_modules(config), out)
    _refused(capsys, tmp_path, ["--model", str(model_file), "--decoder-temporal-mix", "2"],
             "needs a frame_stack VAE")
    _refused(capsys, tmp_path, ["--model", str(source)], "nothing to widen")


@torch.no_grad()
def test_a_frame_stack_decoder_gets_a_refiner_and_a_mix_in_one_call(tmp_path, tiny_config, capsys):
    config = _frame_stack_config(tiny_config)
    plain = DreamActorModel.from_config(config.model_config(), config.face_motion_config(),
                                        config.audio_motion_config())
    source, out = plain.save(tmp_path / "fs.safetensors"), tmp_path / "refine.safetensors"
    assert widen_cli.main(["--model", str(source), "--out", str(out), "--decoder-temporal-mix", "2",
                           "--decoder-refine", "4"]) == 0
    grown = DreamActorModel.load(out)
    assert (grown.config.vae.decoder_temporal_mix, grown.config.vae.decoder_refine_channels) == (2, 4)
    z = torch.randn(1, 4, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(grown.vae.decode(z), plain.vae.decode(z), atol=1e-6, rtol=0)
    assert "vae" in load_init(build_modules(_frame_stack_config(tiny_config, 2, 4)), out)
    with pytest.raises(ValueError, match=r"add --set model_overrides\.vae\.decoder_refine_channels=4$"):
        load_init(build_modules(_frame_stack_config(tiny_config, 2)), out)  # the run must say it
    _refused(capsys, tmp_path, ["--model", str(out), "--decoder-refine", "4"],
             "decoder_refine_channels: this decoder has width 4")
    with_ref = tmp_path / "reference.safetensors"
    assert widen_cli.main(["--model", str(out), "--out", str(with_ref),
                           "--decoder-reference", "4"]) == 0
    grown = DreamActorModel.load(with_ref)
    assert grown.config.vae.decoder_reference_channels == 4 and grown.vae.uses_reference
    reference = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1
    torch.testing.assert_close(grown.vae.decode(z, reference=reference), plain.vae.decode(z),
                               atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match=r"add --set model_overrides\.vae\.decoder_reference_channels=4$"):
        load_init(build_modules(_frame_stack_config(tiny_config, 2, 4)), with_ref)
    # only the components loaded must fit: the DiT alone loads into a run without the head
    assert load_init(build_modules(_frame_stack_config(tiny_config, 2)), with_ref, ["dit"]) == ["dit"]
    with_attention = tmp_path / "attention.safetensors"
    assert widen_cli.main(["--model", str(with_ref), "--out", str(with_attention),
                           "--decoder-reference-attention", "2"]) == 0
    grown = DreamActorModel.load(with_attention)
    assert grown.config.vae.decoder_reference_attention == 2
    assert grown.config.vae.decoder_reference_channels == 4  # the head it was added beside
    torch.testing.assert_close(grown.vae.decode(z, reference=reference), plain.vae.decode(z),
                               atol=1e-6, rtol=0)
    _refused(capsys, tmp_path, ["--model", str(with_attention), "--decoder-reference-attention",
                                "3"], "decoder_reference_attention: this decoder has heads 2")


def test_the_added_parts_random_init_follows_the_seed(tmp_path, tiny_config):
    config = _frame_stack_config(tiny_config)
    plain = DreamActorModel.from_config(config.model_config(), config.face_motion_config(),
                                        config.audio_motion_config())
    source = plain.save(tmp_path / "fs.safetensors")

    def head(seed: int, name: str) -> dict[str, torch.Tensor]:
        out = tmp_path / name
        torch.rand(7)  # whatever the global generator did before must not matter
        assert widen_cli.main(["--model", str(source), "--out", str(out), "--decoder-reference", "4",
                               "--seed", str(seed)]) == 0
        return {k: v for k, v in DreamActorModel.load(out).vae.state_dict().items()
                if k.startswith("decoder.reference.")}

    first, again, other = head(0, "a.safetensors"), head(0, "b.safetensors"), head(1, "c.safetensors")
    weight = "decoder.reference.conv_in.weight"
    assert first[weight].abs().max() > 0  # a random start, not zeros
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert not torch.equal(first[weight], other[weight])


def test_added_dit_blocks_are_spread_between_the_trained_ones():
    assert widen_cli.insertion_points(6, 8) == [1, 3]
    assert widen_cli.insertion_points(6, 7) == [2]
    assert widen_cli.insertion_points(1, 3) == [0, 0]
    with pytest.raises(ValueError, match="already has 6 blocks"):
        widen_cli.insertion_points(6, 6)


@torch.no_grad()
def test_a_deepened_file_computes_the_same_and_a_stage_3_run_starts_from_it(
        model_file, tmp_path, tiny_config, capsys):
    out = tmp_path / "deep.safetensors"
    assert widen_cli.main(["--model", str(model_file), "--out", str(out), "--dit-depth", "3"]) == 0
    shallow, deep = DreamActorModel.load(model_file), DreamActorModel.load(out)
    assert (shallow.config.dit.depth, deep.config.dit.depth, len(deep.dit.blocks)) == (1, 3, 3)
    g = torch.Generator().manual_seed(0)
    x, pose = torch.randn(1, 4, 2, 8, 8, generator=g), torch.randn(1, 4, 2, 8, 8, generator=g)
    ref, face = torch.randn(1, 4, 1, 8, 8, generator=g), torch.randn(1, 5, 2, 16, generator=g)
    torch.testing.assert_close(deep.dit(x, 0.4, pose, ref, face), shallow.dit(x, 0.4, pose, ref, face),
                               atol=1e-6, rtol=0)
    for name in ("vae", "pose_encoder", "face_encoder", "audio_encoder"):
        for (key, a), b in zip(getattr(shallow, name).state_dict().items(),
                               getattr(deep, name).state_dict().values()):
            assert torch.equal(a, b), f"{name}.{key}"
    config = tiny_config()
    dit = dict(config.model_overrides["dit"], depth=3)
    assert "dit" in load_init(build_modules(tiny_config(model_overrides=dict(
        config.model_overrides, dit=dit))), out)
    with pytest.raises(ValueError, match="dit"):  # the run config must say the depth
        load_init(build_modules(config), out)
    _refused(capsys, tmp_path, ["--model", str(out), "--dit-depth", "2"], "already has 3 blocks")
