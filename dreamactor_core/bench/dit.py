"""``python -m dreamactor_core.bench dit``: our DiT beside ComfyUI's Wan DiT, in one run.

Measured (best of ``--repeats`` timed calls after one warm-up, median also in the JSON; no
autograd):

* block: one transformer block on the same tokens [B, L, D], same width, heads and MLP ratio.
  Ours = joint self-attention (3D RoPE, RMSNorm q/k) + face cross-attention + MLP; Wan
  (``comfy.ldm.wan.model.WanAttentionBlock``) = self-attention + text cross-attention + FFN,
  its text context sized like our face windows (face_window x tokens per frame), so both
  blocks do one self- and one cross-attention of the same sizes. Goal: ours / Wan <= 1.0.
* reference and face attention extras: our block without reference tokens and without face
  attention, then with the face attention, with R reference frames (L + R*h'*w' tokens), with
  both.
* forward: the whole DiT (patch embed, timestep embedding, all blocks, head) for ours (face
  tokens, no reference) and Wan (text context), at --depth.
* GFLOP/s: FLOPs of our forward with reference and face tokens, counted by
  ``torch.utils.flop_counter.FlopCounterMode`` (matmuls, convolutions, SDPA), divided by its
  time; beside a plain [L, D] x [D, 4D] matmul on the same machine and threads.
* peak memory: on CPU the peak of live tensor bytes allocated during the call, tracked by a
  TorchDispatchMode (a tracemalloc for tensors: weights and inputs excluded, kernel-internal
  scratch not seen); on CUDA ``torch.cuda.max_memory_allocated`` above the starting level.
* RSS: peak resident set size (``resource.getrusage(RUSAGE_SELF).ru_maxrss``) of a full tiny-
  model generation (random weights) with 1 and with 4 segments, each in a fresh subprocess;
  also the increment over the process's RSS just before generating (VmRSS, after imports,
  model and inputs). Goal: 4 segments / 1 segment <= 1.15x. glibc's default heap keeps the
  VAE's freed scratch buffers fragmented, so RSS creeps up with each segment although live
  tensors do not; two more runs pin ``MALLOC_MMAP_THRESHOLD_`` to show this, and the peak of
  live tensors during generation (the tracker above) is reported for 1 and 4 segments too.

ComfyUI is imported only inside this benchmark, with importlib, from ``--comfyui-path``
(default: ``<repo>/.comfyui``) when ``comfy`` is not importable already. On a machine without
CUDA it is put in CPU mode first; ``--wan-attention pytorch`` (default) makes Wan use SDPA like
our blocks, ``comfy-default`` keeps ComfyUI's own CPU choice (sub-quadratic attention).
The last printed line is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import resource
import subprocess
import sys
import time
import weakref
from pathlib import Path
from typing import Any, Callable

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from ..model.config import DiTConfig, preset
from ..model.dit import DreamActorDiT, face_windows
from .timing import time_calls

REPO_ROOT = Path(__file__).resolve().parents[2]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", default="tiny", help="DiT sizes to start from (tiny, paper)")
    parser.add_argument("--dim", type=int, help="model width (default: the preset's)")
    parser.add_argument("--heads", type=int, help="attention heads (default: the preset's)")
    parser.add_argument("--depth", type=int, help="blocks in the forward (default: preset's)")
    parser.add_argument("--tokens", type=int, default=512, help="video tokens L per sample")
    parser.add_argument("--latent-frames", type=int, default=4, help="latent frames T'")
    parser.add_argument("--refs", type=int, default=1, help="reference frames R")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=7, help="timed calls per figure")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--comfyui-path", default=os.environ.get("COMFYUI_PATH",
                                                                 str(REPO_ROOT / ".comfyui")))
    parser.add_argument("--wan-attention", choices=("pytorch", "comfy-default"),
                        default="pytorch")
    parser.add_argument("--no-rss", action="store_true", help="skip the RSS subprocesses")
    parser.add_argument("--rss-segments", type=int, default=4)
    parser.add_argument("--rss-steps", type=int, default=2)
    parser.add_argument("--rss-runs", type=int, default=3,
                        help="subprocess runs per size; the median peak is reported")
    parser.add_argument("--no-fixed-mmap", action="store_true",
                        help="skip the RSS re-runs with glibc's mmap threshold fixed")


def add_rss_worker_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--segments", type=int, required=True)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--track-tensors", action="store_true",
                        help="then generate again under PeakTensorMemory and report its peak")


# -- measuring --------------------------------------------------------------------------------
class PeakTensorMemory(TorchDispatchMode):
    """Peak bytes of tensor storages created while active and still alive (views counted once)."""

    def __init__(self):
        super().__init__()
        self.live = self.peak = 0
        self._refs: dict[int, list[int]] = {}  # storage data_ptr -> [live tensors, bytes]

    def _release(self, key: int) -> None:
        entry = self._refs[key]
        entry[0] -= 1
        if entry[0] == 0:
            self.live -= entry[1]
            del self._refs[key]

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if not isinstance(t, torch.Tensor) or t.device.type == "meta":
                continue
            storage = t.untyped_storage()
            key, size = storage.data_ptr(), storage.nbytes()
            if size == 0:
                continue
            if key not in self._refs:
                self._refs[key] = [0, size]
                self.live += size
                self.peak = max(self.peak, self.live)
            self._refs[key][0] += 1
            weakref.finalize(t, self._release, key)
        return out


def measure(fn: Callable[[], Any], repeats: int, device: torch.device) -> dict[str, float]:
    """Best (ms) and median (median_ms) wall time of fn() (timing.time_calls, after one
    warm-up call) and its peak tensor memory (MB)."""
    with torch.no_grad():
        fn()  # warm-up
        timed = time_calls(fn, repeats, device)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
            base = torch.cuda.memory_allocated(device)
            fn()
            peak = torch.cuda.max_memory_allocated(device) - base
        else:
            with PeakTensorMemory() as tracker:
                fn()
            peak = tracker.peak
    return {**timed, "peak_mb": peak / 2**20}


def _cpu_sdpa_flops(query, key, value, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query, key, value)  # shapes; FlopCounterMode passes shapes


def count_flops(fn: Callable[[], Any]) -> int:
    # torch's registry covers the CUDA attention kernels but not the CPU flash kernel
    cpu_sdpa = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
    counter = FlopCounterMode(display=False, custom_mapping={cpu_sdpa: _cpu_sdpa_flops})
    with torch.no_grad(), counter:
        fn()
    return counter.get_total_flops()


def matmul_gflops(rows: int, dim: int, repeats: int, device: torch.device) -> float:
    a = torch.randn(rows, dim, device=device)
    b = torch.randn(dim, 4 * dim, device=device)
    ms = measure(lambda: a @ b, repeats, device)["ms"]
    return 2 * rows * dim * 4 * dim / (ms * 1e-3) / 1e9


# -- models -----------------------------------------------------------------------------------
def dit_config(args) -> DiTConfig:
    base = preset(args.preset).dit
    values = {**base.__dict__}
    for name in ("dim", "heads", "depth"):
        if getattr(args, name) is not None:
            values[name] = getattr(args, name)
    return DiTConfig(**values)


def token_grid(tokens: int, frames: int, patch: tuple[int, int, int]) -> tuple[int, int, int]:
    """L video tokens over T' frames -> latent (T', h, w) with h'*w' = L / T', h' <= w'."""
    if frames < 1 or tokens % frames:
        raise ValueError(f"--tokens ({tokens}) must be a multiple of --latent-frames ({frames})")
    per_frame = tokens // frames
    hp = max(d for d in range(1, math.isqrt(per_frame) + 1) if per_frame % d == 0)
    return frames, hp * patch[1], per_frame // hp * patch[2]


