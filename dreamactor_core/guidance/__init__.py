"""Hybrid motion guidance: pose tracking, bone-length normalisation, skeleton maps,
head pose and head sphere, face crops, reference and pseudo-reference preparation."""
