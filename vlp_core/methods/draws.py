"""Random draws of a training step (DiSa's masks, GalLoP's prompt dropout): one generator for the
batch, or one generator per image.

Shapes: B images, one row of W values each. With one generator (or None: torch's default), the
(B, W) draw is a single call, as the official code makes it. With a sequence of B generators, row b
comes from generator b alone: an image's draws then depend neither on the other images of its batch
nor on how the batch is split over processes (the trainer's choice, `PromptMethod.drawing_per_image`).
Draws happen on the generator's device (`device` when there is none).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

Generators = torch.Generator | Sequence[torch.Generator] | None


def _per_image(generators: Generators, rows: int) -> bool:
    """Whether `generators` holds one generator per row (checked against `rows`)."""
    if generators is None or isinstance(generators, torch.Generator):
        return False
    if len(generators) != rows:
        raise ValueError(f"{len(generators)} generators for a batch of {rows} images")
    return True


def rand_rows(rows: int, width: int, generators: Generators, device: torch.device) -> Tensor:
    """Uniform values in [0, 1) -> (rows, width), on the generators' device."""
    if _per_image(generators, rows):
        return torch.stack([torch.rand(width, generator=g, device=g.device) for g in generators])
    on = generators.device if generators is not None else device
    return torch.rand(rows, width, generator=generators, device=on)


def randint_rows(high: int, rows: int, width: int, generators: Generators, device: torch.device) -> Tensor:
    """Integers uniform in [0, high) -> (rows, width) long, on the generators' device."""
    if _per_image(generators, rows):
        return torch.stack([torch.randint(0, high, (width,), generator=g, device=g.device) for g in generators])
    on = generators.device if generators is not None else device
    return torch.randint(0, high, (rows, width), generator=generators, device=on)
