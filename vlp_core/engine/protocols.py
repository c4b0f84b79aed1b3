"""The papers' evaluation protocols, for any method, backbone and data source.

Each protocol returns rows (one per dataset / seed / setting) that `results.write_results` turns
into tables and plots. Learned prompts of every run are checkpointed under the run folder, so an
interrupted protocol resumes where it stopped.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from vlp_core.backbone import ClipBundle, FrozenTextFeatures
from vlp_core.data.base import ClassificationData, Datum, relabel
from vlp_core.data.coop import CoOpDataset
from vlp_core.data.fewshot import base_novel_labels, base_novel_split
from vlp_core.data.fewshot_cache import few_shot_split
from vlp_core.data.loaders import eval_transform, make_loader, train_transform
from vlp_core.engine.evaluate import predict, top1
from vlp_core.engine.registry import TRAINABLE, build_method
from vlp_core.engine.trainer import TrainConfig, train
from vlp_core.methods.base import PromptMethod
from vlp_core.methods.ood import auroc, fpr_at_95_tpr, mcm

Recipe = Callable[[str, str, int, int], TrainConfig]  # (method, dataset, shots, num_classes) -> settings


@dataclass
class Context:
    """What every run of a protocol shares: the frozen CLIP, its text cache, and the settings."""

    clip: ClipBundle
    recipe: Recipe
    out_dir: Path
    method_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    train_crop_scale: tuple[float, float] = (0.08, 1.0)
    eval_batch_size: int = 128
    progress: bool = True
    frozen_text: FrozenTextFeatures = field(init=False)

    def __post_init__(self) -> None:
        self.frozen_text = FrozenTextFeatures(self.clip.model, self.clip.tokenizer)


def _transforms(ctx: Context):
    mean, std = ctx.clip.image_mean_std
    size = ctx.clip.image_size
    return train_transform(size, mean, std, ctx.train_crop_scale), eval_transform(size, mean, std)


def fit(ctx: Context, method_name: str, data: ClassificationData, items: Sequence[Datum],
        class_names: Sequence[str], shots: int, seed: int, run_dir: Path) -> PromptMethod:
    """Build `method_name`, train it on `items` (labels index `class_names`) and return it.

    Zero-shot CLIP is returned untrained. Runs resume from `run_dir` when a checkpoint is there.
    """
    options = dict(ctx.method_options.get(method_name, {}))
    if method_name in TRAINABLE:
        options.setdefault("seed", seed)  # prompt initialisation follows the run's seed
    method = build_method(method_name, ctx.clip, options, ctx.frozen_text)
    method.set_classes(class_names)
    if method_name not in TRAINABLE:
        return method
    config = dataclasses.replace(ctx.recipe(method_name, data.name, shots, len(class_names)), seed=seed,
                                 progress=ctx.progress)
    train_tf, eval_tf = _transforms(ctx)
    loader = make_loader(data, items, train_tf, config.batch_size, shuffle=True, seed=seed)
    prepare = make_loader(data, items, eval_tf, ctx.eval_batch_size)
    train(method, loader, config, out_dir=run_dir, resume=True, prepare_loader=prepare)
    return method


def evaluate(ctx: Context, method: PromptMethod, data: ClassificationData, items: Sequence[Datum],
             class_names: Sequence[str]) -> dict[str, float]:
    """Top-1 (%) on `items` with `class_names`; GalLoP also reports its global and local heads."""
    method.set_classes(class_names)
    loader = make_loader(data, items, _transforms(ctx)[1], ctx.eval_batch_size)
    if hasattr(method, "head_logits"):
        heads = _predict_heads(method, loader)
        labels = heads.pop("labels")
        return {"acc": top1(heads["combined"], labels), "acc_global": top1(heads["global"], labels),
                "acc_local": top1(heads["local"], labels)}
    return {"acc": top1(*predict(method, loader))}


@torch.no_grad()
def _predict_heads(method, loader) -> dict[str, torch.Tensor]:
    method.eval()
    outputs: dict[str, list] = {"global": [], "local": [], "combined": [], "labels": []}
    for images, labels in loader:
        for name, logits in method.head_logits(images.to(method.device)).items():
            outputs[name].append(logits.float().cpu())
        outputs["labels"].append(labels)
    return {k: torch.cat(v) for k, v in outputs.items()}


def few_shot_train(data: ClassificationData, shots: int, seed: int) -> list[Datum]:
    """K-shot training items; real datasets persist the draw as CoOp's split_fewshot JSON."""
    cache_dir = data.folder if isinstance(data, CoOpDataset) else None
    return few_shot_split(data, shots, seed, cache_dir)[0]


