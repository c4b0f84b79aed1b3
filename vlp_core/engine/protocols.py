"""The papers' evaluation protocols, for any method, backbone and data source.

Each protocol returns rows (one per dataset / seed / setting) that `jobs.write_report` turns into
tables and plots; every row records the recipe and options its run actually used. Learned prompts of
every run are checkpointed under the run folder, so an interrupted protocol resumes where it stopped.
DG, cross-dataset and OOD detection train the same source (ImageNet, K shots, all classes) with the
same recipe: it is trained once per (method, seed) under `runs/source/`, or loaded from `source_prompts`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch
from tqdm.auto import tqdm

from vlp_core.backbone import ClipBundle, FrozenTextFeatures
from vlp_core.data.base import ClassificationData, ClassOrder, Datum, relabel
from vlp_core.data.fewshot import base_novel_labels, base_novel_split
from vlp_core.data.fewshot_cache import Sampling, few_shot_split
from vlp_core.data.loaders import eval_transform, make_loader, train_transform
from vlp_core.engine import distributed
from vlp_core.engine.evaluate import top1
from vlp_core.engine.recipes import Recipe, Rule, recipe
from vlp_core.engine.trainer import (
    CHECKPOINT_META,
    CHECKPOINT_TENSORS,
    checkpoint_meta,
    load_trained,
    resolve_precision,
    train,
)
from vlp_core.methods.base import PromptMethod, readable
from vlp_core.methods.ood import Fpr95Rule, auroc, fpr_at_95_tpr
from vlp_core.methods.registry import build_method, method_class


@dataclass(frozen=True)
class FewShotOptions:
    """How the K-shot training set is drawn: CoOp's protocol by default, GalLoP's official options
    (a stratified K·C sample, train+val for the named datasets, classes by first appearance)."""

    sampling: Sampling = "per_class"
    trainval: tuple[str, ...] = ()  # datasets whose training pool is train + val (GalLoP: FGVCAircraft)
    class_order: ClassOrder = "label"


@dataclass
class Context:
    """What every run of a protocol shares: the frozen CLIP (on its device), its text cache, and the
    settings chosen once at the top: the recipe rule, method options, epochs, precision, workers."""

    clip: ClipBundle
    out_dir: Path
    rule: Rule = "synth"
    method_options: dict[str, dict[str, Any]] = field(default_factory=dict)  # override the recipes'
    epochs: int | None = None  # override the recipes' epochs (quick checks)
    precision: str | None = None  # None: the recipe's on CUDA, fp32 on the CPU
    workers: int = 0
    train_crop_scale: tuple[float, float] = (0.08, 1.0)
    few_shot: FewShotOptions = FewShotOptions()
    fpr95_rule: Fpr95Rule = "threshold"
    source_prompts: Path | None = None  # a folder of trained sources for dg / xd / ood
    overwrite: bool = False  # discard existing checkpoints instead of resuming them
    eval_batch_size: int = 128
    progress: bool = True
    frozen_text: FrozenTextFeatures = field(init=False)

    def __post_init__(self) -> None:
        self.frozen_text = FrozenTextFeatures(self.clip.model, self.clip.tokenizer)

    @property
    def device(self) -> torch.device:
        return self.clip.model.logit_scale.device

    def settings(self, method: str, protocol: str, dataset: str, shots: int, num_classes: int) -> Recipe:
        """The recipe a run uses: the table's, then `epochs`, the resolved precision and the user's
        method options applied; `as_dict()` is what the run records."""
        trainable = method_class(method).trainable
        table = recipe(method, protocol, dataset, shots, self.rule, num_classes, trainable)
        options = {**table.options, **self.method_options.get(method, {})}
        config = table.train
        if config is not None:
            config = dataclasses.replace(config, epochs=self.epochs or config.epochs, progress=self.progress,
                                         precision=resolve_precision(self.precision, config.precision, self.device))
        return dataclasses.replace(table, train=config, options=options)

    def loader(self, data: ClassificationData, items: Sequence[Datum], train_split: bool, batch_size: int,
               seed: int = 0):
        """A loader of `items` with the training augmentation (this process's share of global batches
        of `batch_size`) or the test transform, pinned on CUDA."""
        mean, std = self.clip.image_mean_std
        size = self.clip.image_size
        transform = (train_transform(size, mean, std, self.train_crop_scale) if train_split
                     else eval_transform(size, mean, std))
        return make_loader(data, items, transform, batch_size, shuffle=train_split, seed=seed,
                           num_workers=self.workers, pin_memory=self.device.type == "cuda",
                           rank=distributed.rank(), world_size=distributed.world_size())


def fit(ctx: Context, method_name: str, protocol: str, data: ClassificationData, items: Sequence[Datum],
        class_names: Sequence[str], shots: int, seed: int, run_dir: Path, label: str = "") -> PromptMethod:
    """Build `method_name` with its recipe for (protocol, data, shots), train it on `items` (labels
    index `class_names`) and return it. Zero-shot CLIP is returned untrained.

    Runs resume from `run_dir` when it holds the same run (`ctx.overwrite`: start afresh).
    """
    settings = ctx.settings(method_name, protocol, data.name, shots, len(class_names))
    return fit_with_recipe(ctx, settings, data, items, class_names, seed, run_dir, label)


def fit_with_recipe(ctx: Context, settings: Recipe, data: ClassificationData, items: Sequence[Datum],
         class_names: Sequence[str], seed: int, run_dir: Path, label: str = "") -> PromptMethod:
    """`fit` with the recipe `settings` (a `Context.settings`) already chosen."""
    options = dict(settings.options)
    if settings.train is not None:
        options.setdefault("seed", seed)  # prompt initialisation follows the run's seed
    method = build_method(settings.method, ctx.clip, options, ctx.frozen_text)
    method.set_classes(class_names)
    if settings.train is None:
        return method
    config = dataclasses.replace(settings.train, seed=seed)
    if ctx.overwrite:
        for name in (CHECKPOINT_META, CHECKPOINT_TENSORS):
            (run_dir / name).unlink(missing_ok=True)
    record = {"dataset": data.name, "classes": method.class_names, "shots": settings.shots,
              "few_shot": dataclasses.asdict(ctx.few_shot)}
    train(method, ctx.loader(data, items, True, config.batch_size, seed), config, out_dir=run_dir, resume=True,
          prepare_loader=ctx.loader(data, items, False, ctx.eval_batch_size), record=record, label=label)
    return method


def evaluate(ctx: Context, method: PromptMethod, data: ClassificationData, items: Sequence[Datum],
             class_names: Sequence[str]) -> dict[str, float]:
    """Top-1 (%) on `items` with `class_names`: "acc" for the prediction, "acc_<head>" for the other
    heads a method has (GalLoP's global and local)."""
    method.set_classes(class_names)
    method.eval()
    outputs: dict[str, list] = {}
    labels = []
    bar = tqdm(ctx.loader(data, items, False, ctx.eval_batch_size), desc=f"evaluating on {data.name}",
               disable=not ctx.progress, leave=False)
    with torch.no_grad():
        for images, targets in bar:
            for head, logits in method.head_logits(images.to(ctx.device, non_blocking=True)).items():
                outputs.setdefault(head, []).append(logits.float().cpu())
            labels.append(targets)
    truth = torch.cat(labels)
    return {("acc" if head == "combined" else f"acc_{head}"): top1(torch.cat(v), truth) for head, v in outputs.items()}


def few_shot_train(ctx: Context, data: ClassificationData, shots: int, seed: int) -> list[Datum]:
    """K-shot training items; real datasets persist the draw as CoOp's split_fewshot JSON."""
    options = ctx.few_shot
    return few_shot_split(data, shots, seed, getattr(data, "folder", None), options.sampling,
                          data.name in options.trainval, options.class_order)[0]


def run_dir(out_dir: Path, protocol: str, method: str, dataset: str, seed: int, **extra) -> Path:
    """The folder of one run under a results folder: runs/<protocol>/<method>/<dataset>/[<key><value>/]seed<S>."""
    parts = [protocol, method, dataset, *[f"{k}{v}" for k, v in extra.items()], f"seed{seed}"]
    return out_dir.joinpath("runs", *parts)


def base_to_novel(ctx: Context, method: str, data: ClassificationData, seed: int, shots: int = 16,
                  label: str = "") -> dict:
    """Train on the base half of the classes (K shots), test on base and on novel classes."""
    train_items = few_shot_train(ctx, data, shots, seed)
    base, novel = base_novel_labels(train_items)
    names = data.classnames
    settings = ctx.settings(method, "base2novel", data.name, shots, len(base))
    model = fit_with_recipe(ctx, settings, data, relabel(train_items, base), [names[i] for i in base], seed,
                 run_dir(ctx.out_dir, "base2novel", method, data.name, seed), label)
    test_base, test_novel = base_novel_split(data.split("test"), base, novel)
    row = {"dataset": data.name, "method": method, "seed": seed, "shots": shots}
    for prefix, items, labels in (("base", test_base, base), ("novel", test_novel, novel)):
        for key, value in evaluate(ctx, model, data, items, [names[i] for i in labels]).items():
            row[key.replace("acc", prefix)] = value
    return {**row, "recipe": settings.as_dict()}


def few_shot(ctx: Context, method: str, data: ClassificationData, seed: int, shots: int, label: str = "") -> dict:
    """Train on all classes with K shots, test on the full test set."""
    train_items = few_shot_train(ctx, data, shots, seed)
    settings = ctx.settings(method, "fewshot", data.name, shots, len(data.classnames))
    model = fit_with_recipe(ctx, settings, data, train_items, data.classnames, seed,
                 run_dir(ctx.out_dir, "fewshot", method, data.name, seed, shots=shots), label)
    scores = evaluate(ctx, model, data, data.split("test"), data.classnames)
    return {"dataset": data.name, "method": method, "seed": seed, "shots": shots, **scores,
            "recipe": settings.as_dict()}


def source_model(ctx: Context, method: str, protocol: str, source: ClassificationData, seed: int, shots: int,
                 label: str = "") -> tuple[PromptMethod, dict]:
    """The model trained on `source` (K shots, all classes) for dg / xd / ood, and its recorded recipe.

    Loaded from `ctx.source_prompts` when that holds it (a results folder of an earlier dg / xd / ood
    run, or a `vlp train` folder), else trained (or resumed) under `runs/source/`, shared by the three.
    """
    settings = ctx.settings(method, protocol, source.name, shots, len(source.classnames))
    found = _source_checkpoint(ctx, method, source, seed, shots) if settings.train is not None else None
    if found is None:
        folder = run_dir(ctx.out_dir, "source", method, source.name, seed, shots=shots)
        model = fit_with_recipe(ctx, settings, source, few_shot_train(ctx, source, shots, seed), source.classnames, seed,
                     folder, label)
        return model, settings.as_dict()
    meta = checkpoint_meta(found)
    if meta["method"] != method or meta["classes"] != [readable(n) for n in source.classnames]:
        raise ValueError(f"{found} holds a {meta['method']} model of {len(meta['classes'])} classes, not a {method} "
                         f"model of {source.name}'s {len(source.classnames)} classes: it cannot be the source")
    record = {**settings.as_dict(), "train": meta["config"], "options": meta["method_config"],
              "loaded_from": str(found)}
    return load_trained(found, ctx.clip, ctx.frozen_text), record


def _source_checkpoint(ctx: Context, method: str, source: ClassificationData, seed: int, shots: int) -> Path | None:
    """The checkpoint folder of this source in `ctx.source_prompts`, or None when none is given.

    A results folder holds runs/source/<method>/<dataset>/shots<K>/seed<S>; a `vlp train` folder is
    the checkpoint itself (one method, one seed)."""
    if ctx.source_prompts is None:
        return None
    folder = Path(ctx.source_prompts)
    candidates = [folder.joinpath("runs", "source", method, source.name, f"shots{shots}", f"seed{seed}"), folder]
    found = next((c for c in candidates if (c / CHECKPOINT_META).is_file()), None)
    if found is None:
        raise FileNotFoundError(f"--prompts {folder} holds no source for {method}, seed {seed}: expected "
                                f"{candidates[0] / CHECKPOINT_META} (a dg / xd / ood results folder) or "
                                f"{folder / CHECKPOINT_META} (a `vlp train` folder)")
    return found


def _evaluated(ctx: Context, model: PromptMethod, method: str, protocol: str, target: ClassificationData,
               shots: int) -> PromptMethod:
    """The model a target is scored with: the source model, or for an untrained method (zero-shot
    CLIP) the method built with the target's own recipe (its prompt template)."""
    if model.trainable:
        return model
    options = ctx.settings(method, protocol, target.name, shots, len(target.classnames)).options
    return build_method(method, ctx.clip, options, ctx.frozen_text)


def transfer(ctx: Context, method: str, source: ClassificationData, targets: Sequence[ClassificationData],
             seed: int, shots: int = 16, protocol: str = "dg", label: str = "") -> list[dict]:
    """Train on `source` (all classes, K shots); test unchanged on the source and on each target,
    each with its own class names (domain generalisation and cross-dataset transfer)."""
    model, record = source_model(ctx, method, protocol, source, seed, shots, label)
    rows = []
    for target in (source, *targets):
        scored = _evaluated(ctx, model, method, protocol, target, shots)
        scores = evaluate(ctx, scored, target, target.split("test"), target.classnames)
        rows.append({"source": source.name, "dataset": target.name, "method": method, "seed": seed,
                     "shots": shots, **scores, "recipe": record})
    return rows


def ood_detection(ctx: Context, method: str, data: ClassificationData, ood_sets: Sequence[ClassificationData],
                  seed: int, shots: int = 16, label: str = "") -> list[dict]:
    """Train on the in-distribution `data`; score its test set against each OOD set (FPR95 by
    `ctx.fpr95_rule`, AUROC).

    Every method gets MCM (max softmax of the cosines, T = 1); GalLoP also L-MCM and GL-MCM.
    """
    model, record = source_model(ctx, method, "ood", data, seed, shots, label)
    model.set_classes(data.classnames)
    id_scores = id_ness(ctx, model, data, data.split("test"))
    rows = []
    for ood in ood_sets:
        ood_scores = id_ness(ctx, model, ood, ood.split("test"))
        for score in id_scores:
            rows.append({"dataset": data.name, "ood": ood.name, "method": method, "seed": seed, "score": score,
                         "fpr95": 100 * fpr_at_95_tpr(id_scores[score], ood_scores[score], ctx.fpr95_rule),
                         "auroc": 100 * auroc(id_scores[score], ood_scores[score]),
                         "fpr95_rule": ctx.fpr95_rule, "recipe": record})
    return rows


@torch.no_grad()
def id_ness(ctx: Context, method: PromptMethod, data: ClassificationData,
            items: Sequence[Datum]) -> dict[str, torch.Tensor]:
    """ID-ness scores (higher = in-distribution) of `items` under the method's current classes."""
    method.eval()
    scores: dict[str, list] = {}
    bar = tqdm(ctx.loader(data, items, False, ctx.eval_batch_size), desc=f"scoring {data.name}",
               disable=not ctx.progress, leave=False)
    for images, _ in bar:
        for name, value in method.ood_scores(images.to(ctx.device, non_blocking=True)).items():
            scores.setdefault(name, []).append(value.float().cpu())
    return {k: torch.cat(v) for k, v in scores.items()}
