"""Measurement-based care: rating scales, scoring and safety flags, outcome rules."""
