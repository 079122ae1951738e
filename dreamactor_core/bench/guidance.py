"""``python -m dreamactor_core.bench guidance``: throughput of the motion-guidance stack.

On a real clip (the shipped driver clips, letterboxed to ``--size`` squared) it times, in one run:
raw MediaPipe Holistic (a bare ``holistic.process`` loop, graph construction included, as in
the tracker), then each stage of ours (tracking, smoothing, head pose, retarget, skeleton
render, sphere render, face crops) and the whole stack (``extract_driving_pose`` + both
renders). Then peak-RSS growth of tracking ``--frames`` vs ``--long-frames`` frames, each in a
fresh subprocess fed by a generator (so the frames themselves are not held), which should be
flat. Prints a table and, as the very last line, one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import pathlib
import subprocess
import sys
import time
from typing import Iterator

import cv2
import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[2]
CLIPS = (ROOT / "assets" / "driver_astronaut.mp4", ROOT / "assets" / "driver_head_turn.mp4")
GOALS = {"ratio_whole_raw": 0.85, "render_fps": 300.0}
FLAT_TOLERANCE_MB = 25.0  # allowed extra peak-RSS growth of the long run over the short one


def letterbox(frame: np.ndarray, size: int) -> np.ndarray:
    """Resizes to fit a size x size square, keeping the aspect, and pads with black."""
    h, w = frame.shape[:2]
    s = size / max(h, w)
    nh, nw = round(h * s), round(w * s)
    resized = cv2.resize(frame, (nw, nh), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_CUBIC)
    top, left = (size - nh) // 2, (size - nw) // 2
    return cv2.copyMakeBorder(resized, top, size - nh - top, left, size - nw - left, cv2.BORDER_CONSTANT, value=0)


def load_clip(paths=CLIPS) -> np.ndarray:
    """uint8 [T, H, W, 3]: the given videos decoded and concatenated (all must share one size)."""
    import av

    frames = []
    for path in paths:
        if not pathlib.Path(path).is_file():
            raise ValueError(f"benchmark clip {path} is missing: run scripts/make_assets.py and "
                             "scripts/make_head_turn.py, or pass --video")
        with av.open(str(path)) as container:
            frames += [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    return np.stack(frames)


def clip_frames(source: np.ndarray, count: int, size: int) -> Iterator[np.ndarray]:
    """``count`` letterboxed frames, playing the clip forward then backward as often as needed."""
    order = itertools.cycle(list(range(len(source))) + list(range(len(source) - 2, 0, -1)))
    for i in itertools.islice(order, count):
        yield letterbox(source[i], size)


def _timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def raw_holistic(frames: np.ndarray) -> None:
    """The baseline: MediaPipe Holistic as our tracker configures it, and nothing else."""
    import mediapipe as mp

    with mp.solutions.holistic.Holistic(static_image_mode=False, model_complexity=1, smooth_landmarks=True,
                                        refine_face_landmarks=False, min_detection_confidence=0.5,
                                        min_tracking_confidence=0.5) as holistic:
        for frame in frames:
            holistic.process(frame)


def measure_stages(frames: np.ndarray, fps: float = 25.0, repeats: int = 3) -> dict:
    """Seconds per stage on ``frames`` (uint8 [T, S, S, 3]): the best of ``repeats`` rounds, after
    an untimed warm-up so that no side pays MediaPipe's one-off model loading."""
    from dreamactor_core.guidance.reference import prepare_reference
    from skimage import data

    size = frames.shape[1:3]
    reference = prepare_reference(data.astronaut(), size)  # setup and warm-up, not timed
    raw_holistic(frames[:2])
    best: dict[str, float] = {}
    for _ in range(max(repeats, 1)):
        seconds = _one_round(frames, fps, reference)
        best = {k: min(v, best.get(k, v)) for k, v in seconds.items()}
    return best


def _one_round(frames: np.ndarray, fps: float, reference) -> dict:
    from dreamactor_core.guidance.driving import extract_driving_pose
    from dreamactor_core.guidance.face_align import face_crops
    from dreamactor_core.guidance.filtering import smooth_track
    from dreamactor_core.guidance.head_pose import estimate_head_pose
    from dreamactor_core.guidance.head_sphere import render_head_spheres
    from dreamactor_core.guidance.mediapipe_backend import MediaPipeTracker
    from dreamactor_core.guidance.retarget import retarget_track
    from dreamactor_core.guidance.skeleton_render import render_skeleton

    size = frames.shape[1:3]
    seconds = {}
    _, seconds["raw_holistic"] = _timed(lambda: raw_holistic(frames))

    def track():
        with MediaPipeTracker() as tracker:
            return tracker.track(frames, fps=fps)

    raw, seconds["tracking"] = _timed(track)
    smooth, seconds["smoothing"] = _timed(lambda: smooth_track(raw, max_gap=8))
    measured, seconds["head_pose"] = _timed(lambda: estimate_head_pose(smooth))
    pose, seconds["retarget"] = _timed(lambda: retarget_track(measured, reference.track))
    _, seconds["skeleton_render"] = _timed(lambda: render_skeleton(pose, size))
    _, seconds["sphere_render"] = _timed(lambda: render_head_spheres(pose, size, reference_radius=reference.head_radius))
    _, seconds["face_crops"] = _timed(lambda: face_crops(frames, measured))

    def whole():
        _, driven = extract_driving_pose(frames, fps, reference=reference.track)
        render_skeleton(driven, size)
        render_head_spheres(driven, size, reference_radius=reference.head_radius)

    _, seconds["whole"] = _timed(whole)
    return seconds


