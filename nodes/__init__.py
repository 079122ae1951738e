"""Thin ComfyUI adapters over dreamactor_core: parse inputs, call the core, format outputs."""
