"""The papers' evaluation protocols as one table, for any method, backbone and data source.

A `Protocol` names what it trains on and tests on (fields of the job's preset), whether a job runs it
once per K, the part of the classes it trains on, its run function and its report. A run function
takes the run's `Task` (the few-shot draw, made once) and the datasets it only tests on, and returns
rows (one per dataset / target / score); every row records the recipe and options its run used.
DG, cross-dataset and OOD detection train the same source (ImageNet, K shots, all classes) with the
same recipe: it is trained once per (method, seed) under `runs/source/`, or loaded from the job's
`source_prompts`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from PIL import Image

from vlp_core.data.base import ClassificationData, Datum, relabel
from vlp_core.data.tasks import Part, Task
from vlp_core.engine.trainer import CHECKPOINT_META, checkpoint_meta, load_trained
from vlp_core.experiments import reports
from vlp_core.experiments.runs import Context, accuracy, correct, fit, id_ness, outcome_string, scored_part
from vlp_core.methods.base import PromptMethod, readable
from vlp_core.methods.ood import auroc, fpr_at_95_tpr
from vlp_core.methods.registry import build_method

RunFunction = Callable[[Context, str, Task, Sequence[ClassificationData], str], list[dict]]


@dataclass(frozen=True)
class Protocol:
    """One evaluation protocol: a row of `PROTOCOLS`.

    trains_on / tests_on: the fields of the job's `Preset` listing the datasets it trains on and the
    ones it only tests on by default (None: it tests on what it trains on); a job's `--datasets`
    replaces the first list for protocols without test-only datasets, the second otherwise.
    """

    name: str
    title: str
    trains_on: str
    tests_on: str | None
    part: Part  # the classes a run trains on
    per_shots: bool  # one run per K of the job (few-shot), else one run with the job's last K
    run: RunFunction
    report: Callable[[list[dict], Path], str]  # rows -> markdown body, plots written under the folder

    def write_report(self, rows: list[dict], out_dir: Path, config: dict) -> Path:
        """results.md, CSV / JSON rows, config and plots of a job's rows in `out_dir`."""
        return reports.write_report(self.title, self.report, rows, out_dir, config)


def run_dir(out_dir: Path, protocol: str, method: str, dataset: str, seed: int, **extra) -> Path:
    """The folder of one run under a results folder: runs/<protocol>/<method>/<dataset>/[<key><value>/]seed<S>."""
    parts = [protocol, method, dataset, *[f"{k}{v}" for k, v in extra.items()], f"seed{seed}"]
    return out_dir.joinpath("runs", *parts)


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


def few_shot(ctx: Context, method: str, task: Task, targets: Sequence[ClassificationData] = (),
             label: str = "") -> list[dict]:
    """Train on all classes with K shots, test on the full test set."""
    settings = ctx.settings(method, "fewshot", task)
    folder = run_dir(ctx.out_dir, "fewshot", method, task.name, task.seed, shots=task.shots)
    model = fit(ctx, settings, task, folder, label)
    scores, outcomes = scored_part(ctx, model, task)
    return [{"dataset": task.name, "method": method, "seed": task.seed, "shots": task.shots, **scores,
             "recipe": settings.as_dict(), "outcomes": outcomes}]


def source_model(ctx: Context, method: str, protocol: str, task: Task, label: str = "") -> tuple[PromptMethod, dict]:
    """The model trained on the source `task` (K shots, all classes) for dg / xd / ood, and its
    recorded recipe.

    Loaded from the job's `source_prompts` when that holds it (a results folder of an earlier dg / xd /
    ood run, or a `vlp train` folder), else trained (or resumed) under `runs/source/`, shared by the three.
    """
    settings = ctx.settings(method, protocol, task)
    found = _source_checkpoint(ctx, method, task) if settings.train is not None else None
    if found is None:
        folder = run_dir(ctx.out_dir, "source", method, task.name, task.seed, shots=task.shots)
        return fit(ctx, settings, task, folder, label), settings.as_dict()
    meta = checkpoint_meta(found)
    names = task.class_names()
    if meta["method"] != method or meta["classes"] != [readable(n) for n in names]:
        raise ValueError(f"{found} holds a {meta['method']} model of {len(meta['classes'])} classes, not a {method} "
                         f"model of {task.name}'s {len(names)} classes: it cannot be the source")
    record = {**settings.as_dict(), "train": meta["config"], "options": meta["method_config"],
              "loaded_from": str(found)}
    return load_trained(found, ctx.clip, ctx.frozen_text), record


