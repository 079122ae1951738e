"""Training datasets and the batch collate.

Every item is a dict of tensors (one clip of T frames, T = tf*k + 1 for the causal VAE):

    video        float32 [3, T, H, W]   in -1..1
    guidance     float32 [6, T, H, W]   in 0..1: skeleton-map RGB (0-2) + head-sphere RGB (3-5)
    reference    float32 [3, H, W]      in -1..1
    face_crops   float32 [T, 3, S, S]   in 0..1 (S = crop_size, 224 for the paper; configurable)
    face_mask    bool    [T]            False where the frame has no usable face
    face_params  float32 [T, 3]         blink, mouth_open, mouth_width (zeros for real videos)
    audio        float32 [C, S_audio]   waveform (silence when the clip has none)
    sample_rate  int, fps float, index int

``SyntheticClipDataset`` renders procedural puppets (dreamactor_core.synthetic) with exact
ground-truth guidance; ``VideoFolderDataset`` (video_dataset.py) reads real videos.
``collate`` stacks items into a batch; clips of different lengths are cut to the shortest
(still tf*k + 1 frames), audio to the matching duration.
"""

from __future__ import annotations

import hashlib

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from ..guidance.head_sphere import render_head_spheres
from ..guidance.pose_track import PoseTrack
from ..guidance.skeleton_render import render_skeleton

HEAD_BOX_SCALE = 1.6  # half side of a synthetic face crop, in head radii (hair and chin fit)


def valid_lengths(frames: tuple[int, int], temporal_factor: int = 4) -> list[int]:
    """All clip lengths tf*k + 1 inside [min, max]."""
    lo, hi = (int(f) for f in frames)
    lengths = [n for n in range(max(lo, 1), hi + 1) if (n - 1) % temporal_factor == 0]
    if not lengths:
        raise ValueError(f"frames range {frames} holds no length {temporal_factor}*k+1 "
                         f"(e.g. 5, 9, 17); widen it")
    return lengths


