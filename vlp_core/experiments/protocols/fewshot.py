"""Few-shot classification: train on K shots of every class, test on the full test set."""

from __future__ import annotations

from typing import Sequence

from vlp_core.data.base import ClassificationData
from vlp_core.data.tasks import Task
from vlp_core.experiments import reports
from vlp_core.experiments.protocols import Protocol, register_protocol, run_dir
from vlp_core.experiments.runs import Context, fit, scored_part
from vlp_core.experiments.spec import COOP_DATASETS


def few_shot(ctx: Context, method: str, task: Task, targets: Sequence[ClassificationData] = (),
             label: str = "") -> list[dict]:
    """Train on all classes with K shots, test on the full test set."""
    settings = ctx.settings(method, "fewshot", task)
    folder = run_dir(ctx.out_dir, "fewshot", method, task.name, task.seed, shots=task.shots)
    model = fit(ctx, settings, task, folder, label)
    scores, outcomes = scored_part(ctx, model, task)
    return [{"dataset": task.name, "method": method, "seed": task.seed, "shots": task.shots, **scores,
             "recipe": settings.as_dict(), "outcomes": outcomes}]


register_protocol(Protocol(
    "fewshot", "Few-shot", order=20, datasets={"synth": (("shapes",), ()), "vitb16": (COOP_DATASETS, ())},
    part="all", per_shots=True, run=few_shot, report=reports.few_shot))
