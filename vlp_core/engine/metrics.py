"""Metrics: top-1 accuracy of any method, and whether a patch score map looks at the object (measures
against ground-truth object masks)."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader

from vlp_core.methods.base import PromptMethod


def top1(logits: Tensor, labels: Tensor) -> float:
    """Top-1 accuracy in percent of logits (N, C) against labels (N,)."""
    return 100.0 * (logits.argmax(-1) == labels).float().mean().item()


@torch.no_grad()
def predict(method: PromptMethod, loader: DataLoader) -> tuple[Tensor, Tensor]:
    """Logits (N, C) for the method's current class list and the labels (N,), on the CPU."""
    method.eval()
    logits, labels = [], []
    for images, targets in loader:
        logits.append(method.logits(images.to(method.device)).float().cpu())
        labels.append(targets)
    return torch.cat(logits), torch.cat(labels)


def patch_coverage(mask: np.ndarray, grid: int) -> Tensor:
    """Fraction of object pixels in each patch of a grid x grid ViT tiling -> (P,), row-major.

    mask: bool (H, W) with H and W divisible by `grid`.
    """
    h, w = mask.shape
    cells = mask.reshape(grid, h // grid, grid, w // grid).mean(axis=(1, 3))
    return torch.from_numpy(cells.reshape(-1).astype(np.float32))


def pointing_hits(scores: Tensor, coverage: Tensor) -> Tensor:
    """Whether the top-scoring patch of each image touches the object: (B, P), (B, P) -> (B,) bool."""
    top = scores.argmax(dim=1, keepdim=True)
    return coverage.gather(1, top).squeeze(1) > 0


def salient_iou(selected: Tensor, coverage: Tensor, threshold: float = 0.5) -> Tensor:
    """IoU between selected patches and object patches (coverage >= threshold): (B, P) x2 -> (B,)."""
    target = coverage >= threshold
    inter = (selected & target).sum(1).float()
    union = (selected | target).sum(1).clamp(min=1).float()
    return inter / union
