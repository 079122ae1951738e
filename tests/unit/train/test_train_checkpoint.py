"""Checkpoints: bit-identical resume, atomic writes, metrics CSV, the CLI."""

import csv
import json

import pytest
import torch
from safetensors import safe_open

from dreamactor_core.model.bundle import DreamActorModel
from dreamactor_core.model.dit import DreamActorDiT
from dreamactor_core.model.weights import load_component
from dreamactor_core.train import __main__ as cli
from dreamactor_core.train import checkpoint as ckpt
from dreamactor_core.train.trainer import Trainer


def full_state(trainer):
    opt = trainer.optimizer.state_dict()["state"]
    return ({k: v.clone() for k, v in trainer.modules.state_dict().items()},
            {k: v.clone() for k, v in trainer.ema.items()},
            {i: {k: v.clone() for k, v in s.items()} for i, s in opt.items()})


def assert_identical(a, b):
    model_a, ema_a, opt_a = a
    model_b, ema_b, opt_b = b
    assert model_a.keys() == model_b.keys()
    for k in model_a:
        assert torch.equal(model_a[k], model_b[k]), k
    for k in ema_a:
        assert torch.equal(ema_a[k], ema_b[k]), k
    assert opt_a.keys() == opt_b.keys()
    for i in opt_a:
        for k in opt_a[i]:
            assert torch.equal(opt_a[i][k], opt_b[i][k]), (i, k)


@pytest.mark.parametrize("stage", ["1", "vae"])
def test_resume_is_bit_identical(tmp_path, tiny_config, stage):
    config = tiny_config(p_drop_ref=0.5, p_drop_motion=0.5)
    straight = Trainer(config, stage, tmp_path / "a", 4, device="cpu")
    straight.run()

    first = Trainer(tiny_config(p_drop_ref=0.5, p_drop_motion=0.5, checkpoint_every=2),
                    stage, tmp_path / "b", 2, device="cpu")
    first.run()
    resumed = Trainer(config, stage, tmp_path / "b", 4, resume=True, device="cpu")
    assert resumed.start_step == 2
    resumed.run()
    assert_identical(full_state(straight), full_state(resumed))
    with open(tmp_path / "b" / "metrics.csv") as f:
        assert [int(r["step"]) for r in csv.DictReader(f)] == [1, 2, 3, 4]


class CountingDataset(torch.utils.data.Dataset):
    """The trainer's dataset, recording which clips were loaded."""

    def __init__(self, dataset):
        self.dataset, self.loaded = dataset, []

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, index):
        self.loaded.append(index)
        return self.dataset[index]


def test_data_echo_trains_several_steps_per_loaded_batch_and_resumes_mid_batch(tmp_path,
                                                                               tiny_config):
    config = tiny_config(data_echo=2, p_drop_ref=0.5)
    straight = Trainer(config, "1", tmp_path / "a", 5, device="cpu")
    straight.dataset = counted = CountingDataset(straight.dataset)
    rows = straight.run()
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5]
    # 5 steps at batch 2 load 3 batches: steps 1-2, 3-4 and 5 (its echo cut by the run's end)
    once = Trainer(tiny_config(), "1", tmp_path / "ref", 3, device="cpu")
    once.dataset = plain = CountingDataset(once.dataset)
    once.run()
    assert counted.loaded == plain.loaded and len(counted.loaded) == 6

    first = Trainer(tiny_config(data_echo=2, p_drop_ref=0.5, checkpoint_every=3), "1",
                    tmp_path / "b", 3, device="cpu")
    first.run()
    resumed = Trainer(config, "1", tmp_path / "b", 5, resume=True, device="cpu")
    resumed.dataset = again = CountingDataset(resumed.dataset)
    resumed.run()
    assert again.loaded == plain.loaded[2:]  # the batch half-used at step 3 again, then the last
    assert_identical(full_state(straight), full_state(resumed))
    with pytest.raises(ValueError, match="data_echo"):
        tiny_config(data_echo=0)


def test_checkpoint_files_and_csv(tmp_path, tiny_config):
    trainer = Trainer(tiny_config(checkpoint_every=2, keep_checkpoints=2), "3", tmp_path, 6,
                      device="cpu")
    trainer.run()
    root = tmp_path / "checkpoints"
    assert sorted(p.name for p in root.glob("step_*")) == ["step_00000004", "step_00000006"]
    assert (root / "latest").read_text() == "step_00000006"
    assert not list(root.glob(".tmp-*"))
    with safe_open(str(root / "step_00000006" / "optimizer.safetensors"), "pt") as f:
        meta = f.metadata()
        keys = list(f.keys())
    state = json.loads(meta["trainer_state"])
    assert state["step"] == 6 and state["stage"] == "3"
    assert all(k.split("/")[0].startswith(("face_encoder.", "dit.", "pose_encoder.")) for k in keys)
    assert any(k.endswith("/exp_avg_sq") for k in keys)
    # the model file is a model bundle: weights.load_component reads it
    dit = DreamActorDiT(trainer.modules.model_config.dit)
    load_component(root / "step_00000006" / "model.safetensors", "dit", dit)
    assert torch.equal(dit.final_proj.weight, trainer.modules.dit.final_proj.weight)
    load_component(root / "step_00000006" / "ema.safetensors", "dit", dit)
    assert torch.equal(dit.final_proj.weight, trainer.ema["dit.final_proj.weight"])
    assert not torch.equal(dit.final_proj.weight, trainer.modules.dit.final_proj.weight)
    # ... and it is a whole DreamActorModel file, motion encoders included
    model = DreamActorModel.load(root / "step_00000006" / "ema.safetensors")
    assert model.face_config.image_size == 32
    assert torch.equal(model.face_encoder.head[0].weight,
                       trainer.ema["face_encoder.head.0.weight"])

    with open(tmp_path / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4, 5, 6]
    assert set(rows[0]) == {"step", "stage", "loss", "lr", "grad_norm", "samples_per_s",
                            "skipped_total", "skipped", "nonfinite_steps"}
    assert all(r["stage"] == "3" and float(r["loss"]) > 0 and float(r["samples_per_s"]) > 0
               for r in rows)


