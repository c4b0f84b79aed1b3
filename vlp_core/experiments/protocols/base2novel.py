"""Base-to-novel generalisation: train on the base half of the classes, test on base and on novel."""

from __future__ import annotations

from typing import Sequence

from vlp_core.data.base import ClassificationData
from vlp_core.data.tasks import Task
from vlp_core.experiments import reports
from vlp_core.experiments.protocols import Protocol, register_protocol, run_dir
from vlp_core.experiments.runs import Context, fit, scored_part
from vlp_core.experiments.spec import COOP_DATASETS, SYNTH_SUITES


def base_to_novel(ctx: Context, method: str, task: Task, targets: Sequence[ClassificationData] = (),
                  label: str = "") -> list[dict]:
    """Train on the base half of the classes (K shots), test on base and on novel classes."""
    settings = ctx.settings(method, "base2novel", task)
    model = fit(ctx, settings, task, run_dir(ctx.out_dir, "base2novel", method, task.name, task.seed), label)
    row, outcomes = {"dataset": task.name, "method": method, "seed": task.seed, "shots": task.shots}, {}
    for part in ("base", "novel"):
        scores, hits = scored_part(ctx, model, task, part, prefix=part)
        row.update(scores)
        outcomes.update(hits)
    return [{**row, "recipe": settings.as_dict(), "outcomes": outcomes}]


register_protocol(Protocol(
    "base2novel", "Base-to-novel", order=10, datasets={"synth": (SYNTH_SUITES, ()), "vitb16": (COOP_DATASETS, ())},
    part="base", per_shots=False, run=base_to_novel, report=reports.base_to_novel))
