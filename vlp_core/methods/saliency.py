"""Patch saliency and saliency-aware masks (DiSa), shared by training, notebooks and the app.

Shapes: B images, P patch tokens (a √P × √P grid, row-major), D joint embedding size, M masked.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from vlp_core.methods.draws import Generators, rand_rows


def patch_saliency(patch_embeddings: Tensor, text_query: Tensor, tau: float = 0.01) -> Tensor:
    """softmax over patches of cos(patch, query) / tau.

    patch_embeddings (B, P, D), text_query (B, D) -> (B, P), each row sums to 1.
    """
    cosine = F.normalize(patch_embeddings, dim=-1) @ F.normalize(text_query, dim=-1).unsqueeze(-1)
    return torch.softmax(cosine.squeeze(-1) / tau, dim=-1)


def mask_sizes(num_patches: int, ratio: float, pool: float) -> tuple[int, int]:
    """(M, K): M = round(ratio·P) patches masked, drawn from the K = round(pool·P) least salient.

    Requires 0 <= ratio <= pool <= 1.
    """
    if not 0.0 <= ratio <= 1.0 or not 0.0 <= pool <= 1.0:
        raise ValueError(f"mask ratio and pool must lie in [0, 1], got ratio={ratio}, pool={pool}")
    if pool < ratio:
        raise ValueError(f"mask pool ({pool}) must be >= mask ratio ({ratio}): the masked patches are "
                         f"drawn from the least-salient pool")
    return round(ratio * num_patches), round(pool * num_patches)


def saliency_mask(saliency: Tensor, ratio: float, pool: float, generator: Generators = None) -> Tensor:
    """Indices of the patches to mask -> (B, M) long, ascending per row.

    saliency (B, P). Per image: a uniformly random subset of M = round(ratio·P) patches among the
    K = round(pool·P) least salient (ties broken by patch index). pool == ratio gives the
    deterministic bottom-ratio set. `generator` (on any device; or one per image, see
    `vlp_core.methods.draws`) makes the draw reproducible.
    """
    batch, num_patches = saliency.shape
    masked, pooled = mask_sizes(num_patches, ratio, pool)
    least_salient = saliency.argsort(dim=-1, stable=True)[:, :pooled]
    if masked < pooled:
        scores = rand_rows(batch, pooled, generator, saliency.device).to(saliency.device)
        least_salient = least_salient.gather(1, scores.argsort(dim=-1)[:, :masked])
    return least_salient.sort(dim=-1).values


def patch_mask(indices: Tensor, num_patches: int) -> Tensor:
    """(B, M) patch indices -> (B, P) bool, True where masked."""
    mask = torch.zeros(indices.shape[0], num_patches, dtype=torch.bool, device=indices.device)
    return mask.scatter_(1, indices, True)


def blank_patches(images: Tensor, indices: Tensor, patch_size: int) -> Tensor:
    """Set the pixels of the given patches to 0 -> (B, 3, S, S) (a copy).

    images (B, 3, S, S) are normalised, so 0 is the normalisation mean colour (CLIP's mean pixel),
    the "neutral" value. indices (B, M) index the row-major (S/patch_size)² grid.
    """
    grid = images.shape[-1] // patch_size
    mask = patch_mask(indices, grid * grid).view(-1, 1, grid, grid)
    pixels = mask.repeat_interleave(patch_size, dim=2).repeat_interleave(patch_size, dim=3)
    return images.masked_fill(pixels, 0.0)