def test_killed_write_keeps_the_previous_checkpoint(tmp_path, tiny_config, monkeypatch):
    trainer = Trainer(tiny_config(checkpoint_every=2), "1", tmp_path, 2, device="cpu")
    trainer.run()
    good = {k: v.clone() for k, v in trainer.modules.state_dict().items()}
    real_save = ckpt.save_file
    calls = []

    def dying_save(tensors, path, metadata=None):
        calls.append(path)
        if len(calls) == 2:  # the process "dies" half way through the second file
            with open(path, "wb") as f:
                f.write(b"\x10\x00\x00\x00\x00\x00\x00\x00{\"a\":")
            raise KeyboardInterrupt("killed")
        real_save(tensors, path, metadata=metadata)

    monkeypatch.setattr(ckpt, "save_file", dying_save)
    resumed = Trainer(tiny_config(checkpoint_every=2), "1", tmp_path, 4, resume=True, device="cpu")
    with pytest.raises(KeyboardInterrupt):
        resumed.run()
    monkeypatch.setattr(ckpt, "save_file", real_save)
    root = tmp_path / "checkpoints"
    assert ckpt.find_latest(root).name == "step_00000002"
    assert sorted(p.name for p in root.iterdir()) == ["latest", "step_00000002"]
    restored = Trainer(tiny_config(), "1", tmp_path, 2, resume=True, device="cpu")
    assert restored.start_step == 2
    for k, v in good.items():
        assert torch.equal(restored.modules.state_dict()[k], v), k


def test_damaged_latest_falls_back_to_an_older_checkpoint(tmp_path, tiny_config, stage1_run):
    Trainer(tiny_config(checkpoint_every=1, keep_checkpoints=3), "audio", tmp_path, 2,
            init_from=stage1_run, device="cpu").run()
    root = tmp_path / "checkpoints"
    (root / "step_00000002" / "model.safetensors").write_bytes(b"garbage")  # a torn disk write
    assert ckpt.find_latest(root).name == "step_00000001"
    assert Trainer(tiny_config(), "audio", tmp_path, 2, resume=True, device="cpu").start_step == 1


def test_refuses_to_overwrite_or_mix_stages(tmp_path, tiny_config):
    Trainer(tiny_config(), "1", tmp_path, 1, device="cpu").run()
    with pytest.raises(ValueError, match="--resume"):
        Trainer(tiny_config(), "1", tmp_path, 2, device="cpu")
    with pytest.raises(ValueError, match="from stage 1"):
        Trainer(tiny_config(), "2", tmp_path, 2, resume=True, device="cpu")


def test_cli_trains_a_stage_then_starts_the_next_from_it(tmp_path, tiny_config, capsys):
    config = tmp_path / "cfg.json"
    config.write_text(tiny_config().to_json())
    s1 = tmp_path / "s1"
    assert cli.main(["--config", str(config), "--stage", "1", "--steps", "2", "--out", str(s1),
                     "--device", "cpu"]) == 0
    assert "stage 1: step 2" in capsys.readouterr().out
    assert (s1 / "checkpoints" / "step_00000002" / "model.safetensors").is_file()
    assert (s1 / "metrics.csv").is_file() and (s1 / "train_config.json").is_file()
    s2 = tmp_path / "s2"
    assert cli.main(["--config", str(config), "--stage", "2", "--steps", "1", "--out", str(s2),
                     "--init", str(s1), "--device", "cpu"]) == 0
    with safe_open(str(s1 / "checkpoints" / "step_00000002" / "model.safetensors"), "pt") as f:
        s1_pose = f.get_tensor("pose_encoder.conv_in.conv.weight")
    with safe_open(str(s2 / "checkpoints" / "step_00000001" / "model.safetensors"), "pt") as f:
        assert torch.equal(f.get_tensor("pose_encoder.conv_in.conv.weight"), s1_pose)  # frozen in 2
    with safe_open(str(s2 / "checkpoints" / "step_00000001" / "model.safetensors"), "pt") as f:
        assert f.get_tensor("vae.latent_std").ne(1).any()  # stats set in stage 1, carried over
    for init in (s1 / "checkpoints", s1 / "checkpoints" / "step_00000002"):
        assert cli.main(["--config", str(config), "--stage", "2", "--steps", "1", "--out",
                         str(tmp_path / init.name), "--init", str(init), "--device", "cpu"]) == 0
    assert cli.main(["--config", str(config), "--stage", "2", "--steps", "1", "--out",
                     str(tmp_path / "s2b"), "--init", str(tmp_path), "--device", "cpu"]) == 2
    assert "no complete checkpoint" in capsys.readouterr().err
    # errors are reported in one line, not a stack trace
    assert cli.main(["--config", str(tmp_path / "missing.json"), "--stage", "1", "--steps", "1",
                     "--out", str(tmp_path / "x")]) == 2
    assert "does not exist" in capsys.readouterr().err
