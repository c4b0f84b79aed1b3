"""Tolerances for comparing two computations that should agree.

float64 comparisons are the exact gates (1e-10 of the values' scale). float32 round-off grows with the
magnitude of the values and the length of the computation, and its last bits differ between CPUs and
their vector units, so a float32 comparison allows `FLOAT32` of the values' scale: far below what a
wrong slice, mask or weight changes (order 1), far above round-off on any x86 CPU.
"""

import torch

FLOAT32 = 1e-4


def assert_equivalent(actual: torch.Tensor, expected: torch.Tensor, rel: float = FLOAT32, **kwargs) -> None:
    """|actual - expected| <= rel * (max|expected| + |expected|), elementwise."""
    scale = expected.detach().abs().max().item() if expected.numel() else 0.0
    torch.testing.assert_close(actual, expected, atol=rel * scale, rtol=rel, **kwargs)
