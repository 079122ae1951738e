"""Real people for tests: the NASA astronaut portrait (public domain, via scikit-image) and the
shipped driving clip made from it (assets/, see scripts/make_assets.py)."""

from __future__ import annotations

import functools
import pathlib

import av
import numpy as np
from skimage import data

ROOT = pathlib.Path(__file__).resolve().parent.parent
DRIVER = ROOT / "assets" / "driver_astronaut.mp4"
REFERENCE = ROOT / "assets" / "reference_astronaut.jpg"


@functools.lru_cache(maxsize=None)
def astronaut() -> np.ndarray:
    return data.astronaut()


@functools.lru_cache(maxsize=None)
def driver_frames() -> np.ndarray:
    with av.open(str(DRIVER)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
