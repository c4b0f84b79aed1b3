"""Pure tensor helpers of GalLoP's two heads: the sparse multiscale local score and prompt dropout.

Notation: B images, P patch tokens, C classes, Mg global prompts, Ml local prompts. Similarities are
raw cosines (no logit scale). Used by `vlp_core.methods.gallop`, the notebooks and the app.
"""

from __future__ import annotations

from typing import Literal, Sequence

import torch
from torch import Tensor

from vlp_core.methods.draws import Generators, rand_rows, randint_rows

DropoutSampling = Literal["with_replacement", "without_replacement"]
DROPOUT_SAMPLINGS: tuple[str, ...] = ("with_replacement", "without_replacement")


def clip_ks(ks: int | Sequence[int], num_prompts: int, num_patches: int) -> tuple[int, ...]:
    """One k per local prompt, each clipped to [1, P] -> (Ml,) ints.

    An int applies the same k to every prompt (e.g. one slider in the app); a sequence must hold
    exactly `num_prompts` values, all >= 1.
    """
    ks = (ks,) * num_prompts if isinstance(ks, int) else tuple(int(k) for k in ks)
    if len(ks) != num_prompts:
        raise ValueError(f"{len(ks)} values of k given for {num_prompts} local prompts")
    if min(ks) < 1:
        raise ValueError(f"every k must be at least 1, got {ks}")
    return tuple(min(k, num_patches) for k in ks)


def _top_values_and_indices(local: Tensor, ks: tuple[int, ...]) -> tuple[Tensor, Tensor, Tensor]:
    """The top max(ks) patches of every (image, class, prompt), best first, and ks as a tensor.

    local: (B, P, C, Ml) -> values (B, K, C, Ml), indices (B, K, C, Ml), ks (Ml,) long.
    """
    top = local.topk(max(ks), dim=1, sorted=True)
    return top.values, top.indices, torch.tensor(ks, device=local.device)


def topk_local_scores(local: Tensor, ks: int | Sequence[int]) -> Tensor:
    """Sparse multiscale local score: mean of the top-k_n patch similarities -> (B, C, Ml).

    local: L (B, P, C, Ml), L[b, p, c, n] = cosine of patch p of image b with local prompt n of
    class c. ks: k_n per local prompt (or one int for all), clipped to P. The top-k is chosen per
    (image, class, prompt). Ties change which patches are picked but not the mean.
    """
    ks = clip_ks(ks, local.shape[-1], local.shape[1])
    values, _, k = _top_values_and_indices(local, ks)
    batch, _, classes, prompts = values.shape
    last = (k - 1).view(1, 1, 1, prompts).expand(batch, 1, classes, prompts)
    return values.cumsum(1).gather(1, last).squeeze(1) / k.to(values.dtype)


def topk_patch_mask(local: Tensor, ks: int | Sequence[int]) -> Tensor:
    """Which patches the top-k of `topk_local_scores` selects -> bool (B, P, C, Ml).

    local: (B, P, C, Ml); ks as in `topk_local_scores`. Exactly min(k_n, P) patches are True per
    (image, class, prompt); among tied values the choice is `torch.topk`'s.
    """
    ks = clip_ks(ks, local.shape[-1], local.shape[1])
    _, indices, k = _top_values_and_indices(local, ks)
    rank = torch.arange(indices.shape[1], device=local.device).view(1, -1, 1, 1)
    within = (rank < k.view(1, 1, 1, -1)).expand_as(indices)
    return torch.zeros_like(local, dtype=torch.bool).scatter_(1, indices, within)


def kept_prompt_count(num_prompts: int, p: float) -> int:
    """Global prompts kept by prompt dropout: max(M - int(p * M), 1); p = 0.75, M = 4 -> 1."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"prompt dropout must be in [0, 1], got {p}")
    return max(num_prompts - int(p * num_prompts), 1)


def dropout_global(
    global_sims: Tensor,
    p: float,
    sampling: DropoutSampling = "with_replacement",
    generator: Generators = None,
) -> Tensor:
    """Prompt dropout: per image, the mean of G over `kept_prompt_count(Mg, p)` drawn prompts -> (B, C).

    global_sims: G (B, C, Mg). The same prompts are used for every class of an image.
    - "with_replacement" (the official code): indices = torch.randint(0, Mg, (B, keep),
      generator=generator), so a prompt can be drawn twice and p = 0 does not mean "all prompts".
    - "without_replacement": the first `keep` of torch.rand(B, Mg, generator=generator).argsort(1);
      when keep = Mg (p = 0) nothing is drawn and the result is exactly G.mean(-1).
    Draws happen on the generator's device (G's when none is given), then move to G's device;
    one generator per image draws row b from generator b (`vlp_core.methods.draws`).
    """
    batch, classes, num_prompts = global_sims.shape
    keep = kept_prompt_count(num_prompts, p)
    if sampling == "with_replacement":
        chosen = randint_rows(num_prompts, batch, keep, generator, global_sims.device)
    elif sampling == "without_replacement":
        if keep == num_prompts:
            return global_sims.mean(-1)
        chosen = rand_rows(batch, num_prompts, generator, global_sims.device).argsort(1)[:, :keep]
    else:
        raise ValueError(f"dropout sampling must be one of {DROPOUT_SAMPLINGS}, got {sampling!r}")
    chosen = chosen.to(global_sims.device)[:, None, :].expand(batch, classes, keep)
    return global_sims.gather(2, chosen).mean(-1)
