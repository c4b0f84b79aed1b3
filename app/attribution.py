"""Attributions with captum for any method's class logit: integrated gradients on the input pixels,
or a token Grad-CAM on the output of the penultimate visual block.

Grad-CAM for a ViT: with A the block's output patch tokens (P, Dv) and G = d logit / d A, the
weight of channel d is the mean over patches of G[:, d] and the map is ReLU(A @ weights) over the
patches (the CLS and prompt tokens are left out).
"""

from __future__ import annotations

import time

import numpy as np
import torch
from captum.attr import IntegratedGradients, LayerActivation, LayerGradientXActivation
from torch import Tensor

from app.handlers import Session, resolve_class
from app.models import AppModels

KINDS: dict[str, str] = {"Integrated gradients": "integrated_gradients", "Grad-CAM (penultimate block)": "gradcam"}


def attribution_view(models: AppModels, session: Session, method_name: str, class_choice: str | None,
                     kind: str, steps: int = 16) -> dict:
    """The attribution map of `method_name`'s logit for one class on the session's image.

    kind: a key or value of KINDS. Returns "map" (S, S) for integrated gradients (|attribution|
    summed over colour channels) or (grid, grid) for Grad-CAM, "class_index", "kind", "delta"
    (integrated gradients' completeness error, else None), "gap" (the logit difference between the
    image and the baseline that the attributions add up to, the scale of "delta"; else None) and
    "seconds".
    """
    kind = KINDS.get(kind, kind)
    if kind not in KINDS.values():
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if method_name not in models.methods:
        raise ValueError(f"unknown method {method_name!r}; choose from {', '.join(models.methods)}")
    method = models.methods[method_name]
    class_index = resolve_class(session, class_choice, method_name)
    image = session.disa.image
    start = time.perf_counter()
    with models.lock, torch.enable_grad():
        method.set_classes(session.classes)
        if kind == "integrated_gradients":
            attribution, delta, gap = _integrated_gradients(method.logits, image, class_index, steps)
        else:
            attribution, delta, gap = _gradcam(method.logits, models, image, class_index), None, None
    return {"map": attribution, "class_index": class_index, "kind": kind, "delta": delta, "gap": gap,
            "seconds": time.perf_counter() - start}


def _integrated_gradients(forward, image: Tensor, class_index: int, steps: int) -> tuple[np.ndarray, float, float]:
    """|IG| summed over channels -> (S, S), from the all-zero (mean colour) baseline; the
    convergence delta (sum of attributions minus the logit difference); and that logit difference,
    logit(image) - logit(baseline), what the attributions should add up to."""
    baseline = torch.zeros_like(image)
    ig = IntegratedGradients(forward)
    attribution, delta = ig.attribute(image, baselines=baseline, target=class_index,
                                      n_steps=int(steps), internal_batch_size=int(steps),
                                      return_convergence_delta=True)
    with torch.no_grad():
        gap = float(forward(image)[0, class_index] - forward(baseline)[0, class_index])
    return attribution[0].abs().sum(0).detach().numpy(), float(delta.abs().max()), gap


def _gradcam(forward, models: AppModels, image: Tensor, class_index: int) -> np.ndarray:
    """Token Grad-CAM on the penultimate visual block -> (grid, grid)."""
    block = models.bundle.model.visual.transformer.resblocks[-2]
    gradients = LayerGradientXActivation(forward, block, multiply_by_inputs=False).attribute(image, target=class_index)
    activations = LayerActivation(forward, block).attribute(image)
    patches = slice(1, 1 + models.num_patches)  # tokens are [CLS, patches, prompts]
    weights = gradients[0, patches].mean(0)  # (Dv,)
    cam = torch.relu(activations[0, patches] @ weights)
    return cam.detach().view(models.grid, models.grid).numpy()
