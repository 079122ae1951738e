"""DreamActor-M1 as a plain PyTorch library: guidance, model, training, synthetic data.

Never imports ComfyUI; the ComfyUI nodes in ``nodes/`` are thin adapters over this package.
"""

__version__ = "0.1.0"
