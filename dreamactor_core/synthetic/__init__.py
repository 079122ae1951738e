"""Procedural puppet characters with exact ground truth: seeded identities, smooth motion,
speech-like audio driving the mouth, rendered frames and masks, and the matching PoseTrack."""

from .character import CharacterSpec, sample_character
from .clip import SyntheticClip, make_clip, render_driver, render_reference

__all__ = ["CharacterSpec", "SyntheticClip", "make_clip", "render_driver", "render_reference",
           "sample_character"]
