"""One run: a method built with its recipe, trained on a Task, scored on test items.

`Context` is what the runs of a job share (its spec, the frozen CLIP and its text cache, where runs are
written); `fit` trains one method on one Task with the settings `Context.settings` decides (the
recipe table's entry and the spec's overrides, nothing else), `evaluate` and `id_ness` score it.
`train_one` and `evaluate_one` are `vlp train` and `vlp eval`. Learned prompts of every run are
checkpointed in its folder, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch
from tqdm.auto import tqdm

from vlp_core.backbone import ClipBundle, FrozenTextFeatures
from vlp_core.data.base import ClassificationData, Datum
from vlp_core.data.loaders import eval_transform, make_loader, train_transform
from vlp_core.data.tasks import Part, Task, make_task
from vlp_core.engine import distributed
from vlp_core.engine.recipes import ModelShape, Recipe, recipe_checkpoint, run_recipe
from vlp_core.engine.run_log import record_evaluation
from vlp_core.engine.trainer import (
    CHECKPOINT_META,
    CHECKPOINT_TENSORS,
    checkpoint_meta,
    load_trained,
    scored_checkpoint,
    train,
)
from vlp_core.experiments.spec import JobSpec
from vlp_core.files import write_text_atomically
from vlp_core.methods.base import PromptMethod
from vlp_core.methods.registry import build_method, method_class

RUN_RECORD = "run.json"  # what `train_one` trained, beside its checkpoint
PROTOCOL_OF_CLASSES = {"base": "base2novel", "all": "fewshot"}  # `vlp train`'s default recipe protocol


@dataclass
class Context:
    """What every run of a job shares: its spec, the frozen CLIP (on its device) and its text cache,
    the folder runs are written under."""

    spec: JobSpec
    clip: ClipBundle
    out_dir: Path
    overwrite: bool = False  # discard existing checkpoints instead of resuming them
    progress: bool = True
    keep_epochs: bool = False  # keep every epoch's learned tensors (`vlp eval --epoch N`)
    eval_batch_size: int = 128
    frozen_text: FrozenTextFeatures = field(init=False)
    shape: ModelShape = field(init=False)  # what the synth rule scales the papers' settings to

    def __post_init__(self) -> None:
        self.out_dir = Path(self.out_dir)
        self.frozen_text = FrozenTextFeatures(self.clip.model, self.clip.tokenizer)
        self.shape = ModelShape.of(self.clip)

    @property
    def device(self) -> torch.device:
        return self.clip.model.logit_scale.device

    def settings(self, method: str, protocol: str, task: Task) -> Recipe:
        """The recipe a run of `method` on `task` uses under `protocol`: the table's, with the spec's
        epochs, precision and method options applied; `as_dict()` is what the run records."""
        spec = self.spec
        return run_recipe(method, protocol, task.name, task.shots, len(task.class_names()),
                          rule=spec.preset_entry.rule, trainable=method_class(method).trainable,
                          device=self.device, shape=self.shape, epochs=spec.epochs, precision=spec.precision,
                          options=spec.method_options.get(method, {}), rule_options=spec.rule_options)

    def untrained_options(self, method: str, protocol: str, data: ClassificationData, shots: int) -> dict[str, Any]:
        """The options of an untrained method (zero-shot CLIP) on `data`: its recipe's (a dataset's own
        prompt template) with the spec's method options applied."""
        spec = self.spec
        return run_recipe(method, protocol, data.name, shots, len(data.classnames), rule=spec.preset_entry.rule,
                          trainable=False, device=self.device, shape=self.shape,
                          options=spec.method_options.get(method, {})).options

    def loader(self, data: ClassificationData, items: Sequence[Datum], batch_size: int,
               train_crop_scale: tuple[float, float] | None = None, seed: int = 0):
        """A loader of `items`: with `train_crop_scale` the training augmentation (this process's share
        of global batches of `batch_size`), else the test transform; pinned on CUDA."""
        mean, std = self.clip.image_mean_std
        size = self.clip.image_size
        training = train_crop_scale is not None
        transform = train_transform(size, mean, std, train_crop_scale) if training else eval_transform(size, mean, std)
        return make_loader(data, items, transform, batch_size, shuffle=training, seed=seed,
                           num_workers=self.spec.workers, pin_memory=self.device.type == "cuda",
                           rank=distributed.rank(), world_size=distributed.world_size())


