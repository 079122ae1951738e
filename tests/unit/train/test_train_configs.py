"""The training configs shipped in dreamactor_core/train/configs (the model card's recipes)."""

from pathlib import Path

import pytest

from dreamactor_core.train.config import TrainConfig

CONFIGS = sorted((Path(__file__).resolve().parents[3] / "dreamactor_core" / "train" / "configs")
                 .glob("*.json"))


def test_the_card_recipes_are_all_there():
    names = {p.stem for p in CONFIGS}
    assert {"demo_64", "demo_64_vae", "demo_64_anneal", "demo_64_vae_decoder",
            "demo_64_vae_decoder_first_frame", "demo_64_continue", "demo_64_vae_continue",
            "demo_64_continuation"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_shipped_training_config_loads(path):
    config = TrainConfig.load(path)  # unknown keys and bad values raise
    model = config.model_config()
    assert (model.frame_height, model.frame_width) == (64, 64)
    assert config.data["kind"] == "synthetic"
