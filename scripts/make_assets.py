"""Rebuilds the small real assets shipped in assets/ (run once; the results are committed).

* reference_astronaut.jpg: NASA portrait of astronaut Eileen Collins, public domain, as shipped
  by scikit-image (skimage.data.astronaut).
* speech_espeak.flac: a short English sentence spoken by the espeak-ng synthesiser (Debian's
  espeak-ng package), the audio driver of the audio workflow.
* driver_astronaut.mp4: a short driving clip made from that real photograph: the camera sways,
  zooms and rolls around the person (a rigid motion of a real photo, so every frame shows a real
  person while the head rolls by a known angle: roll_degrees(t) below).
"""

from __future__ import annotations

import pathlib
import shutil
import subprocess
import tempfile

import av
import cv2
import numpy as np
from skimage import data

ASSETS = pathlib.Path(__file__).resolve().parent.parent / "assets"
FPS = 25
FRAMES = 40
SIZE = (384, 288)  # height, width


def roll_degrees(t: np.ndarray) -> np.ndarray:
    """Image rotation of frame t (degrees, counter-clockwise): a smooth sweep -12 -> +12."""
    return -12.0 + 24.0 * (1 - np.cos(np.pi * t / (FRAMES - 1))) / 2


def driver_frames() -> np.ndarray:
    photo = data.astronaut()
    h, w = SIZE
    t = np.arange(FRAMES)
    angles = roll_degrees(t)
    frames = []
    for i, angle in zip(t, angles):
        scale = 0.95 + 0.1 * np.sin(np.pi * i / (FRAMES - 1))
        centre = (236 + 14 * np.sin(2 * np.pi * i / FRAMES), 250.0)
        m = cv2.getRotationMatrix2D(centre, float(angle), float(scale) * 0.85)
        m[:, 2] += (w / 2 - centre[0], h / 2 - centre[1])
        frames.append(cv2.warpAffine(photo, m, (w, h), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE))
    return np.stack(frames)


def write_mp4(path: pathlib.Path, frames: np.ndarray, fps: int) -> None:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "23"}
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


SPEECH = "Hello! I am a picture that can talk. Watch my mouth move while I speak."


def write_speech(path: pathlib.Path) -> None:
    if shutil.which("espeak-ng") is None:
        raise SystemExit("espeak-ng is missing: apt-get install espeak-ng")
    with tempfile.TemporaryDirectory() as tmp:
        wav = pathlib.Path(tmp) / "speech.wav"
        subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(wav), SPEECH], check=True)
        with av.open(str(wav)) as src, av.open(str(path), "w", format="flac") as dst:
            stream = dst.add_stream("flac", rate=src.streams.audio[0].rate)
            for frame in src.decode(audio=0):
                frame.pts = None
                for packet in stream.encode(frame):
                    dst.mux(packet)
            for packet in stream.encode():
                dst.mux(packet)


def main() -> None:
    ASSETS.mkdir(exist_ok=True)
    cv2.imwrite(str(ASSETS / "reference_astronaut.jpg"), data.astronaut()[:, :, ::-1],
                [cv2.IMWRITE_JPEG_QUALITY, 90])
    write_mp4(ASSETS / "driver_astronaut.mp4", driver_frames(), FPS)
    write_speech(ASSETS / "speech_espeak.flac")
    print("wrote", *sorted(p.name for p in ASSETS.iterdir()))


if __name__ == "__main__":
    main()
