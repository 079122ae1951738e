"""Benchmarks, run as ``python -m dreamactor_core.bench <command>`` (see ``--help``).

``dit``: our DiT blocks beside ComfyUI's Wan DiT at matched sizes, the cost of reference and
face attention, achieved GFLOP/s, and peak RSS of long (multi-segment) generation.
"""