def stable_seed(*parts: int) -> int:
    """A 63-bit seed from integers, identical in every process and Python version."""
    digest = hashlib.sha256(",".join(str(int(p)) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def guidance_maps(track: PoseTrack, size: tuple[int, int]) -> np.ndarray:
    """Skeleton + head-sphere maps uint8 [T, H, W, 6] for a track at ``size`` (H, W)."""
    skeleton = render_skeleton(track, size)
    if track.head_rotation is None:
        sphere = np.zeros_like(skeleton)
    else:
        sphere = render_head_spheres(track, size)
    return np.concatenate([skeleton, sphere], axis=-1)


def head_box_crops(frames: np.ndarray, track: PoseTrack, crop_size: int
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Square crops around the head (centre head_center, half side HEAD_BOX_SCALE * radius),
    uint8 [T, S, S, 3], and a mask [T] of frames with a visible head.

    Used for synthetic clips, whose tracks carry exact head boxes but no face mesh; real videos
    use guidance.face_align.face_crops (landmark alignment)."""
    t, h, w = frames.shape[:3]
    sy, sx = h / track.image_size[0], w / track.image_size[1]
    crops = np.zeros((t, crop_size, crop_size, 3), np.uint8)
    conf = track.head_conf if track.head_conf is not None else np.ones(t, np.float32)
    mask = (conf > 0) & (track.head_radius > 0)
    for i in np.flatnonzero(mask):
        cx, cy = track.head_center[i, 0] * sx, track.head_center[i, 1] * sy
        half = HEAD_BOX_SCALE * float(track.head_radius[i]) * np.sqrt(sx * sy)
        scale = crop_size / (2 * half)
        matrix = np.array([[scale, 0, crop_size / 2 - scale * cx],
                           [0, scale, crop_size / 2 - scale * cy]], np.float64)
        interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
        crops[i] = cv2.warpAffine(frames[i], matrix, (crop_size, crop_size), flags=interp,
                                  borderMode=cv2.BORDER_REPLICATE)
    return crops, mask


def to_item(frames: np.ndarray, guidance: np.ndarray, reference: np.ndarray, crops: np.ndarray,
            face_mask: np.ndarray, face_params: np.ndarray, audio: torch.Tensor,
            sample_rate: int, fps: float, index: int) -> dict:
    """uint8 numpy arrays -> the item dict of tensors described in the module docstring."""
    def tensor(a: np.ndarray, *dims: int) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a)).permute(*dims).float()

    return {
        "video": tensor(frames, 3, 0, 1, 2) / 127.5 - 1,  # [3, T, H, W]
        "guidance": tensor(guidance, 3, 0, 1, 2) / 255,  # [6, T, H, W]
        "reference": tensor(reference, 2, 0, 1) / 127.5 - 1,  # [3, H, W]
        "face_crops": tensor(crops, 0, 3, 1, 2) / 255,  # [T, 3, S, S]
        "face_mask": torch.from_numpy(np.asarray(face_mask, bool)),
        "face_params": torch.from_numpy(np.asarray(face_params, np.float32)),
        "audio": audio.float(),  # [C, S]
        "sample_rate": int(sample_rate),
        "fps": float(fps),
        "index": int(index),
    }


class SyntheticClipDataset(Dataset):
    """Procedural puppet clips, a pure function of (seed, index).

    Item ``i`` shows character ``stable_seed(seed, i)``; its length is drawn from the tf*k + 1
    values inside ``frames`` = (min, max); the reference is the same character in an
    independent pose (``render_reference``), so the model cannot learn to copy it. Face crops are
    head boxes from the exact track (see ``head_box_crops``) at ``crop_size``.

    ``driver_swap``: the probability that an item's face crops show the clip's head motion and
    expression acted by another character (``render_driver``; character
    ``stable_seed(seed, i, 2)``). Crops of the clip's own face let the face-motion tokens carry
    its skin, hair and face shape, which the DiT then learns to take from them instead of the
    reference; at inference the driver is someone else (or audio), and the head changes face.
    """

    def __init__(self, seed: int = 0, num_clips: int = 1000, frames: tuple[int, int] = (17, 17),
                 size: tuple[int, int] = (64, 64), fps: float = 25.0, crop_size: int = 224,
                 temporal_factor: int = 4, with_audio: bool = True, driver_swap: float = 0.0):
        if num_clips < 1:
            raise ValueError(f"num_clips must be >= 1, got {num_clips}")
        if isinstance(driver_swap, bool) or not 0.0 <= float(driver_swap) <= 1.0:
            raise ValueError(f"driver_swap is a probability in 0..1, got {driver_swap!r}")
        self.driver_swap = float(driver_swap)
        self.seed, self.num_clips = int(seed), int(num_clips)
        self.lengths = valid_lengths(frames, temporal_factor)
        self.size = (int(size[0]), int(size[1]))
        self.fps, self.crop_size, self.with_audio = float(fps), int(crop_size), with_audio
        self.skipped: dict[str, int] = {}  # synthetic data is never bad; kept for the trainer's CSV

    def __len__(self) -> int:
        return self.num_clips

    def __getitem__(self, index: int) -> dict:
        from ..synthetic import make_clip, render_driver, render_reference  # only needed here

        if not 0 <= index < self.num_clips:
            raise IndexError(f"index {index} out of range for {self.num_clips} clips")
        char_seed = stable_seed(self.seed, index) % (2 ** 31)
        rng = np.random.default_rng(stable_seed(self.seed, index, 1))
        num_frames = int(rng.choice(self.lengths))
        clip = make_clip(char_seed, num_frames, self.size, self.fps, with_audio=self.with_audio)
        ref = render_reference(char_seed, self.size, pose_seed=int(rng.integers(2 ** 31)))
        if rng.random() < self.driver_swap:
            driver = render_driver(char_seed, clip, stable_seed(self.seed, index, 2) % (2 ** 31))
        else:
            driver = (clip.frames, clip.track)
        crops, mask = head_box_crops(*driver, self.crop_size)
        face = np.stack([clip.face["blink"], clip.face["mouth_open"], clip.face["mouth_width"]], -1)
        if clip.audio is not None:
            audio, rate = clip.audio["waveform"][0], int(clip.audio["sample_rate"])
        else:
            rate = 16_000
            audio = torch.zeros(1, round(num_frames / self.fps * rate))
        return to_item(clip.frames, guidance_maps(clip.track, self.size), ref.frames[0], crops,
                       mask, face, audio, rate, self.fps, index)


def collate(items: list[dict]) -> dict:
    """Stacks items into a batch; every clip is cut to the shortest one's length (tf*k + 1 since
    every item is), audio to that duration at each clip's fps (zero-padded to the longest), mono;
    sample rates must match."""
    if not items:
        raise ValueError("collate: the batch is empty")
    t = min(item["video"].shape[1] for item in items)
    rates = {item["sample_rate"] for item in items}
    if len(rates) != 1:
        raise ValueError(f"collate: items have different audio sample rates {sorted(rates)}; "
                         "resample the audio when building the dataset")
    rate = rates.pop()
    lengths = [round(t / item["fps"] * rate) for item in items]
    audio = []
    for item, samples in zip(items, lengths):
        wave = item["audio"].mean(dim=0, keepdim=True)[:, :samples]  # mono [1, S]
        audio.append(torch.nn.functional.pad(wave, (0, max(lengths) - wave.shape[1])))
    return {
        "video": torch.stack([i["video"][:, :t] for i in items]),  # [B, 3, T, H, W]
        "guidance": torch.stack([i["guidance"][:, :t] for i in items]),  # [B, 6, T, H, W]
        "reference": torch.stack([i["reference"] for i in items]),  # [B, 3, H, W]
        "face_crops": torch.stack([i["face_crops"][:t] for i in items]),  # [B, T, 3, S, S]
        "face_mask": torch.stack([i["face_mask"][:t] for i in items]),  # [B, T]
        "face_params": torch.stack([i["face_params"][:t] for i in items]),  # [B, T, 3]
        "audio": torch.stack(audio),  # [B, 1, S]
        "sample_rate": rate,
        "fps": torch.tensor([i["fps"] for i in items], dtype=torch.float64),  # [B]
        "index": torch.tensor([i["index"] for i in items]),
    }
