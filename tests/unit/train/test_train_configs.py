"""The training configs shipped in dreamactor_core/train/configs (the model card's recipes)."""

from dataclasses import replace
from pathlib import Path

import pytest

from dreamactor_core.train.config import TrainConfig, growth_overrides

CONFIGS = sorted((Path(__file__).resolve().parents[3] / "dreamactor_core" / "train" / "configs")
                 .glob("*.json"))


def shipped_recipe(name: str) -> TrainConfig:
    return TrainConfig.load(next(p for p in CONFIGS if p.stem == name))


def test_the_card_recipes_are_all_there():
    names = {p.stem for p in CONFIGS}
    assert {"demo_64", "demo_64_vae", "demo_64_anneal", "demo_64_vae_decoder",
            "demo_64_vae_decoder_first_frame", "demo_64_continue", "demo_64_vae_continue",
            "demo_64_continuation", "demo_64_gpu_vae", "demo_64_gpu_stage3",
            "demo_64_gpu_stage3_anneal", "demo_64_continuation_anneal",
            "demo_64_vae_decoder_wide", "demo_64_vae_decoder_sampled", "demo_64_fs_vae",
            "demo_64_fs_stage3", "demo_64_fs_vae_decoder_sampled", "demo_64_fs_gpu_vae",
            "demo_64_fs_gpu_stage3", "demo_64_fs_vae_decoder_mix"} <= names


def test_the_gpu_recipes_differ_from_their_cpu_bases_only_in_scale_and_seed():
    # scripts/train_demo_gpu.sh relies on these being the CPU recipes at a larger batch
    scale_keys = {"seed", "batch_size", "lr", "warmup_steps", "checkpoint_every", "num_workers"}
    for gpu, cpu in [("demo_64_gpu_vae", "demo_64_vae_continue"),
                     ("demo_64_gpu_stage3", "demo_64_continuation"),
                     ("demo_64_fs_gpu_vae", "demo_64_fs_vae"),
                     ("demo_64_fs_gpu_stage3", "demo_64_fs_stage3")]:
        a, b = shipped_recipe(gpu).to_dict(), shipped_recipe(cpu).to_dict()
        assert {k for k in a if a[k] != b[k]} <= scale_keys, gpu
        assert a["batch_size"] > b["batch_size"] and a["seed"] != b["seed"]


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_shipped_training_config_loads(path):
    config = TrainConfig.load(path)  # unknown keys and bad values raise
    model = config.model_config()
    assert (model.frame_height, model.frame_width) == (64, 64)
    assert config.data["kind"] == "synthetic"


@pytest.mark.parametrize("name", ["demo_64_vae_decoder_sampled", "demo_64_fs_vae_decoder_sampled",
                                  "demo_64_fs_vae_decoder_refine"])
def test_the_decoder_recipe_keeps_the_shipped_models_clean_context(name):
    # a run exports its own config: without this the shipped DiT, trained to continue from a
    # clean first latent, would be told it was not and sampled on the noised path instead
    assert shipped_recipe(name).model_config().dit.clean_context


def test_the_frame_stack_decoder_recipes_build_the_frame_stack_model():
    # they fine-tune the decoder of a frame_stack model: the same VAE as its stage 3 (the mix
    # recipe with the decoder's temporal mix, which a DiT stage carries along frozen)
    decoder = shipped_recipe("demo_64_fs_vae_decoder_sampled").model_config()
    stage3 = shipped_recipe("demo_64_fs_stage3").model_config()
    assert decoder.vae.architecture == "frame_stack"
    assert decoder.vae == stage3.vae and decoder.dit == stage3.dit
    mix = shipped_recipe("demo_64_fs_vae_decoder_mix").model_config()
    assert mix.vae.decoder_temporal_mix == 3 and mix.dit == stage3.dit
    assert mix.vae == replace(stage3.vae, decoder_temporal_mix=3)
    refine = shipped_recipe("demo_64_fs_vae_decoder_refine").model_config()
    assert refine.vae == replace(mix.vae, decoder_refine_channels=32) and refine.dit == stage3.dit


@pytest.mark.parametrize("name", ["demo_64_fs_stage3", "demo_64_fs_gpu_stage3", "demo_64_fs_gpu_vae",
                                  "demo_64_fs_vae_decoder_mix", "demo_64_fs_vae_decoder_refine"])
def test_the_embedded_model_matches_its_recipes(name):
    # the next run continues the embedded model with --init (on the CPU, or through
    # scripts/train_demo_gpu.sh, which sets the file's widened parts on the recipe as
    # below), so its shapes must fit these recipes tensor for tensor
    from dreamactor_core.model.bundle import DreamActorModel
    from dreamactor_core.train.modules import build_modules

    root = Path(__file__).resolve().parents[3]
    model = DreamActorModel.load(root / "dreamactor_core" / "embedded" / "dreamactor_demo.safetensors")
    config = shipped_recipe(name).with_overrides(growth_overrides(model.config))
    recipe = config.model_config()
    assert model.config.vae.architecture == "frame_stack" == recipe.vae.architecture
    assert model.config.vae == recipe.vae
    assert model.config.dit.clean_context and recipe.dit.clean_context
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    fresh = {k: tuple(v.shape) for k, v in build_modules(config).state_dict().items()}
    assert shapes == fresh and len(shapes) > 100


def test_growth_overrides_carry_every_widened_part_onto_a_recipe():
    grown = shipped_recipe("demo_64_fs_stage3").with_overrides(
        ["model_overrides.vae.decoder_temporal_mix=3", "model_overrides.vae.decoder_refine_channels=32",
         "model_overrides.dit.depth=8"]).model_config()
    assert growth_overrides(grown) == ["model_overrides.vae.decoder_temporal_mix=3",
                                       "model_overrides.vae.decoder_refine_channels=32",
                                       "model_overrides.vae.decoder_reference_channels=0",
                                       "model_overrides.vae.decoder_reference_attention=0",
                                       "model_overrides.dit.depth=8"]
    recipe = shipped_recipe("demo_64_fs_vae_decoder_sampled").with_overrides(growth_overrides(grown))
    assert recipe.model_config().vae == grown.vae and recipe.model_config().dit.depth == 8
