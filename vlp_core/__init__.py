"""VLP Lab: exact DiSa and GalLoP prompt learning for CLIP."""

__version__ = "0.1.0"
