"""Wall-clock timing shared by the benchmarks: best and median of repeated calls."""

from __future__ import annotations

import statistics
import time
from typing import Any, Callable

import torch


def sync(device: torch.device) -> None:
    """Waits for queued CUDA work, so that a timer around it measures the work itself."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_calls(fn: Callable[[], Any], repeats: int, device: torch.device) -> dict[str, float]:
    """Best (``ms``) and median (``median_ms``) wall time of ``repeats`` calls of fn(), without
    a warm-up (the caller does it). Ratios use the best time: on a shared machine it is the
    least disturbed by other work."""
    sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return {"ms": 1e3 * min(times), "median_ms": 1e3 * statistics.median(times)}
