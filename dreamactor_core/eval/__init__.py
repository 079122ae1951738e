"""Evaluation of a trained model: self-reenactment on held-out synthetic clips
(``python -m dreamactor_core.eval``), its metrics and contact sheet."""

from .reenactment import EvalSettings, evaluate

__all__ = ["EvalSettings", "evaluate"]
