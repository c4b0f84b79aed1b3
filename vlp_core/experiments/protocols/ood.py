"""OOD detection: the source model of `transfer` scores its in-distribution test set against OOD sets."""

from __future__ import annotations

from typing import Sequence

from vlp_core.data.base import ClassificationData
from vlp_core.data.tasks import Task
from vlp_core.experiments import reports
from vlp_core.experiments.protocols import Protocol, register_protocol
from vlp_core.experiments.protocols.transfer import source_model
from vlp_core.experiments.runs import Context, id_ness
from vlp_core.methods.ood import auroc, fpr_at_95_tpr


def ood_detection(ctx: Context, method: str, task: Task, ood_sets: Sequence[ClassificationData],
                  label: str = "") -> list[dict]:
    """Train on the in-distribution `task`; score its test set against each OOD set (FPR95 by the
    job's `fpr95_rule`, AUROC), keeping every image's score.

    Every method gets MCM (max softmax of the cosines, T = 1); GalLoP also L-MCM and GL-MCM.
    """
    model, record = source_model(ctx, method, "ood", task, label)
    model.set_classes(task.class_names())
    id_scores = id_ness(ctx, model, task.data, task.test())
    rule = ctx.spec.fpr95_rule
    rows = []
    for ood in ood_sets:
        ood_scores = id_ness(ctx, model, ood, ood.split("test"))
        for score in id_scores:
            rows.append({"dataset": task.name, "ood": ood.name, "method": method, "seed": task.seed, "score": score,
                         "fpr95": 100 * fpr_at_95_tpr(id_scores[score], ood_scores[score], rule),
                         "auroc": 100 * auroc(id_scores[score], ood_scores[score]),
                         "fpr95_rule": rule, "recipe": record,
                         "scores": {"id": rounded(id_scores[score]), "ood": rounded(ood_scores[score])}})
    return rows


def rounded(scores, digits: int = 6) -> list[float]:
    """ID-ness scores (N,) as a list of floats with `digits` significant digits, kept in a run's rows
    so FPR95 and AUROC can be resampled over images."""
    return [float(f"{value:.{digits}g}") for value in scores.tolist()]


register_protocol(Protocol(
    "ood", "OOD detection", order=50,
    datasets={"synth": (("shapes",), ("ood",)), "vitb16": (("ImageNet",), ("iNaturalist", "SUN", "Places", "Textures"))},
    part="all", per_shots=False, run=ood_detection, report=reports.ood))
