"""The OOD view: GalLoP's ID-ness scores of the image, the verdict at a threshold, and how reliable
that verdict is on the suite's own ID images and the `ood` suite's images (`app.reference`).

Thresholds are in units of a score's chance level (its value for uniform class probabilities), so
one slider fits any class list; the default is FPR95's threshold, the one that keeps 95 % of the
suite's ID images.
"""

from __future__ import annotations

import math

from app.handlers import Session
from vlp_core.methods.gallop import gallop_ood_scores

OOD_SCORES: dict[str, str] = {"GL-MCM": "gl_mcm", "MCM": "mcm", "L-MCM": "l_mcm"}
THRESHOLD_RANGE = (1.0, 4.0)  # the slider's range, × chance level
THRESHOLD_STEP = 0.0001  # the slider's step: fine enough to sit between FPR95's threshold and the score below


def chance_level(score: str, num_classes: int) -> float:
    """A score's value for uniform class probabilities: 1/C per softmax maximum (GL-MCM has two)."""
    return (2.0 if score == "GL-MCM" else 1.0) / num_classes


def _check(score: str) -> str:
    if score not in OOD_SCORES:
        raise ValueError(f"score must be one of {', '.join(OOD_SCORES)}, got {score!r}")
    return OOD_SCORES[score]


def default_threshold(session: Session, score: str, temperature: float) -> float | None:
    """The threshold (× chance level) at 95 % TPR on the suite's ID images: the largest value on
    the slider's grid (THRESHOLD_STEP) whose cutoff is at most FPR95's threshold t (`fpr95_point`).
    It keeps the images t keeps unless a score lies between the two (one step of the grid; the
    view reports the TPR and FPR of the cutoff it uses). Clamped to THRESHOLD_RANGE. None without
    a reference (a class list that is no suite's, or a suite without an OOD set)."""
    key = _check(score)
    if session.reference is None or session.reference.id_sims is None:
        return None
    at95 = session.reference.fpr95(key, temperature)[0]
    chance = chance_level(score, len(session.classes))
    steps = math.floor(at95 / chance / THRESHOLD_STEP)
    while _on_grid(steps) * chance > at95:  # a float product may round up past t
        steps -= 1
    low, high = THRESHOLD_RANGE
    return min(max(_on_grid(steps), low), high)


def _on_grid(steps: int) -> float:
    """The slider value `steps` THRESHOLD_STEPs from 0, as the slider shows it."""
    return round(steps * THRESHOLD_STEP, 4)


def ood_view(session: Session, score: str, temperature: float, threshold: float) -> dict:
    """GalLoP's OOD scores of the image against the class list, the verdict for `score`, and how
    the suite's ID and OOD test images fall at the same threshold.

    ID-ness scores (higher = in-distribution) on raw cosines with temperature T; the image is
    in-distribution when the chosen score >= threshold × its chance level. Returns "scores"
    {name: value}, "chance" {name: value}, "score", "threshold", "cutoff", "in_distribution" and
    "reference": None, or {"suite", "id", "ood" (N,) score values, "id_kept" / "ood_kept" (shares
    >= cutoff: the TPR and FPR at this threshold), "auroc", "roc" (FPR (T,), TPR (T,)), "fpr95"
    (threshold × chance level, TPR, FPR at 95 % TPR)}.
    """
    key = _check(score)
    cache = session.gallop
    values = gallop_ood_scores(cache.global_sims[None], cache.local_sims[None], temperature)
    scores = {name: float(values[k][0]) for name, k in OOD_SCORES.items()}
    chance = {name: chance_level(name, len(session.classes)) for name in OOD_SCORES}
    cutoff = threshold * chance[score]
    result = {"scores": scores, "chance": chance, "score": score, "threshold": threshold, "cutoff": cutoff,
              "in_distribution": scores[score] >= cutoff, "reference": None}
    reference = session.reference
    measured = reference and reference.ood_scores(key, temperature)
    if measured:
        id_scores, ood_scores = measured
        at95, tpr95, fpr95 = reference.fpr95(key, temperature)
        result["reference"] = {"suite": reference.suite, "id": id_scores, "ood": ood_scores,
                               "id_kept": float((id_scores >= cutoff).mean()),
                               "ood_kept": float((ood_scores >= cutoff).mean()),
                               "auroc": reference.auroc(key, temperature), "roc": reference.roc(key, temperature),
                               "fpr95": (at95 / chance[score], tpr95, fpr95)}
    return result