def randomize_(module: torch.nn.Module, seed: int) -> None:
    """Small random values everywhere (our zero-initialised gates, Wan's torch.empty weights),
    norm weights one."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if "norm" in name and name.endswith("weight") and p.ndim == 1:
                p.fill_(1.0)
            else:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.02)


def import_wan(comfyui_path: str, attention: str):
    """(comfy.ldm.wan.model, comfy.ops, attention function name), imported on demand."""
    try:
        importlib.import_module("comfy")
    except ImportError:
        if not (Path(comfyui_path) / "comfy").is_dir():
            raise ValueError(f"ComfyUI not found at --comfyui-path {comfyui_path!r} (no comfy/ "
                             "folder there); point it at a ComfyUI checkout") from None
        sys.path.insert(0, str(Path(comfyui_path).resolve()))
    if "comfy.model_management" not in sys.modules:  # settings are read once, at import
        cli = importlib.import_module("comfy.cli_args")
        if not torch.cuda.is_available():
            cli.args.cpu = True
        if attention == "pytorch":
            cli.args.use_pytorch_cross_attention = True
    wan = importlib.import_module("comfy.ldm.wan.model")
    ops = importlib.import_module("comfy.ops")
    return wan, ops, wan.optimized_attention.__name__


def build_wan(wan, ops, cfg: DiTConfig, device: torch.device) -> torch.nn.Module:
    model = wan.WanModel(model_type="t2v", patch_size=tuple(cfg.patch_size),
                         in_dim=cfg.latent_channels + cfg.pose_latent_channels, dim=cfg.dim,
                         ffn_dim=int(cfg.dim * cfg.mlp_ratio), freq_dim=cfg.time_freq_dim,
                         text_dim=cfg.face_token_dim, out_dim=cfg.latent_channels,
                         num_heads=cfg.heads, num_layers=cfg.depth, cross_attn_norm=True,
                         device=device, dtype=torch.float32,
                         operations=ops.disable_weight_init)
    randomize_(model, seed=1)
    return model.eval()


# -- the benchmark ----------------------------------------------------------------------------
def bench_blocks(args, cfg: DiTConfig, device: torch.device, wan_parts) -> dict[str, Any]:
    b, tf = args.batch, cfg.temporal_factor
    t, h, w = token_grid(args.tokens, args.latent_frames, cfg.patch_size)
    per_frame = (h // cfg.patch_size[1]) * (w // cfg.patch_size[2])
    num_video, num_ref = t * per_frame, args.refs * per_frame
    frames = tf * (t - 1) + 1
    gen = torch.Generator().manual_seed(0)

    def randn(*shape):
        return torch.randn(*shape, generator=gen).to(device)

    ours = DreamActorDiT(cfg)
    randomize_(ours, seed=0)
    ours = ours.to(device).eval()
    block = ours.blocks[0]
    face_tokens = randn(b, frames, cfg.face_tokens_per_frame, cfg.face_token_dim)
    face = face_windows(face_tokens, None, t, tf, cfg.face_window)
    cond = randn(b, 2, cfg.dim)
    rope = ours.rope(ours._positions(t, h, w, 0, device))
    rope_ref = ours.rope(ours._positions(t, h, w, args.refs, device))
    x, x_ref = randn(b, num_video, cfg.dim), randn(b, num_video + num_ref, cfg.dim)
    variants = {
        "base": lambda: block(x, num_video, cond, rope, None, None, t),
        "face": lambda: block(x, num_video, cond, rope, None, face, t),
        "refs": lambda: block(x_ref, num_video, cond, rope_ref, None, None, t),
        "refs_face": lambda: block(x_ref, num_video, cond, rope_ref, None, face, t),
    }
    out: dict[str, Any] = {"grid": [t, h, w], "video_tokens": num_video, "ref_tokens": num_ref,
                           "face_context": cfg.face_window * cfg.face_tokens_per_frame}
    out["ours_block"] = {k: measure(fn, args.repeats, device) for k, fn in variants.items()}

    x_lat = randn(b, cfg.latent_channels, t, h, w)
    pose = randn(b, cfg.pose_latent_channels, t, h, w)
    ref_lat = randn(b, cfg.latent_channels, args.refs, h, w)
    timestep = torch.full((b,), 0.5, device=device)
    ours_fwd = lambda: ours(x_lat, timestep, pose, None, face_tokens)  # noqa: E731
    ours_full = lambda: ours(x_lat, timestep, pose, ref_lat, face_tokens)  # noqa: E731
    out["ours_forward"] = measure(ours_fwd, args.repeats, device)
    full = measure(ours_full, args.repeats, device)
    flops = count_flops(ours_full)
    out["gflops"] = {"ours_forward_refs_face": flops / (full["ms"] * 1e-3) / 1e9,
                     "ours_forward_flops": flops, "ours_forward_refs_face_ms": full["ms"],
                     "matmul": matmul_gflops(b * (num_video + num_ref), cfg.dim, args.repeats,
                                             device)}

    if wan_parts is not None:
        wan_mod, ops, attention = wan_parts
        wan = build_wan(wan_mod, ops, cfg, device)
        context_raw = randn(b, out["face_context"], cfg.face_token_dim)
        with torch.no_grad():
            context = wan.text_embedding(context_raw)  # [B, Lc, D]
        freqs = wan.rope_encode(t, h, w, device=device, dtype=torch.float32)
        e = randn(b, 6, cfg.dim)
        wblock = wan.blocks[0]
        out["wan_block"] = measure(lambda: wblock(x, e=e, freqs=freqs, context=context,
                                                  context_img_len=None), args.repeats, device)
        x_in = torch.cat([x_lat, pose], dim=1)
        out["wan_forward"] = measure(lambda: wan(x_in, timestep, context_raw), args.repeats,
                                     device)
        out["wan_attention"] = attention
    return out


def _rss_run(segments: int, steps: int, threads: int, fixed_mmap: bool = False,
             track_tensors: bool = False) -> dict[str, Any]:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads),
           "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])}
    if fixed_mmap:  # glibc: large blocks always via mmap, returned to the OS when freed
        env["MALLOC_MMAP_THRESHOLD_"] = "65536"
    cmd = [sys.executable, "-m", "dreamactor_core.bench", "rss-worker", "--segments",
           str(segments), "--steps", str(steps), "--threads", str(threads)]
    cmd += ["--track-tensors"] if track_tensors else []
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"rss-worker --segments {segments} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _median_run(runs: int, segments: int, steps: int, threads: int, fixed_mmap: bool = False,
                track_tensors: bool = False) -> dict[str, Any]:
    """The run with the median peak RSS of ``runs`` fresh subprocesses (the default heap's
    peak varies by tens of MB between identical runs); tensor peaks come from the first."""
    results = [_rss_run(segments, steps, threads, fixed_mmap, track_tensors and i == 0)
               for i in range(runs)]
    median = sorted(results, key=lambda r: r["maxrss_kb"])[(runs - 1) // 2]
    return {**median, "tensor_peak_mb": results[0].get("tensor_peak_mb"),
            "maxrss_runs_kb": [r["maxrss_kb"] for r in results]}


def bench_rss(segments: int, steps: int, threads: int, runs: int = 3,
              fixed_mmap: bool = True) -> dict[str, Any]:
    """Peak RSS of 1 vs ``segments`` segments. With fixed_mmap, also with glibc's dynamic mmap
    threshold pinned: the default heap keeps freed VAE scratch buffers fragmented, which
    inflates RSS growth with the number of segments although live tensors do not grow."""
    one = _median_run(runs, 1, steps, threads, track_tensors=True)
    many = _median_run(runs, segments, steps, threads, track_tensors=True)
    fixed = None
    if fixed_mmap:
        one_fixed = _rss_run(1, steps, threads, fixed_mmap=True)  # deterministic: one run
        many_fixed = _rss_run(segments, steps, threads, fixed_mmap=True)
        fixed = {"one_segment_kb": one_fixed["maxrss_kb"],
                 "many_segments_kb": many_fixed["maxrss_kb"],
                 "ratio": _ratio(many_fixed["maxrss_kb"], one_fixed["maxrss_kb"])}
    return {"method": f"ru_maxrss (KiB), median of {runs} fresh subprocesses per size; tensor "
                      "peak by TorchDispatchMode tracking in a second generation",
            "segments": segments, "one_segment_kb": one["maxrss_kb"],
            "many_segments_kb": many["maxrss_kb"],
            "runs_kb": {"one_segment": one["maxrss_runs_kb"],
                        "many_segments": many["maxrss_runs_kb"]},
            "ratio": _ratio(many["maxrss_kb"], one["maxrss_kb"]),
            "increment_ratio": _ratio(many["maxrss_kb"] - many["rss_before_kb"],
                                      one["maxrss_kb"] - one["rss_before_kb"]),
            "fixed_mmap_threshold": fixed,
            "tensor_peak_mb": {"one_segment": one["tensor_peak_mb"],
                               "many_segments": many["tensor_peak_mb"],
                               "ratio": _ratio(many["tensor_peak_mb"], one["tensor_peak_mb"])},
            "seconds": [one["seconds"], many["seconds"]]}


def _vm_rss_kb() -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def rss_worker(args) -> int:
    """One tiny-model generation of ``--segments`` segments; prints its peak RSS as JSON."""
    from ..model.bundle import DreamActorModel
    from ..model.pipeline import generate

    torch.set_num_threads(args.threads)
    cfg = preset("tiny")
    torch.manual_seed(0)
    model = DreamActorModel.from_config(cfg).eval()
    frames = cfg.segment_frames + (args.segments - 1) * (cfg.segment_frames - 1)
    gen = torch.Generator().manual_seed(0)
    size = (cfg.frame_height, cfg.frame_width)
    ref = torch.rand(*size, 3, generator=gen)
    maps = torch.rand(frames, *size, 6, generator=gen)
    tokens = torch.randn(frames, cfg.dit.face_tokens_per_frame, cfg.dit.face_token_dim,
                         generator=gen)
    before = _vm_rss_kb()
    start = time.perf_counter()
    result = generate(model, ref, maps, tokens, steps=args.steps, seed=0)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    report = {"segments": len(result.segments), "frames": frames, "maxrss_kb": peak,
              "rss_before_kb": before, "seconds": seconds}
    if args.track_tensors:
        del result
        with PeakTensorMemory() as tracker:
            generate(model, ref, maps, tokens, steps=args.steps, seed=0)
        report["tensor_peak_mb"] = tracker.peak / 2**20
    print(json.dumps(report))
    return 0


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else a / b


def _print_table(res: dict[str, Any], cfg: DiTConfig) -> None:
    ob = res["ours_block"]
    print(f"DiT benchmark: dim {cfg.dim}, heads {cfg.heads}, depth {cfg.depth}, "
          f"{res['video_tokens']} video tokens (grid T'xhxw {res['grid']}), "
          f"{res['ref_tokens']} reference tokens, face context {res['face_context']} tokens, "
          f"device {res['device']}, threads {res['threads']}")
    print(f"{'measure':<58}{'ours':>10}{'wan':>10}{'ratio':>8}")

    def row(name, ours, wan=None, ratio=None, unit=""):
        fmt = lambda v: "-" if v is None else f"{v:.2f}{unit}"  # noqa: E731
        print(f"{name:<58}{fmt(ours):>10}{fmt(wan):>10}"
              f"{'-' if ratio is None else f'{ratio:.2f}x':>8}")

    wb, wf = res.get("wan_block"), res.get("wan_forward")
    row("block ms (self-attn + cross/face-attn + MLP; goal <= 1.0x)", ob["face"]["ms"],
        wb and wb["ms"], res["block_ratio"])
    row("block peak tensor MB", ob["face"]["peak_mb"], wb and wb["peak_mb"],
        _ratio(ob["face"]["peak_mb"], wb and wb["peak_mb"]))
    row(f"forward ms (depth {cfg.depth}, no reference)", res["ours_forward"]["ms"],
        wf and wf["ms"], _ratio(res["ours_forward"]["ms"], wf and wf["ms"]))
    ex = res["ref_face_extra"]
    print(f"reference + face attention, our block: base {ex['base_ms']:.2f} ms, +face "
          f"{ex['face_ms']:.2f} ms, +refs {ex['refs_ms']:.2f} ms, +both {ex['both_ms']:.2f} ms "
          f"({ex['both_ratio']:.2f}x base)")
    g = res["gflops"]
    print(f"achieved GFLOP/s: our forward (refs + face) {g['ours_forward_refs_face']:.1f}, plain "
          f"matmul {g['matmul']:.1f} ({g['fraction_of_matmul']:.0%})")
    rss = res.get("rss")
    if rss:
        print(f"peak RSS, tiny model: 1 segment {rss['one_segment_kb'] / 1024:.0f} MiB, "
              f"{rss['segments']} segments {rss['many_segments_kb'] / 1024:.0f} MiB "
              f"({rss['ratio']:.3f}x, goal <= 1.15x; increment over pre-generation RSS "
              f"{rss['increment_ratio']:.2f}x)")
        fixed, tensors = rss["fixed_mmap_threshold"], rss["tensor_peak_mb"]
        if fixed:
            print(f"  with MALLOC_MMAP_THRESHOLD_=65536: {fixed['one_segment_kb'] / 1024:.0f} vs "
                  f"{fixed['many_segments_kb'] / 1024:.0f} MiB ({fixed['ratio']:.3f}x)")
        print(f"  peak live tensors: {tensors['one_segment']:.0f} vs "
              f"{tensors['many_segments']:.0f} MB ({tensors['ratio']:.3f}x)")


def _check_args(args) -> None:
    for name in ("tokens", "latent_frames", "refs", "batch", "repeats", "threads",
                 "rss_segments", "rss_steps", "rss_runs"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")


def run(args) -> int:
    _check_args(args)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    cfg = dit_config(args)
    wan_parts = import_wan(args.comfyui_path, args.wan_attention)
    res = bench_blocks(args, cfg, device, wan_parts)
    res.update(device=str(device), threads=args.threads, dim=cfg.dim, heads=cfg.heads,
               depth=cfg.depth, tokens=args.tokens)
    ob = res["ours_block"]
    res["block_ratio"] = _ratio(ob["face"]["ms"], res["wan_block"]["ms"])
    res["forward_ratio"] = _ratio(res["ours_forward"]["ms"], res["wan_forward"]["ms"])
    res["ref_face_extra"] = {"base_ms": ob["base"]["ms"], "face_ms": ob["face"]["ms"],
                             "refs_ms": ob["refs"]["ms"], "both_ms": ob["refs_face"]["ms"],
                             "both_ratio": _ratio(ob["refs_face"]["ms"], ob["base"]["ms"])}
    g = res["gflops"]
    g["fraction_of_matmul"] = _ratio(g["ours_forward_refs_face"], g["matmul"])
    if not args.no_rss:
        res["rss"] = bench_rss(args.rss_segments, args.rss_steps, args.threads,
                               args.rss_runs, fixed_mmap=not args.no_fixed_mmap)
    _print_table(res, cfg)
    print(json.dumps(res, sort_keys=True))
    return 0