def rss_worker(count: int, size: int, videos=None) -> dict:
    """Peak-RSS growth (MB) of tracking ``count`` generated frames, after a one-frame warm-up."""
    from dreamactor_core.guidance.mediapipe_backend import MediaPipeTracker

    source = load_clip(videos or CLIPS)
    with MediaPipeTracker() as tracker:
        tracker.track(clip_frames(source, 1, size))  # graphs initialised, buffers allocated
        before = _rss_mb("VmRSS")
        exact = _reset_peak_rss()
        track = tracker.track(clip_frames(source, count, size))
        peak = _rss_mb("VmHWM")
    return {"frames": count, "rss_before_mb": round(before, 1), "peak_growth_mb": round(max(peak - before, 0.0), 1),
            "peak_reset": exact, "tracked_frames": track.num_frames}


def _rss_mb(field: str) -> float:
    """VmRSS (current) or VmHWM (peak) of this process from /proc/self/status, in MB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} missing from /proc/self/status (Linux only)")


def _reset_peak_rss() -> bool:
    """Resets VmHWM to the current RSS (Linux >= 4.0), so the peak is that of what follows."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:  # peak then includes the start-up, which only understates the growth
        return False


def _memory_run(count: int, size: int, videos=None) -> dict:
    cmd = [sys.executable, "-m", "dreamactor_core.bench.guidance", "--rss-worker", str(count), "--size", str(size)]
    cmd += [arg for v in videos or () for arg in ("--video", str(pathlib.Path(v).resolve()))]
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=str(ROOT), check=False)
    if out.returncode != 0:
        raise RuntimeError(f"rss worker for {count} frames failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    parser = parser or argparse.ArgumentParser(prog="python -m dreamactor_core.bench guidance",
                                               description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=60, help="frames timed per stage (default 60)")
    parser.add_argument("--long-frames", type=int, default=None,
                        help="frames of the long memory run (default 4 x --frames)")
    parser.add_argument("--size", type=int, default=512, help="square frame side in pixels (default 512)")
    parser.add_argument("--video", action="append", default=None,
                        help="clip(s) to use instead of the shipped driver clips (repeatable)")
    parser.add_argument("--repeats", type=int, default=3, help="rounds per stage, best kept (default 3)")
    parser.add_argument("--no-memory", action="store_true", help="skip the RSS subprocess runs")
    parser.add_argument("--rss-worker", type=int, default=None, help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.frames < 1 or args.size < 64:
        raise SystemExit("--frames must be >= 1 and --size >= 64")
    if args.rss_worker is not None:
        print(json.dumps(rss_worker(args.rss_worker, args.size, args.video)))
        return 0
    source = load_clip(args.video or CLIPS)
    frames = np.stack(list(clip_frames(source, args.frames, args.size)))
    seconds = measure_stages(frames, repeats=args.repeats)
    n = len(frames)
    fps = {k: n / max(v, 1e-9) for k, v in seconds.items()}
    render_fps = n / max(seconds["skeleton_render"] + seconds["sphere_render"], 1e-9)
    ratio = fps["whole"] / fps["raw_holistic"]
    result = {"benchmark": "guidance", "frames": n, "size": args.size, "repeats": args.repeats,
              "seconds": {k: round(v, 4) for k, v in seconds.items()},
              "fps": {k: round(v, 2) for k, v in fps.items()},
              "ratio_whole_raw": round(ratio, 3), "render_fps": round(render_fps, 1), "goals": GOALS,
              "meets": {"ratio_whole_raw": ratio >= GOALS["ratio_whole_raw"],
                        "render_fps": render_fps >= GOALS["render_fps"]}}
    print(f"guidance stack, {n} frames at {args.size}x{args.size}")
    print(f"{'stage':<18}{'seconds':>10}{'frames/s':>12}{'ms/frame':>11}")
    for k, v in seconds.items():
        print(f"{k:<18}{v:>10.3f}{fps[k]:>12.1f}{1000 * v / n:>11.2f}")
    print(f"whole / raw holistic: {ratio:.3f} (goal >= {GOALS['ratio_whole_raw']}); "
          f"renders: {render_fps:.0f} frames/s (goal >= {GOALS['render_fps']:.0f})")
    if not args.no_memory:
        long_frames = args.long_frames or 4 * args.frames
        short = _memory_run(args.frames, args.size, args.video)
        long_ = _memory_run(long_frames, args.size, args.video)
        extra = long_["peak_growth_mb"] - short["peak_growth_mb"]
        result["memory"] = {"short": short, "long": long_, "extra_growth_mb": round(extra, 1),
                            "flat": extra <= FLAT_TOLERANCE_MB}
        print(f"peak RSS growth while tracking: {short['peak_growth_mb']:.1f} MB for {args.frames} frames, "
              f"{long_['peak_growth_mb']:.1f} MB for {long_frames} (flat: {result['memory']['flat']})")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
