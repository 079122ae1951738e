"""VideoFolderDataset: real videos -> training items (the item format of datasets.py).

Each video file in ``folder`` (mp4, mov, avi, mkv, webm) becomes one clip: its first
``max_frames`` frames (every ``frame_stride``-th), cut to tf*k + 1 frames. Preparation runs
once per video and is cached in ``cache_dir`` as an ``.npz`` (numpy arrays only, loaded with
allow_pickle=False), keyed by the file's path, size, mtime and the preparation settings:

1. decode with PyAV (audio too, when the file has a stream, resampled to 16 kHz);
2. track the person with the guidance stack (``extract_driving_pose``: MediaPipe, gap filling,
   smoothing, head pose) on the full-resolution frames;
3. fit the frames to the training size keeping the aspect ratio (``resize_mode`` "pad": scale
   to fit and pad with black; "crop": scale to cover and centre-crop) and move the track with
   them, so skeleton and head-sphere maps are rendered at the training size exactly on the
   resized person;
4. aligned face crops (``face_align.face_crops``) from the full-resolution frames;
5. the reference image: the last decoded frame after the clip when the video is longer than
   the clip (a different moment of the same person), else the clip's last frame.

Bad data is skipped and counted in ``skipped`` (reason -> count), never fatal:
``unreadable`` (PyAV cannot open or decode it, or it has no video frames), ``wrong_size``
(frames change size mid-video, or are smaller than 16 px), ``no_person`` (nobody tracked in at
least ``min_person_fraction`` of the frames). Skips are cached too, so a bad file is probed
once.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from ..guidance.pose_track import PoseTrack
from ..model.audio_motion import SAMPLE_RATE, resample
from .datasets import guidance_maps, to_item, valid_lengths

VIDEO_EXTENSIONS = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v")
MIN_SIDE = 16
CACHE_VERSION = 1


class SkipVideo(Exception):
    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


def read_video(path: Path, max_frames: int,
               stride: int = 1) -> tuple[list[np.ndarray], float, dict]:
    """Decodes up to ``max_frames`` RGB frames (every ``stride``-th) -> (frames, fps, audio) where
    audio = {"waveform": float32 [C, S], "sample_rate": int} or {} without an audio stream."""
    import av

    frames: list[np.ndarray] = []
    audio: dict = {}
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise SkipVideo("unreadable", "no video stream")
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate
            fps = float(rate) / stride if rate else 25.0 / stride
            for i, frame in enumerate(container.decode(stream)):
                if i % stride == 0:
                    frames.append(frame.to_ndarray(format="rgb24"))
                if len(frames) >= max_frames:
                    break
        audio = _read_audio(path, len(frames) / fps if fps > 0 else 0.0)
    except SkipVideo:
        raise
    except (av.FFmpegError, OSError, ValueError, EOFError) as exc:
        raise SkipVideo("unreadable", str(exc)) from None
    if not frames:
        raise SkipVideo("unreadable", "no decodable video frames")
    return frames, fps, audio


def _read_audio(path: Path, duration: float) -> dict:
    import av

    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                return {}
            stream = container.streams.audio[0]
            chunks, rate = [], stream.rate
            needed = int(duration * rate) + 1
            for frame in container.decode(stream):
                data = frame.to_ndarray()  # [C, S] (planar) or [1, S*C] (packed)
                if not frame.format.is_planar:
                    data = data.reshape(-1, len(frame.layout.channels)).T
                chunks.append(data.astype(np.float32))
                if sum(c.shape[1] for c in chunks) >= needed:
                    break
    except (av.FFmpegError, OSError, ValueError, EOFError):
        return {}  # a broken audio stream leaves the clip silent, the video stays usable
    if not chunks:
        return {}
    wave = np.concatenate(chunks, axis=1)[:, :needed]
    if np.issubdtype(wave.dtype, np.integer) or np.abs(wave).max() > 1.5:
        wave = wave / 32768.0
    return {"waveform": wave.astype(np.float32), "sample_rate": int(rate)}


def fit_transform(src: tuple[int, int], dst: tuple[int, int],
                  mode: str) -> tuple[float, float, float]:
    """(scale, offset_x, offset_y) mapping source pixels into a dst canvas keeping the aspect."""
    (sh, sw), (dh, dw) = src, dst
    scale = (min if mode == "pad" else max)(dh / sh, dw / sw)
    return scale, (dw - sw * scale) / 2, (dh - sh * scale) / 2


def fit_frames(frames: np.ndarray, size: tuple[int, int], mode: str) -> np.ndarray:
    """[T, h, w, 3] -> [T, H, W, 3] with fit_transform (black padding or centre crop)."""
    scale, ox, oy = fit_transform(frames.shape[1:3], size, mode)
    matrix = np.array([[scale, 0, ox], [0, scale, oy]], np.float64)
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    return np.stack([cv2.warpAffine(f, matrix, (size[1], size[0]), flags=interp,
                                    borderMode=cv2.BORDER_CONSTANT) for f in frames])


def fit_track(track: PoseTrack, size: tuple[int, int], mode: str) -> PoseTrack:
    """The same track in the fitted canvas' pixels (2-D points, head centre and radius)."""
    scale, ox, oy = fit_transform(track.image_size, size, mode)
    offset = np.array([ox, oy], np.float32)

    def move(points):
        return None if points is None else (points * scale + offset).astype(np.float32)

    radius = None if track.head_radius is None else (track.head_radius * scale).astype(np.float32)
    return replace(track, image_size=tuple(size), body_2d=move(track.body_2d),
                   hands_2d=move(track.hands_2d), face_2d=move(track.face_2d),
                   head_center=move(track.head_center), head_radius=radius)


