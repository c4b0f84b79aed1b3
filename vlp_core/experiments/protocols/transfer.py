"""Domain generalisation and cross-dataset transfer: train on a source (ImageNet, K shots, all classes),
test unchanged on the source and on targets, each with its own class names.

DG, cross-dataset and OOD detection (`ood`) train the same source with the same recipe: it is trained
once per (method, seed) under `runs/source/`, or loaded from the job's `source_prompts`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from vlp_core.data.base import ClassificationData
from vlp_core.data.tasks import Task
from vlp_core.engine.trainer import CHECKPOINT_META, checkpoint_meta, load_trained
from vlp_core.experiments import reports
from vlp_core.experiments.protocols import Protocol, register_protocol, run_dir
from vlp_core.experiments.runs import Context, accuracy, correct, fit, outcome_string
from vlp_core.experiments.spec import COOP_DATASETS
from vlp_core.methods.base import PromptMethod, readable
from vlp_core.methods.registry import build_method


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


SHAPE_STYLES = ("shapes@sketch", "shapes@noisy", "shapes@pixelated", "shapes@painted")
IMAGENET_SHIFTS = ("ImageNet-V2", "ImageNet-Sketch", "ImageNet-A", "ImageNet-R")
register_protocol(Protocol(
    "dg", "Domain generalisation", order=30,
    datasets={"synth": (("shapes",), SHAPE_STYLES), "vitb16": (("ImageNet",), IMAGENET_SHIFTS)},
    part="all", per_shots=False, run=transfer, report=reports.transfer))
register_protocol(Protocol(
    "xd", "Cross-dataset transfer", order=40,
    datasets={"synth": (("shapes",), ("colour_shapes", "patterns", "scenes")),
              "vitb16": (("ImageNet",), COOP_DATASETS[1:])},
    part="all", per_shots=False, run=cross_dataset, report=reports.transfer))
