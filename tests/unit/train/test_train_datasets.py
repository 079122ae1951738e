"""Synthetic clip dataset, batch collate and TrainConfig."""

import json

import numpy as np
import pytest
import torch

from dreamactor_core.train.config import TrainConfig
from dreamactor_core.train.datasets import (SyntheticClipDataset, collate, head_box_crops,
                                            valid_lengths)


@pytest.fixture(scope="module")
def dataset():
    return SyntheticClipDataset(seed=3, num_clips=6, frames=(5, 9), size=(32, 32), crop_size=32)


def test_item_shapes_ranges_and_lengths(dataset):
    for i in range(3):
        item = dataset[i]
        t = item["video"].shape[1]
        assert t in (5, 9) and (t - 1) % 4 == 0
        assert item["video"].shape == (3, t, 32, 32)
        assert item["video"].min() >= -1 and item["video"].max() <= 1
        assert item["guidance"].shape == (6, t, 32, 32)
        assert 0 <= item["guidance"].min() and item["guidance"].max() <= 1
        assert item["guidance"][:3].sum() > 0, "the skeleton must be drawn"
        assert item["guidance"][3:].sum() > 0, "the head sphere must be drawn"
        assert item["reference"].shape == (3, 32, 32)
        assert item["face_crops"].shape == (t, 3, 32, 32)
        assert item["face_mask"].dtype == torch.bool and item["face_mask"].shape == (t,)
        assert item["face_params"].shape == (t, 3)
        assert item["audio"].ndim == 2 and item["sample_rate"] == 16000
        assert item["audio"].shape[1] == pytest.approx(t / 25.0 * 16000, abs=2)


def test_items_are_deterministic_and_distinct(dataset):
    again = SyntheticClipDataset(seed=3, num_clips=6, frames=(5, 9), size=(32, 32), crop_size=32)
    a, b = dataset[1], again[1]
    for key in ("video", "guidance", "reference", "face_crops", "audio"):
        assert torch.equal(a[key], b[key]), key
    other = SyntheticClipDataset(seed=4, num_clips=6, frames=(5, 9), size=(32, 32), crop_size=32)[1]
    assert not torch.equal(a["reference"], other["reference"])
    # the reference is the same character in another pose, not a frame of the clip
    frames = a["video"].permute(1, 0, 2, 3)
    assert all(not torch.equal(a["reference"], f) for f in frames)


def test_face_crops_follow_the_head(dataset):
    item = dataset[0]
    crops = item["face_crops"][item["face_mask"]]
    assert len(crops) > 0
    assert crops.std() > 0.02, "crops of a visible head are not blank"


def test_driver_swap_changes_only_the_face_crops(dataset):
    swapped = SyntheticClipDataset(seed=3, num_clips=6, frames=(5, 9), size=(32, 32), crop_size=32,
                                   driver_swap=1.0)
    for i in (0, 1):
        a, b = dataset[i], swapped[i]
        for key in ("video", "guidance", "reference", "face_params", "audio"):
            assert torch.equal(a[key], b[key]), key
        both = a["face_mask"] & b["face_mask"]
        assert both.any()
        # another character's head: the crops differ by far more than resampling noise
        assert (a["face_crops"][both] - b["face_crops"][both]).abs().mean() > 0.05
    assert torch.equal(swapped[2]["face_crops"], swapped[2]["face_crops"])  # deterministic
    for bad in (-0.1, 1.5, True):
        with pytest.raises(ValueError, match="driver_swap"):
            SyntheticClipDataset(num_clips=2, driver_swap=bad)


def test_head_box_crops_mask_frames_without_head():
    from dreamactor_core.synthetic import make_clip

    clip = make_clip(5, 5, (32, 32), with_audio=False)
    clip.track.head_conf[2] = 0.0
    crops, mask = head_box_crops(clip.frames, clip.track, 16)
    assert crops.shape == (5, 16, 16, 3) and mask.tolist() == [True, True, False, True, True]
    assert crops[2].max() == 0


def test_valid_lengths():
    assert valid_lengths((5, 17)) == [5, 9, 13, 17]
    assert valid_lengths((6, 9)) == [9]
    with pytest.raises(ValueError, match="4\\*k\\+1"):
        valid_lengths((6, 8))


def test_collate_cuts_to_the_shortest_clip(dataset):
    lengths = {i: dataset[i]["video"].shape[1] for i in range(6)}
    assert len(set(lengths.values())) == 2, "the fixture should hold both lengths"
    short = min(lengths, key=lengths.get)
    long = max(lengths, key=lengths.get)
    batch = collate([dataset[long], dataset[short]])
    assert batch["video"].shape == (2, 3, 5, 32, 32)
    assert batch["guidance"].shape == (2, 6, 5, 32, 32)
    assert batch["face_crops"].shape == (2, 5, 3, 32, 32)
    assert batch["audio"].shape == (2, 1, round(5 / 25 * 16000))
    assert torch.equal(batch["video"][0], dataset[long]["video"][:, :5])
    assert batch["index"].tolist() == [long, short]


def test_collate_rejects_mixed_sample_rates(dataset):
    a, b = dataset[0], dict(dataset[1])
    b["sample_rate"] = 22050
    with pytest.raises(ValueError, match="sample rates"):
        collate([a, b])


def test_train_config_json_round_trip(tmp_path, tiny_config):
    config = tiny_config()
    path = tmp_path / "c.json"
    path.write_text(config.to_json())
    again = TrainConfig.load(path)
    assert again.to_dict() == config.to_dict()
    assert again.model_config().dit.dim == 32
    assert again.face_motion_config().token_dim == 16  # follows the DiT
    assert again.face_crop_size == 32


def test_train_config_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown key"):
        TrainConfig.from_dict({"learning_rate": 1})
    with pytest.raises(ValueError, match="p_drop_ref"):
        TrainConfig(p_drop_ref=1.5)
    with pytest.raises(ValueError, match="data.kind"):
        TrainConfig(data={"kind": "webdataset"})
    with pytest.raises(ValueError, match="driver_swap"):
        TrainConfig(data={"kind": "synthetic", "driver_swap": 2})
    with pytest.raises(ValueError, match="driver_swap needs synthetic"):
        TrainConfig(data={"kind": "video_folder", "folder": "x", "driver_swap": 0.5})
    assert TrainConfig(data={"kind": "synthetic", "driver_swap": 0.5}).data["driver_swap"] == 0.5
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ValueError, match="not valid JSON"):
        TrainConfig.load(tmp_path / "bad.json")
    with pytest.raises(ValueError, match="unknown key"):
        TrainConfig(face_motion={"size": 3}).face_motion_config()
    assert json.loads(TrainConfig().to_json())["model"] == "tiny"
    assert np.isfinite(TrainConfig().lr)