class VideoFolderDataset(Dataset):
    def __init__(self, folder: str | Path, cache_dir: str | Path, size: tuple[int, int] = (64, 64),
                 crop_size: int = 224, max_frames: int = 49, frame_stride: int = 1,
                 resize_mode: str = "pad", temporal_factor: int = 4,
                 min_person_fraction: float = 0.5, model_complexity: int = 1):
        if resize_mode not in ("pad", "crop"):
            raise ValueError(f"resize_mode must be 'pad' or 'crop', got {resize_mode!r}")
        self.folder, self.cache_dir = Path(folder), Path(cache_dir)
        if not self.folder.is_dir():
            raise ValueError(f"video folder {self.folder} does not exist")
        self.size = (int(size[0]), int(size[1]))
        self.crop_size, self.max_frames = int(crop_size), int(max_frames)
        self.stride = int(frame_stride)
        self.resize_mode, self.tf = resize_mode, int(temporal_factor)
        self.min_person_fraction, self.model_complexity = min_person_fraction, model_complexity
        valid_lengths((1, self.max_frames), self.tf)  # raises if max_frames is too small
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        self.skipped: dict[str, int] = {}
        self.items: list[Path] = []
        videos = sorted(p for p in self.folder.iterdir() if p.suffix.lower() in VIDEO_EXTENSIONS)
        for path in videos:
            cached, reason = self._prepare(path)
            if cached is None:
                self.skipped[reason] = self.skipped.get(reason, 0) + 1
            else:
                self.items.append(cached)

    def __len__(self) -> int:
        return len(self.items)

    # -- preparation -----------------------------------------------------------------------
    def _cache_path(self, path: Path) -> Path:
        stat = path.stat()
        key = json.dumps([str(path.resolve()), stat.st_size, stat.st_mtime_ns, self.size,
                          self.crop_size, self.max_frames, self.stride, self.resize_mode, self.tf,
                          self.min_person_fraction, self.model_complexity, CACHE_VERSION])
        return self.cache_dir / f"{path.stem}-{hashlib.sha1(key.encode()).hexdigest()[:16]}.npz"

    def _prepare(self, path: Path) -> tuple[Path | None, str]:
        cache = self._cache_path(path)
        if cache.is_file():
            with np.load(cache, allow_pickle=False) as data:
                skip = str(data["skip"]) if "skip" in data else ""
            return (None, skip) if skip else (cache, "")
        try:
            arrays = self._process(path)
        except SkipVideo as exc:
            _save_npz(cache, {"skip": np.array(exc.reason)})
            return None, exc.reason
        _save_npz(cache, arrays)
        return cache, ""

    def _process(self, path: Path) -> dict[str, np.ndarray]:
        from ..guidance.driving import extract_driving_pose
        from ..guidance.mediapipe_backend import MediaPipeTracker
        from ..guidance.face_align import face_crops
        from ..guidance.mediapipe_backend import NoPersonError

        frames, fps, audio = read_video(path, self.max_frames + 1, self.stride)
        shapes = {f.shape for f in frames}
        if len(shapes) != 1 or min(frames[0].shape[:2]) < MIN_SIDE:
            raise SkipVideo("wrong_size", f"frame sizes {sorted(shapes)}")
        extra = frames[-1] if len(frames) > self.max_frames else None
        frames = frames[:self.max_frames]
        t = self.tf * ((len(frames) - 1) // self.tf) + 1
        clip = np.stack(frames[:t])  # [T, h, w, 3]
        try:
            with MediaPipeTracker(model_complexity=self.model_complexity) as tracker:
                track, _ = extract_driving_pose(list(clip), fps, tracker=tracker)
        except NoPersonError as exc:
            raise SkipVideo("no_person", str(exc)) from None
        present = (track.body_conf.max(axis=1) > 0).mean()
        if present < self.min_person_fraction:
            raise SkipVideo("no_person", f"person in {present:.0%} of the frames")
        fitted = fit_track(track, self.size, self.resize_mode)
        try:
            crops, _, _ = face_crops(clip, track, size=self.crop_size)
            face_mask = (track.face_conf > 0) if track.face_conf is not None else np.ones(t, bool)
        except ValueError:  # a person without a usable face: keep the clip, mask the face tokens
            crops = np.zeros((t, self.crop_size, self.crop_size, 3), np.uint8)
            face_mask = np.zeros(t, bool)
        reference = fit_frames((clip[-1] if extra is None else extra)[None], self.size,
                               self.resize_mode)[0]
        if audio:  # every item at 16 kHz, so clips of different files batch together
            wave = resample(torch.from_numpy(audio["waveform"]), audio["sample_rate"], SAMPLE_RATE)
            wave = wave.numpy()
        else:
            wave = np.zeros((1, round(t / fps * SAMPLE_RATE)), np.float32)
        return {"video": fit_frames(clip, self.size, self.resize_mode),
                "guidance": guidance_maps(fitted, self.size), "reference": reference,
                "face_crops": crops, "face_mask": face_mask.astype(bool),
                "audio": wave, "sample_rate": np.array(SAMPLE_RATE),
                "fps": np.array(fps, np.float64)}

    # -- items -----------------------------------------------------------------------------
    def __getitem__(self, index: int) -> dict:
        with np.load(self.items[index], allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
        t = arrays["video"].shape[0]
        return to_item(arrays["video"], arrays["guidance"], arrays["reference"],
                       arrays["face_crops"], arrays["face_mask"], np.zeros((t, 3), np.float32),
                       torch.from_numpy(arrays["audio"]), int(arrays["sample_rate"]),
                       float(arrays["fps"]), index)


def _save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """np.savez_compressed to a temporary file, then os.replace (never a half-written cache)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".npz")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez_compressed(f, **arrays)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