def _run_dir(ctx: Context, protocol: str, method: str, dataset: str, seed: int, **extra) -> Path:
    parts = [protocol, method, dataset, *[f"{k}{v}" for k, v in extra.items()], f"seed{seed}"]
    return ctx.out_dir.joinpath("runs", *parts)


def base_to_novel(ctx: Context, method: str, data: ClassificationData, seed: int, shots: int = 16) -> dict:
    """Train on the base half of the classes (K shots), test on base and on novel classes."""
    train_items = few_shot_train(data, shots, seed)
    base, novel = base_novel_labels(train_items)
    names = data.classnames
    model = fit(ctx, method, data, relabel(train_items, base), [names[i] for i in base], shots, seed,
                _run_dir(ctx, "base2novel", method, data.name, seed))
    test_base, test_novel = base_novel_split(data.split("test"), base, novel)
    row = {"dataset": data.name, "method": method, "seed": seed, "shots": shots}
    for prefix, items, labels in (("base", test_base, base), ("novel", test_novel, novel)):
        for key, value in evaluate(ctx, model, data, items, [names[i] for i in labels]).items():
            row[key.replace("acc", prefix)] = value
    return row


def few_shot(ctx: Context, method: str, data: ClassificationData, seed: int, shots: int) -> dict:
    """Train on all classes with K shots, test on the full test set."""
    train_items = few_shot_train(data, shots, seed)
    model = fit(ctx, method, data, train_items, data.classnames, shots, seed,
                _run_dir(ctx, "fewshot", method, data.name, seed, shots=shots))
    scores = evaluate(ctx, model, data, data.split("test"), data.classnames)
    return {"dataset": data.name, "method": method, "seed": seed, "shots": shots, **scores}


def transfer(ctx: Context, method: str, source: ClassificationData, targets: Sequence[ClassificationData],
             seed: int, shots: int = 16, protocol: str = "transfer") -> list[dict]:
    """Train on `source` (all classes, K shots); test unchanged on the source and on each target,
    each with its own class names (domain generalisation and cross-dataset transfer)."""
    train_items = few_shot_train(source, shots, seed)
    model = fit(ctx, method, source, train_items, source.classnames, shots, seed,
                _run_dir(ctx, protocol, method, source.name, seed))
    rows = []
    for target in (source, *targets):
        scores = evaluate(ctx, model, target, target.split("test"), target.classnames)
        rows.append({"source": source.name, "dataset": target.name, "method": method, "seed": seed,
                     "shots": shots, **scores})
    return rows


def ood_detection(ctx: Context, method: str, data: ClassificationData, ood_sets: Sequence[ClassificationData],
                  seed: int, shots: int = 16) -> list[dict]:
    """Train on the in-distribution `data`; score its test set against each OOD set (FPR95, AUROC).

    Every method gets MCM (max softmax of the cosines, T = 1); GalLoP also L-MCM and GL-MCM.
    """
    train_items = few_shot_train(data, shots, seed)
    model = fit(ctx, method, data, train_items, data.classnames, shots, seed,
                _run_dir(ctx, "ood", method, data.name, seed))
    model.set_classes(data.classnames)
    id_scores = id_ness(ctx, model, data, data.split("test"))
    rows = []
    for ood in ood_sets:
        ood_scores = id_ness(ctx, model, ood, ood.split("test"))
        for score in id_scores:
            rows.append({"dataset": data.name, "ood": ood.name, "method": method, "seed": seed,
                         "score": score, "fpr95": 100 * fpr_at_95_tpr(id_scores[score], ood_scores[score]),
                         "auroc": 100 * auroc(id_scores[score], ood_scores[score])})
    return rows


@torch.no_grad()
def id_ness(ctx: Context, method: PromptMethod, data: ClassificationData,
            items: Sequence[Datum]) -> dict[str, torch.Tensor]:
    """ID-ness scores (higher = in-distribution) of `items` under the method's current classes."""
    method.eval()
    loader = make_loader(data, items, _transforms(ctx)[1], ctx.eval_batch_size)
    scores: dict[str, list] = {}
    for images, _ in loader:
        images = images.to(method.device)
        if hasattr(method, "ood_scores"):
            batch = method.ood_scores(images)
        else:
            batch = {"mcm": mcm(method.logits(images) / method.logit_scale)}
        for name, value in batch.items():
            scores.setdefault(name, []).append(value.float().cpu())
    return {k: torch.cat(v) for k, v in scores.items()}
