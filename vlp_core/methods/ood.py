"""Out-of-distribution scores from CLIP cosines (MCM, L-MCM, GL-MCM) and the two detection metrics.

Scores are ID-ness: higher means more in-distribution (negate them for an OOD score). They take raw
cosines (no logit scale) and a temperature T, 1 by default as in GL-MCM. Notation: B images,
P patch tokens, C classes.
"""

from __future__ import annotations

from typing import Literal, Sequence

import numpy as np
import torch
from torch import Tensor

ScoreList = Tensor | np.ndarray | Sequence[float]
Fpr95Rule = Literal["threshold", "closest"]
FPR95_RULES: tuple[str, ...] = ("threshold", "closest")


def mcm(global_cos: Tensor, temperature: float = 1.0) -> Tensor:
    """Maximum concept matching: max_c softmax_c(cos / T) -> (B,).

    global_cos: (B, C) cosines of each image's global feature with each class's text feature
    (GalLoP: the mean over global prompts of G).
    """
    return (global_cos / temperature).softmax(-1).amax(-1)


def l_mcm(local_cos: Tensor, temperature: float = 1.0) -> Tensor:
    """Local MCM: max over patches p and classes c of softmax_c(cos[:, p] / T) -> (B,).

    local_cos: (B, P, C) cosines of each patch with each class (GalLoP: the mean over local
    prompts of L). Every patch counts (no top-k).
    """
    return (local_cos / temperature).softmax(-1).amax(dim=(-2, -1))


def gl_mcm(global_cos: Tensor, local_cos: Tensor, temperature: float = 1.0) -> Tensor:
    """GL-MCM = MCM + L-MCM -> (B,). global_cos (B, C), local_cos (B, P, C)."""
    return mcm(global_cos, temperature) + l_mcm(local_cos, temperature)


def _as_scores(scores: ScoreList, what: str) -> Tensor:
    """A non-empty 1-D float64 CPU tensor of scores."""
    if isinstance(scores, Tensor):
        values = scores.detach().to("cpu", torch.float64).flatten()
    else:
        values = torch.from_numpy(np.asarray(scores, dtype=np.float64)).flatten()
    if values.numel() == 0:
        raise ValueError(f"no {what} scores given")
    return values


def _roc_points(id_scores: ScoreList, ood_scores: ScoreList) -> tuple[Tensor, Tensor, Tensor, int, int]:
    """The ROC curve of "score >= t means ID", one point per distinct score t, t descending.

    -> (true positives (T,), false positives (T,), thresholds t (T,) float64, number of ID, number
    of OOD); TPR = tp / n_id, FPR = fp / n_ood. All samples tied at a threshold cross it together.
    """
    id_values, ood_values = _as_scores(id_scores, "ID"), _as_scores(ood_scores, "OOD")
    scores = torch.cat([id_values, ood_values])
    is_id = torch.cat([torch.ones_like(id_values), torch.zeros_like(ood_values)]).long()
    order = scores.argsort(descending=True, stable=True)
    scores, is_id = scores[order], is_id[order]
    group_end = torch.cat([scores[1:] != scores[:-1], torch.tensor([True])])
    true_pos = is_id.cumsum(0)[group_end]
    false_pos = (1 - is_id).cumsum(0)[group_end]
    return true_pos, false_pos, scores[group_end], len(id_values), len(ood_values)


def roc_curve(id_scores: ScoreList, ood_scores: ScoreList) -> tuple[Tensor, Tensor, Tensor]:
    """The ROC curve of "score >= t means ID" (ID positive) -> FPR (T,), TPR (T,) and the
    thresholds t (T,), float64, one point per distinct score, t descending (so FPR and TPR
    ascending). The curve starts at (0, 0) before the first point and ends at (1, 1)."""
    true_pos, false_pos, thresholds, n_id, n_ood = _roc_points(id_scores, ood_scores)
    return false_pos.double() / n_ood, true_pos.double() / n_id, thresholds


def fpr95_point(id_scores: ScoreList, ood_scores: ScoreList) -> tuple[float, float, float]:
    """(t, TPR, FPR) at the largest threshold t that keeps at least 95% of the ID samples
    (score >= t): the point whose FPR is `fpr_at_95_tpr`'s (rule "threshold")."""
    true_pos, false_pos, thresholds, n_id, n_ood = _roc_points(id_scores, ood_scores)
    first = int((true_pos * 100 >= 95 * n_id).nonzero()[0])  # exact integer test of TPR >= 0.95
    return thresholds[first].item(), true_pos[first].item() / n_id, false_pos[first].item() / n_ood


def fpr_at_95_tpr(id_scores: ScoreList, ood_scores: ScoreList, rule: Fpr95Rule = "threshold") -> float:
    """FPR at 95% TPR, ID positive, on the ROC curve of `_roc_points` (one point per distinct score).

    rule "threshold" (default): the fraction of OOD samples scoring >= t, for the largest threshold
        t that keeps at least 95% of ID samples (score >= t; `fpr95_point`).
    rule "closest" (GalLoP's and MCM's evaluation code): the FPR of the point whose TPR is closest
        to 0.95, |TPR - 0.95| minimal (the higher threshold on a tie); it may keep fewer than 95%.
    Ties: every sample equal to t counts as accepted, so OOD samples tied with the threshold are
    false positives; no interpolation between thresholds. Inputs: 1-D ID-ness scores.
    """
    if rule == "threshold":
        return fpr95_point(id_scores, ood_scores)[2]
    if rule == "closest":
        true_pos, false_pos, _, n_id, n_ood = _roc_points(id_scores, ood_scores)
        distance = (true_pos * 100 - 95 * n_id).abs()  # 100 n_id |TPR - 0.95|, exact in integers
        return false_pos[int(distance.argmin())].item() / n_ood
    raise ValueError(f"FPR95 rule must be one of {FPR95_RULES}, got {rule!r}")


def auroc(id_scores: ScoreList, ood_scores: ScoreList) -> float:
    """Area under the ROC curve, OOD positive (scored by -ID-ness), i.e. the probability that a
    random ID sample scores higher than a random OOD sample.

    Ties: an (ID, OOD) pair with equal scores counts 1/2 (trapezoids over grouped thresholds, the
    Mann-Whitney statistic). Inputs: 1-D ID-ness scores.
    """
    true_pos, false_pos, _, n_id, n_ood = _roc_points(id_scores, ood_scores)
    tpr = torch.cat([torch.zeros(1, dtype=torch.float64), true_pos.double() / n_id])
    fpr = torch.cat([torch.zeros(1, dtype=torch.float64), false_pos.double() / n_ood])
    return float(torch.trapezoid(tpr, fpr))
