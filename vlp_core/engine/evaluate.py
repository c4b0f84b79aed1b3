"""Evaluation: predictions and top-1 accuracy of any method over a loader."""

from __future__ import annotations

import torch
from torch import Tensor
from torch.utils.data import DataLoader

from vlp_core.methods.base import PromptMethod


@torch.no_grad()
def predict(method: PromptMethod, loader: DataLoader) -> tuple[Tensor, Tensor]:
    """Logits (N, C) for the method's current class list and the labels (N,), on the CPU."""
    method.eval()
    logits, labels = [], []
    for images, targets in loader:
        logits.append(method.logits(images.to(method.device)).float().cpu())
        labels.append(targets)
    return torch.cat(logits), torch.cat(labels)


def top1(logits: Tensor, labels: Tensor) -> float:
    """Top-1 accuracy in percent."""
    return 100.0 * (logits.argmax(-1) == labels).float().mean().item()


def accuracy(method: PromptMethod, loader: DataLoader) -> float:
    """Top-1 accuracy (%) of `method` on `loader`."""
    return top1(*predict(method, loader))
