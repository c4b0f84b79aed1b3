"""What a job will cost, before it runs (`vlp train --dry-run`, `vlp protocol --dry-run`).

Every run of the job is planned as it would run (the same plan, tasks and recipes); nothing is trained
or written (a few-shot draw not kept yet is drawn without writing it). Each distinct (method, dataset,
classes, K, recipe) is measured on the job's device and precision:
- `MEASURED_STEPS` real training steps (loading the batch, forward, backward, update) after
  `WARMUP_STEPS` untimed ones: their median is the time of a step (one step slowed by other work on
  the machine does not move it);
- the per-run constants (PromptSRC's teacher text, the frozen pass of DiSa's class prototypes over the
  training images) twice on one image per class, and scoring `SCORED_IMAGES` test images twice: each
  second pass gives the time per image, the difference of the two passes the one-off cost (encoding
  the class texts, cached after the first);
- peak memory: on CUDA the peak of allocated tensors while it is measured, on the CPU the process's
  peak resident memory (the model included).
A run's time is epochs x steps per epoch x the step, plus the constants (their one-off cost and their
pass over the training images), plus each evaluation (its one-off cost and its test images); the
job's is the sum of its runs', after the start-up measured here (loading the model, opening the data). On CUDA,
a batch that runs out of memory is halved until one fits, and the estimate is made at that batch.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import resource
import statistics
import time
from dataclasses import dataclass
from typing import Iterator, Sequence

import torch

from vlp_core.data.base import ClassificationData
from vlp_core.data.loaders import item_seed, start_epoch
from vlp_core.data.tasks import Task, make_task
from vlp_core.engine import distributed
from vlp_core.engine.recipes import Recipe
from vlp_core.engine.trainer import autocast, epoch_seed, prepare_constants, train_step
from vlp_core.experiments.jobs import JobData, Run, plan_job
from vlp_core.experiments.protocols import protocol
from vlp_core.experiments.results import recipe_table
from vlp_core.experiments.runs import Context, correct
from vlp_core.experiments.spec import JobSpec
from vlp_core.methods.base import PromptMethod
from vlp_core.methods.registry import build_method
from vlp_core.tables import duration, markdown_table

WARMUP_STEPS = 1
MEASURED_STEPS = 3
SCORED_IMAGES = 32  # test images of each timed scoring pass


@dataclass(frozen=True)
class Measured:
    """What one (method, dataset, classes, K, recipe) costs on the job's device."""

    step_seconds: float  # one training step (0 for a method that does not train)
    constants_setup_seconds: float  # the one-off cost of the per-run constants
    constants_seconds_per_image: float  # their frozen pass over the training images
    scoring_setup_seconds: float  # the one-off cost of an evaluation
    scoring_seconds_per_image: float
    peak_memory_mb: float
    batch_size: int | None  # the batch measured: the recipe's, or on CUDA the largest that fits
    asked_batch_size: int | None


@dataclass(frozen=True)
class RunEstimate:
    """One run of the job: its recipe, its steps and evaluations, and the measured costs they scale."""

    run: Run
    recipe: dict  # `Recipe.as_dict()`
    epochs: int  # 0 for a method that does not train
    steps_per_epoch: int
    train_images: int
    evaluated: tuple[int, ...]  # test images of each evaluation
    measured: Measured

    @property
    def train_seconds(self) -> float:
        """Epochs x steps x the step, plus the per-run constants (one-off, and over the training images)."""
        if not self.epochs:
            return 0.0
        measured = self.measured
        return (self.epochs * self.steps_per_epoch * measured.step_seconds + measured.constants_setup_seconds
                + self.train_images * measured.constants_seconds_per_image)

    @property
    def scoring_seconds(self) -> float:
        """Each evaluation: its one-off cost and its test images."""
        measured = self.measured
        return sum(measured.scoring_setup_seconds + n * measured.scoring_seconds_per_image for n in self.evaluated)

    @property
    def seconds(self) -> float:
        return self.train_seconds + self.scoring_seconds


@dataclass(frozen=True)
class JobEstimate:
    """Every run of a job, estimated; the job's time is the sum of its runs'."""

    runs: tuple[RunEstimate, ...]
    device: str
    startup_seconds: float  # loading the model and opening the data, once per process

    @property
    def seconds(self) -> float:
        """The sum of the runs' times (the start-up apart)."""
        return sum(run.seconds for run in self.runs)

    @property
    def peak_memory_mb(self) -> float:
        return max(run.measured.peak_memory_mb for run in self.runs)