def fit(ctx: Context, settings: Recipe, task: Task, run_dir: Path, label: str = "") -> PromptMethod:
    """Build the method of `settings` (a `Context.settings`), train it on `task`'s items and return
    it. Zero-shot CLIP is returned untrained.

    Runs resume from `run_dir` when it holds the same run (`ctx.overwrite`: start afresh).
    """
    options = dict(settings.options)
    if settings.train is not None:
        options.setdefault("seed", task.seed)  # prompt initialisation follows the run's seed
    method = build_method(settings.method, ctx.clip, options, ctx.frozen_text)
    method.set_classes(task.class_names())
    if settings.train is None:
        return method
    config = dataclasses.replace(settings.train, seed=task.seed, progress=ctx.progress)
    if ctx.overwrite:
        for name in (CHECKPOINT_META, CHECKPOINT_TENSORS):
            (run_dir / name).unlink(missing_ok=True)
    record = {"dataset": task.name, "classes": method.class_names, "shots": task.shots,
              "few_shot": dataclasses.asdict(ctx.spec.few_shot)}
    train(method, ctx.loader(task.data, task.train, config.batch_size, config.crop_scale, task.seed), config,
          out_dir=run_dir, resume=True, prepare_loader=ctx.loader(task.data, task.train, ctx.eval_batch_size),
          record=record, label=label, keep_epochs=ctx.keep_epochs)
    return method


def correct(ctx: Context, method: PromptMethod, data: ClassificationData, items: Sequence[Datum],
            class_names: Sequence[str]) -> dict[str, torch.Tensor]:
    """Whether each of `items` is classified right among `class_names`, per head: "acc" for the
    prediction, "acc_<head>" for the other heads a method has (GalLoP's global and local) -> (N,) bool."""
    method.set_classes(class_names)
    method.eval()
    outputs: dict[str, list] = {}
    labels = []
    bar = tqdm(ctx.loader(data, items, ctx.eval_batch_size), desc=f"evaluating on {data.name}",
               disable=not ctx.progress, leave=False)
    with torch.no_grad():
        for images, targets in bar:
            for head, logits in method.head_logits(images.to(ctx.device, non_blocking=True)).items():
                outputs.setdefault(head, []).append(logits.float().cpu())
            labels.append(targets)
    truth = torch.cat(labels)
    return {("acc" if head == "combined" else f"acc_{head}"): torch.cat(v).argmax(-1) == truth
            for head, v in outputs.items()}


def evaluate(ctx: Context, method: PromptMethod, data: ClassificationData, items: Sequence[Datum],
             class_names: Sequence[str]) -> dict[str, float]:
    """Top-1 (%) on `items` with `class_names`, per head (see `correct`)."""
    return {head: accuracy(hits) for head, hits in correct(ctx, method, data, items, class_names).items()}


def accuracy(hits: torch.Tensor) -> float:
    """Top-1 (%) from per-image correctness (N,) bool."""
    return 100.0 * hits.float().mean().item()


def outcome_string(hits: torch.Tensor) -> str:
    """Per-image correctness (N,) bool as "0110...", kept in a run's rows so claims can be tested by
    resampling test images."""
    return "".join("1" if hit else "0" for hit in hits.tolist())


def scored_part(ctx: Context, method: PromptMethod, task: Task, part: Part | None = None,
                prefix: str = "acc") -> tuple[dict[str, float], dict[str, str]]:
    """Top-1 (%) per head on the test items of `part` of `task` (default: the part trained on), keys
    with "acc" replaced by `prefix`, and the per-image outcomes under the same keys."""
    hits = correct(ctx, method, task.data, task.test(part), task.class_names(part))
    keys = {head: head.replace("acc", prefix) for head in hits}
    return ({keys[h]: accuracy(v) for h, v in hits.items()}, {keys[h]: outcome_string(v) for h, v in hits.items()})


def evaluate_part(ctx: Context, method: PromptMethod, task: Task, part: Part | None = None) -> dict[str, float]:
    """`evaluate` on the test items of `part` of `task` (default: the part trained on), with its names."""
    return scored_part(ctx, method, task, part)[0]


@torch.no_grad()
def id_ness(ctx: Context, method: PromptMethod, data: ClassificationData,
            items: Sequence[Datum]) -> dict[str, torch.Tensor]:
    """ID-ness scores (higher = in-distribution) of `items` under the method's current classes."""
    method.eval()
    scores: dict[str, list] = {}
    bar = tqdm(ctx.loader(data, items, ctx.eval_batch_size), desc=f"scoring {data.name}",
               disable=not ctx.progress, leave=False)
    for images, _ in bar:
        for name, value in method.ood_scores(images.to(ctx.device, non_blocking=True)).items():
            scores.setdefault(name, []).append(value.float().cpu())
    return {k: torch.cat(v) for k, v in scores.items()}


