"""VideoFolderDataset on real footage: a photograph (skimage's astronaut) panned over a few
frames, a corrupt file, a blank video and an 8x8 one; guidance through the real MediaPipe stack."""

import av
import numpy as np
import pytest
import torch
from skimage.data import astronaut

from dreamactor_core.train.datasets import collate
from dreamactor_core.train.video_dataset import VideoFolderDataset, fit_frames, fit_transform


def write_video(path, frames, fps=10, with_audio=False):
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        audio = None
        if with_audio:
            audio = container.add_stream("aac", rate=22050)
            audio.layout = "mono"
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
        if audio is not None:
            t = np.arange(int(22050 * len(frames) / fps)) / 22050
            tone = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)[None]
            for start in range(0, tone.shape[1], 1024):
                samples = np.ascontiguousarray(tone[:, start:start + 1024])
                chunk = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
                chunk.sample_rate = 22050
                for packet in audio.encode(chunk):
                    container.mux(packet)
            for packet in audio.encode():
                container.mux(packet)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("videos")
    photo = astronaut()[::2, ::2]  # 256x256, a real photograph of a person
    panned = [np.ascontiguousarray(np.roll(photo, 4 * i, axis=1)[:, 16:240]) for i in range(7)]
    write_video(root / "astronaut.mp4", panned, with_audio=True)
    write_video(root / "blank.mp4", [np.full((128, 128, 3), 90, np.uint8)] * 5)
    write_video(root / "tiny.mp4", [np.full((8, 8, 3), 200, np.uint8)] * 5)  # below 16 px
    (root / "corrupt.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    (root / "notes.txt").write_text("not a video, ignored")
    return root


@pytest.fixture(scope="module")
def dataset(folder, tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    return VideoFolderDataset(folder, cache, size=(32, 48), crop_size=32, max_frames=5), cache


def test_bad_videos_are_skipped_and_counted(dataset):
    ds, _ = dataset
    assert len(ds) == 1
    assert ds.skipped == {"unreadable": 1, "no_person": 1, "wrong_size": 1}


def test_item_of_a_real_video(dataset):
    ds, _ = dataset
    item = ds[0]
    assert item["video"].shape == (3, 5, 32, 48)
    assert item["video"].min() >= -1 and item["video"].max() <= 1
    # pad mode: the 256x224 frames fit the 32-pixel height, black bars left and right
    assert torch.all(item["video"][:, :, :, 0] == -1) and item["video"][:, :, :, 24].std() > 0
    assert item["guidance"].shape == (6, 5, 32, 48)
    assert item["guidance"][:3].sum() > 0 and item["guidance"][3:].sum() > 0
    assert item["face_crops"].shape == (5, 3, 32, 32) and item["face_mask"].all()
    assert item["reference"].shape == (3, 32, 48)
    # 7 frames decoded, the clip uses 5: the reference is a later frame, not a clip frame
    assert not any(torch.equal(item["reference"], item["video"][:, i]) for i in range(5))
    assert item["sample_rate"] == 16000 and item["audio"].abs().max() > 0.1
    batch = collate([item, item])
    assert batch["video"].shape == (2, 3, 5, 32, 48)


def test_cache_is_reused_and_pickle_free(dataset, folder):
    ds, cache = dataset
    files = sorted(cache.glob("*.npz"))
    assert len(files) == 4  # one item, three cached skips
    for f in files:
        with np.load(f, allow_pickle=False) as data:  # would raise on object arrays
            assert all(data[k].dtype != object for k in data.files)
    again = VideoFolderDataset(folder, cache, size=(32, 48), crop_size=32, max_frames=5)
    assert again.skipped == ds.skipped
    assert torch.equal(again[0]["guidance"], ds[0]["guidance"])


def test_fit_keeps_aspect_ratio():
    frames = np.zeros((1, 20, 40, 3), np.uint8)
    frames[:, :, :20] = 255
    padded = fit_frames(frames, (40, 40), "pad")
    assert padded.shape == (1, 40, 40, 3)
    assert padded[0, 0].max() == 0 and padded[0, 20, 5].min() == 255  # bars above and below
    scale, ox, oy = fit_transform((20, 40), (40, 40), "crop")
    assert scale == 2 and ox == -20 and oy == 0
    with pytest.raises(ValueError, match="resize_mode"):
        VideoFolderDataset(".", ".", resize_mode="stretch")


def test_trainer_on_a_video_folder_logs_the_skips(folder, tmp_path, tiny_config):
    from dreamactor_core.train.trainer import Trainer

    config = tiny_config(batch_size=1, data={"kind": "video_folder", "folder": str(folder),
                                             "cache_dir": str(tmp_path / "cache"), "max_frames": 5})
    rows = Trainer(config, "1", tmp_path / "run", 2, device="cpu").run()
    assert [r["step"] for r in rows] == [1, 2]
    assert rows[-1]["skipped_total"] == 3
    assert rows[-1]["skipped"] == "no_person=1;unreadable=1;wrong_size=1"
    with open(tmp_path / "run" / "metrics.csv") as f:
        assert "no_person=1;unreadable=1;wrong_size=1" in f.read()