class _Measurements:
    """Measurements of a job in this process, each (method, dataset, classes, K, recipe) measured once."""

    def __init__(self, ctx: Context):
        self.ctx = ctx
        self._done: dict[str, Measured] = {}

    def estimate(self, run: Run, task: Task, targets: Sequence[ClassificationData]) -> RunEstimate:
        """`run` on `task` (and `targets`, only scored), measured or taken from a measured twin."""
        settings = self.ctx.settings(run.method, run.protocol, task)
        if self.ctx.spec.source_prompts:  # dg / xd / ood with --prompts: the sources are loaded, not trained
            settings = dataclasses.replace(settings, train=None)
        recipe = settings.as_dict()
        key = json.dumps([recipe, task.part], sort_keys=True)
        if key not in self._done:
            self._done[key] = measure(self.ctx, settings, task)
        measured = self._done[key]
        evaluated = [len(task.test(part)) for part in (("base", "novel") if task.part == "base" else (task.part,))]
        evaluated += [len(target.split("test")) for target in targets]
        epochs = settings.train.epochs if settings.train else 0
        steps = math.ceil(len(task.train) / measured.batch_size) if epochs else 0
        return RunEstimate(run, recipe, epochs, steps, len(task.train), tuple(evaluated), measured)


def estimate_job(spec: JobSpec, clip=None) -> JobEstimate:
    """`vlp protocol --dry-run`: every run of `plan_job`, estimated (see the module docstring)."""
    spec.check()
    started = time.perf_counter()
    clip = clip or spec.clip()
    ctx = Context(spec, clip, out_dir=".", progress=False)
    datasets = JobData(spec, clip)
    plan = plan_job(spec, datasets)
    startup = time.perf_counter() - started
    measurements = _Measurements(ctx)
    runs = []
    for run in plan:
        task = make_task(datasets.trained(run.dataset), run.shots, run.seed, protocol(run.protocol).part,
                         spec.few_shot, keep_draw=False)
        runs.append(measurements.estimate(run, task, [datasets.tested(name) for name in run.targets]))
    return JobEstimate(tuple(runs), str(ctx.device), startup)


def estimate_train(spec: JobSpec, method: str, dataset: str, classes: str) -> JobEstimate:
    """`vlp train --dry-run`: the one run `train_one` would make, estimated."""
    spec.check()
    started = time.perf_counter()
    ctx = Context(spec, spec.clip(), out_dir=".", progress=False)
    data = spec.open(dataset, ctx.clip)
    startup = time.perf_counter() - started
    task = make_task(data, spec.shots[-1], spec.seeds[0], classes, spec.few_shot, keep_draw=False)
    run = Run(spec.protocol, method, task.name, task.seed, task.shots)
    return JobEstimate((_Measurements(ctx).estimate(run, task, ()),), str(ctx.device), startup)


# ------------------------------------------------------------------------------------- measuring


def measure(ctx: Context, settings: Recipe, task: Task) -> Measured:
    """The costs of a run of `settings` on `task` (see the module docstring)."""
    device = ctx.device
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    method = _built(ctx, settings, task)
    step, constants, batch, asked = 0.0, (0.0, 0.0), None, None
    if settings.train is not None:
        first = list({item.label: item for item in reversed(task.train)}.values())  # one image per class
        loader = ctx.loader(task.data, first, ctx.eval_batch_size)
        constants = _twice(lambda: prepare_constants(method, loader), len(first), device)
        asked = settings.train.batch_size
        step, batch = _step_seconds(ctx, settings, task, method, asked)
    items = task.test()[:SCORED_IMAGES]
    scoring = _twice(lambda: correct(ctx, method, task.data, items, task.class_names()), len(items), device)
    return Measured(step, *constants, *scoring, _peak_memory_mb(device), batch, asked)


def _built(ctx: Context, settings: Recipe, task: Task) -> PromptMethod:
    """The method of `settings` as `fit` builds it, on `task`'s classes."""
    options = dict(settings.options)
    if settings.train is not None:
        options.setdefault("seed", task.seed)
    method = build_method(settings.method, ctx.clip, options, ctx.frozen_text)
    method.set_classes(task.class_names())
    return method


def _seconds(work, device: torch.device) -> float:
    """Wall seconds of `work()`, the device's queue drained before and after."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    started = time.perf_counter()
    work()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - started


def _twice(work, items: int, device: torch.device) -> tuple[float, float]:
    """(one-off seconds, seconds per item) of `work()` over `items` items: run twice, the first run pays
    what is cached after it."""
    first, second = _seconds(work, device), _seconds(work, device)
    return max(0.0, first - second), second / items


def _batches(loader, seed: int) -> Iterator[tuple]:
    """(images, labels, draw seeds, share) of the training loader's steps, epoch after epoch."""
    for epoch in itertools.count():
        steps = start_epoch(loader, epoch_seed(seed, epoch))
        for (images, labels), (indices, share) in zip(loader, steps):
            yield images, labels, [item_seed(epoch_seed(seed, epoch), i, "draws") for i in indices], share