def train_one(spec: JobSpec, method: str, dataset: str, classes: Part, out_dir: str | Path,
              progress: bool = True, overwrite: bool = False, keep_epochs: bool = False) -> dict | None:
    """`vlp train`: one method on one dataset (K shots of `classes`, the first seed, the recipe of
    `spec.protocol`); the checkpoint, its metrics and a run record go to `out_dir`. -> test scores and
    what ran: the data (and the name that opens it again), the recipe, which checkpoint is scored, how
    many processes trained it, and the seconds this command took to train (or resume) and score it.

    In a distributed run every process trains; the main one alone evaluates, writes and returns
    the record (the others None)."""
    spec.check()
    started = time.perf_counter()
    ctx = Context(spec, spec.clip(), Path(out_dir), overwrite, progress, keep_epochs=keep_epochs)
    task = make_task(spec.open(dataset, ctx.clip), spec.shots[-1], spec.seeds[0], classes, spec.few_shot)
    settings = ctx.settings(method, spec.protocol, task)
    label = f"{method} · {task.name} · seed {task.seed}"
    model = fit(ctx, settings, task, ctx.out_dir, label)
    if not distributed.is_main():
        return None
    recipe = settings.as_dict()
    scores = evaluate_part(ctx, model, task)
    record_evaluation(ctx.out_dir, task.name, scores, settings.train.epochs, label)
    record = {"dataset": task.name, "data": reopenable(dataset), "classes": classes, "shots": task.shots,
              "seed": task.seed, "preset": spec.preset, "data_root": spec.data_root, "class_order": spec.class_order,
              "recipe": recipe, "checkpoint": recipe_checkpoint(recipe),
              "processes": processes(checkpoint_meta(ctx.out_dir)["history"]),
              "seconds": round(time.perf_counter() - started, 1), "test": scores}
    write_text_atomically(ctx.out_dir / RUN_RECORD, json.dumps(record, indent=2))
    return record


def processes(history: Sequence[dict]) -> int | list[int]:
    """How many processes trained a run, from its checkpoint's history: one number, or one per epoch
    where a resumed run changed it (epochs recorded before processes were, count as one)."""
    counts = [entry.get("processes", 1) for entry in history]
    return counts[0] if len(set(counts)) == 1 else counts


def reopenable(name: str) -> str:
    """A dataset name as `open_dataset` reads it from any working folder: a path (a user's folder or
    split file) made absolute, any other name as it is."""
    path = Path(name)
    return str(path.resolve()) if path.exists() else name


def evaluate_one(spec: JobSpec, prompts: str | None, method: str, dataset: str, classes: Part,
                 progress: bool = True, epoch: int | None = None) -> dict:
    """`vlp eval`: top-1 of trained prompts (a `train_one` folder; `epoch`: the tensors it kept of that
    epoch) or of an untrained method on a dataset's test split -> the scores with the dataset, split,
    classes and checkpoint evaluated."""
    spec.check()
    if epoch is not None and not prompts:
        raise ValueError("--epoch N picks an epoch of trained prompts: pass --prompts DIR too")
    ctx = Context(spec, spec.clip(), Path("."), progress=progress)
    data = spec.open(dataset, ctx.clip, ("test",) if classes == "all" else ("train", "test"))
    if classes == "all":  # no few-shot draw needed: every class, the whole test split
        items, names = data.split("test"), data.classnames
    else:  # CoOp's halves follow the few-shot draw of the run's shots and seed
        task = make_task(data, spec.shots[-1], spec.seeds[0], classes, spec.few_shot)
        items, names = task.test(), task.class_names()
    checkpoint = None
    if prompts:
        model = load_trained(prompts, ctx.clip, ctx.frozen_text, epoch)
        checkpoint = f"epoch {epoch}" if epoch is not None else scored_checkpoint(checkpoint_meta(prompts))
    else:
        options = ctx.untrained_options(method, "fewshot", data, spec.shots[-1])
        model = build_method(method, ctx.clip, options, ctx.frozen_text)
    return {"dataset": data.name, "split": "test", "classes": classes, "class_names": names,
            "method": model.name, "checkpoint": checkpoint, "scores": evaluate(ctx, model, data, items, names)}


def trained_defaults(prompts: str | Path) -> dict[str, Any]:
    """What a `train_one` folder was trained on (dataset, data root, preset, classes, shots, seed,
    model), for `vlp eval`'s defaults; only the model for a checkpoint without a run record. "data" is
    the name that opens the dataset again (for a user's folder, its path; "dataset" is its name)."""
    meta = checkpoint_meta(prompts)
    defaults = {"model": meta.get("clip", {}).get("model"), "pretrained": meta.get("clip", {}).get("pretrained")}
    record_path = Path(prompts) / RUN_RECORD
    if record_path.is_file():
        record = json.loads(record_path.read_text())
        defaults.update({key: record[key] for key in ("dataset", "data_root", "preset", "shots", "seed",
                                                      "class_order")})
        defaults["data"] = record.get("data", record["dataset"])  # the name that opens it again
    return defaults