def _source_checkpoint(ctx: Context, method: str, task: Task) -> Path | None:
    """The checkpoint folder of this source in the job's `source_prompts`, or None when none is given.

    A results folder holds runs/source/<method>/<dataset>/shots<K>/seed<S>; a `vlp train` folder is
    the checkpoint itself (one method, one seed)."""
    if ctx.spec.source_prompts is None:
        return None
    folder = Path(ctx.spec.source_prompts)
    candidates = [run_dir(folder, "source", method, task.name, task.seed, shots=task.shots), folder]
    found = next((c for c in candidates if (c / CHECKPOINT_META).is_file()), None)
    if found is None:
        raise FileNotFoundError(f"--prompts {folder} holds no source for {method}, seed {task.seed}: expected "
                                f"{candidates[0] / CHECKPOINT_META} (a dg / xd / ood results folder) or "
                                f"{folder / CHECKPOINT_META} (a `vlp train` folder)")
    return found


def _scored_model(ctx: Context, model: PromptMethod, method: str, protocol: str, target: ClassificationData,
                  shots: int) -> PromptMethod:
    """The model a target is scored with: the source model, or for an untrained method (zero-shot
    CLIP) the method built with the target's own recipe (its prompt template)."""
    if model.trainable:
        return model
    return build_method(method, ctx.clip, ctx.untrained_options(method, protocol, target, shots), ctx.frozen_text)


def transfer(ctx: Context, method: str, task: Task, targets: Sequence[ClassificationData], label: str = "",
             protocol: str = "dg") -> list[dict]:
    """Train on the source `task` (all classes, K shots); test unchanged on the source and on each
    target, each with its own class names (domain generalisation and cross-dataset transfer)."""
    model, record = source_model(ctx, method, protocol, task, label)
    rows = []
    for target in (task.data, *targets):
        scored = _scored_model(ctx, model, method, protocol, target, task.shots)
        hits = correct(ctx, scored, target, target.split("test"), target.classnames)
        rows.append({"source": task.name, "dataset": target.name, "method": method, "seed": task.seed,
                     "shots": task.shots, **{head: accuracy(v) for head, v in hits.items()}, "recipe": record,
                     "outcomes": {head: outcome_string(v) for head, v in hits.items()}})
    return rows


def cross_dataset(ctx: Context, method: str, task: Task, targets: Sequence[ClassificationData],
                  label: str = "") -> list[dict]:
    """`transfer` with the cross-dataset protocol's recipe."""
    return transfer(ctx, method, task, targets, label, protocol="xd")


def ood_detection(ctx: Context, method: str, task: Task, ood_sets: Sequence[ClassificationData],
                  label: str = "") -> list[dict]:
    """Train on the in-distribution `task`; score its test set against each OOD set (FPR95 by the
    job's `fpr95_rule`, AUROC).

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


class ClassSubset:
    """The classes `labels` of `data` as a dataset of their own, numbered 0..n-1 in that order; its
    images and masks are `data`'s. It has no folder, so a few-shot draw of it is never persisted."""

    def __init__(self, data: ClassificationData, labels: Sequence[int], name: str):
        self.data, self.labels, self.name = data, list(labels), name

    @property
    def classnames(self) -> list[str]:
        return [self.data.classnames[label] for label in self.labels]

    def split(self, name: str) -> list[Datum]:
        return relabel(self.data.split(name), self.labels)

    def load_image(self, datum: Datum) -> Image.Image:
        return self.data.load_image(datum)

    def load_mask(self, datum: Datum) -> np.ndarray | None:
        return self.data.load_mask(datum)


def held_out_classes(data: ClassificationData, kept: Sequence[int]) -> tuple[ClassSubset, ClassSubset]:
    """An OOD split inside one dataset: its classes `kept` (labels) as the in-distribution dataset
    ("<name>-id", to make a `Task` of and train on), the other classes as the OOD set ("<name>-ood")
    for `ood_detection`."""
    others = [label for label in range(len(data.classnames)) if label not in set(kept)]
    return ClassSubset(data, kept, f"{data.name}-id"), ClassSubset(data, others, f"{data.name}-ood")


PROTOCOLS: dict[str, Protocol] = {p.name: p for p in (
    Protocol("base2novel", "Base-to-novel", "base_to_novel", None, "base", False, base_to_novel,
             reports.base_to_novel),
    Protocol("fewshot", "Few-shot", "few_shot", None, "all", True, few_shot, reports.few_shot),
    Protocol("dg", "Domain generalisation", "transfer_source", "domain_targets", "all", False, transfer,
             reports.transfer),
    Protocol("xd", "Cross-dataset transfer", "transfer_source", "cross_targets", "all", False, cross_dataset,
             reports.transfer),
    Protocol("ood", "OOD detection", "transfer_source", "ood_sets", "all", False, ood_detection, reports.ood),
)}


def rounded(scores, digits: int = 6) -> list[float]:
    """ID-ness scores (N,) as a list of floats with `digits` significant digits, kept in a run's rows
    so FPR95 and AUROC can be resampled over images."""
    return [float(f"{value:.{digits}g}") for value in scores.tolist()]


def protocol(name: str) -> Protocol:
    """The protocol `name`; a ValueError lists the known ones."""
    if name not in PROTOCOLS:
        raise ValueError(f"unknown protocol {name!r}; choose from {', '.join(PROTOCOLS)}")
    return PROTOCOLS[name]