def _step_seconds(ctx: Context, settings: Recipe, task: Task, method: PromptMethod, batch: int) -> tuple[float, int]:
    """(median seconds of `MEASURED_STEPS` training steps after `WARMUP_STEPS`, the batch they ran at):
    the recipe's batch, halved on CUDA until it fits in memory."""
    while True:
        try:
            return _timed_steps(ctx, settings, task, method, batch), batch
        except torch.cuda.OutOfMemoryError:
            if batch == 1:
                raise ValueError(f"{settings.method} on {task.name} does not fit in the memory of {ctx.device} even "
                                 f"at batch 1") from None
            method.zero_grad(set_to_none=True)
            torch.cuda.empty_cache()
            batch //= 2


def _timed_steps(ctx: Context, settings: Recipe, task: Task, method: PromptMethod, batch: int) -> float:
    """Median seconds of `MEASURED_STEPS` training steps at `batch` (each: loading its batch, forward,
    backward, update), after `WARMUP_STEPS` untimed ones."""
    config = settings.train
    loader = ctx.loader(task.data, task.train, batch, config.crop_scale, task.seed)
    optimizer = torch.optim.SGD([p for p in method.parameters() if p.requires_grad], lr=config.lr,
                                momentum=config.momentum, weight_decay=config.weight_decay)
    step_context, scaler = autocast(config.precision, ctx.device)
    loss_of = distributed.loss_function(method)
    batches = _batches(loader, task.seed)
    method.train()

    def step() -> None:
        images, labels, seeds, share = next(batches)
        train_step(method, optimizer, loss_of, step_context, scaler, images, labels, seeds, share)

    for _ in range(WARMUP_STEPS):
        step()
    return statistics.median(_seconds(step, ctx.device) for _ in range(MEASURED_STEPS))


def _peak_memory_mb(device: torch.device) -> float:
    """CUDA: the peak of allocated tensors since the measurement began; CPU: the process's peak resident
    memory (ru_maxrss, KiB on Linux)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ------------------------------------------------------------------------------------- rendering


def render_estimate(estimate: JobEstimate) -> str:
    """The dry run's report: a line per run, the batches halved to fit, the whole job, the recipes."""
    memory = "peak allocated CUDA memory" if estimate.device.startswith("cuda") else \
        "peak resident memory of the process"
    table = [{"run": r.run.what, "epochs x steps": f"{r.epochs} x {r.steps_per_epoch}" if r.epochs else "-",
              "batch": str(r.measured.batch_size or "-"),
              "step (s)": f"{r.measured.step_seconds:.3f}" if r.epochs else "-",
              "memory (MB)": f"{r.measured.peak_memory_mb:.0f}", "training": duration(r.train_seconds),
              "scoring": f"{duration(r.scoring_seconds)} ({sum(r.evaluated)} images)", "total": duration(r.seconds)}
             for r in estimate.runs]
    lines = [f"Dry run on {estimate.device}: nothing is trained or written. Each distinct run was timed on "
             f"{MEASURED_STEPS} training steps after {WARMUP_STEPS} warm-up and on up to {SCORED_IMAGES} test images "
             f"scored twice; memory is the {memory}.", "",
             markdown_table(table, list(table[0])), ""]
    halved = {(r.run.method, r.run.dataset, r.measured.asked_batch_size, r.measured.batch_size) for r in estimate.runs
              if r.measured.batch_size != r.measured.asked_batch_size}
    for method, dataset, asked, fits in sorted(halved):
        lines.append(f"{method} on {dataset}: batch {asked} does not fit in the memory of {estimate.device}; batch "
                     f"{fits} fits, and its times are for batch {fits}. To keep batch {asked}, train it over "
                     f"{asked // fits} GPUs (torchrun: the batch is split over the processes); under the synth rule, "
                     f"--rule batch_size={fits} trains at the batch that fits.")
    lines.append(f"The whole job: {len(estimate.runs)} run{'s' if len(estimate.runs) != 1 else ''}, "
                 f"{duration(estimate.seconds)} (the sum of its runs) after {duration(estimate.startup_seconds)} of "
                 f"start-up (loading the model, opening the data); peak memory {estimate.peak_memory_mb:.0f} MB.")
    recipes = list({json.dumps(r.recipe, sort_keys=True): r.recipe for r in estimate.runs}.values())
    lines += ["", "Recipes:", "", recipe_table(recipes)]
    return "\n".join(lines)
