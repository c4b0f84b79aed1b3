"""Whole protocol runs: the plan of a job (its independent runs), running them here or on a launcher,
and the result folder.

Every dataset of a job is opened and checked before the first training starts. A job is a list of
`Run`s, each (method, dataset, seed, K) with its own folder that holds its checkpoint and its rows: a
job collects the rows of every finished run, skips those, and runs the others in this process or as
independent jobs of a launcher (`launchers`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from vlp_core.backbone import ClipBundle
from vlp_core.data.base import ClassificationData
from vlp_core.data.fewshot_cache import check_shots
from vlp_core.data.tasks import make_task
from vlp_core.engine.recipes import recipe_checkpoint
from vlp_core.engine.run_log import record_evaluation
from vlp_core.experiments.launchers import Launcher
from vlp_core.experiments.protocols import protocol, run_dir
from vlp_core.experiments.runs import Context
from vlp_core.experiments.spec import JobSpec
from vlp_core.files import write_text_atomically
from vlp_core.methods.registry import method_names

log = logging.getLogger("vlp")
ROWS = "rows.json"  # a protocol run's rows and what the run was, in its folder
ERROR = "error.txt"  # the traceback of a run that failed in a launcher's job


def job_datasets(spec: JobSpec) -> tuple[list[str], list[str]]:
    """(datasets trained on, datasets only tested on) of a job: its protocol's for the spec's preset,
    `spec.datasets` replacing the list the user picks (dg / xd / ood: the targets)."""
    spec.preset_entry  # an unknown preset is named with the known ones
    return protocol(spec.protocol).job_datasets(spec.preset, spec.datasets)


@dataclass(frozen=True)
class Run:
    """One independent run of a job: `method` trained (zero-shot CLIP: not) on `dataset` with `seed`
    and K = `shots`, scored on it (base2novel, fewshot) or on `targets` (dg, xd, ood)."""

    protocol: str
    method: str
    dataset: str
    seed: int
    shots: int
    targets: tuple[str, ...] = ()

    @property
    def what(self) -> str:
        """The run in words, for progress lines: "disa · shapes · seed 1"."""
        what = f"{self.method} · {self.dataset} · seed {self.seed}"
        return f"{what} · {self.shots} shots" if protocol(self.protocol).per_shots else what

    def folder(self, out_dir: Path) -> Path:
        """Its own folder under `out_dir`: its rows, and its checkpoint (dg / xd / ood train their
        source under runs/source/)."""
        extra = {} if self.protocol == "base2novel" else {"shots": self.shots}
        return run_dir(out_dir, self.protocol, self.method, self.dataset, self.seed, **extra)


class JobData:
    """The datasets of a job in this process, each opened (and checked) once, found by the name the job
    gives them (for a user's folder, its path) or by their own name (what a `Run` holds)."""

    def __init__(self, spec: JobSpec, clip: ClipBundle):
        self.spec, self.clip = spec, clip
        self._opened: dict[tuple[str, bool], ClassificationData] = {}

    def trained(self, name: str) -> ClassificationData:
        """A dataset trained on (train and test splits checked)."""
        return self._find(name, trained=True)

    def tested(self, name: str) -> ClassificationData:
        """A dataset only tested on (its test split; an OOD set in the ood protocol)."""
        return self._find(name, trained=False)

    def _find(self, name: str, trained: bool) -> ClassificationData:
        """The dataset the job names `name`, or else the one whose own name is `name` (opening the job's
        datasets of that role until one is), or else the dataset `name`."""
        if (name, trained) not in self._opened:
            given = job_datasets(self.spec)[0 if trained else 1]
            for other in ([name] if name in given else [*given, name]):
                data = self._opened.get((other, trained)) or self._open(other, trained)
                self._opened[other, trained] = self._opened[data.name, trained] = data
                if name in (other, data.name):
                    break
        return self._opened[name, trained]

    def _open(self, name: str, trained: bool) -> ClassificationData:
        if trained:
            return self.spec.open(name, self.clip)
        return self.spec.open(name, self.clip, ("test",), ood=self.spec.protocol == "ood")


def plan_job(spec: JobSpec, datasets: JobData) -> list[Run]:
    """Every run of the job in order (method, seed, dataset, K); all its datasets opened and checked
    here (their few-shot draws of the largest K too), before anything trains."""
    trained_on, tested_on = job_datasets(spec)
    shots = spec.shots if protocol(spec.protocol).per_shots else spec.shots[-1:]
    names = []
    for name in trained_on:
        data = datasets.trained(name)
        check_shots(data, max(shots), spec.sampling, data.name in spec.trainval)
        names.append(data.name)
    targets = tuple(datasets.tested(name).name for name in tested_on)
    return [Run(spec.protocol, method, name, seed, k, targets)
            for method in spec.methods or method_names() for seed in spec.seeds for name in names for k in shots]


def run_key(spec: JobSpec, clip: ClipBundle, run: Run) -> dict[str, Any]:
    """What a run's rows depend on, JSON-ready: the run, the CLIP, the run's method options and the
    settings of the spec (not the lists that choose the runs, nor the loader workers)."""
    choices = ("protocol", "methods", "datasets", "seeds", "shots", "method_options", "workers")
    settings = {key: value for key, value in asdict(spec).items() if key not in choices}
    return json.loads(json.dumps({"run": asdict(run), "clip": {"model": clip.name, "pretrained": clip.pretrained},
                                  "options": spec.method_options.get(run.method, {}), "settings": settings}))


def finished(spec: JobSpec, clip: ClipBundle, run: Run, out_dir: Path) -> dict | None:
    """The saved result of `run` (its rows and the device it ran on), if its folder holds one of
    these settings."""
    path = run.folder(out_dir) / ROWS
    if not path.is_file():
        return None
    saved = json.loads(path.read_text())
    return saved if saved["run"] == run_key(spec, clip, run) else None


def execute(ctx: Context, datasets: JobData, run: Run, label: str = "") -> list[dict]:
    """Train (or resume) and score one run in this process -> its rows, each naming the checkpoint it
    scored; saved in its folder with the run's wall time (training, or resuming, and scoring), and
    their scores added to the folder's metrics (`record_evaluation`)."""
    chosen = protocol(run.protocol)
    task = make_task(datasets.trained(run.dataset), run.shots, run.seed, chosen.part, ctx.spec.few_shot)
    targets = [datasets.tested(name) for name in run.targets]
    started = time.perf_counter()
    rows = [with_checkpoint(row) for row in chosen.run(ctx, run.method, task, targets, label)]
    folder = run.folder(ctx.out_dir)
    for row in rows:
        record_evaluation(folder, row_label(row), {k: v for k, v in row.items() if isinstance(v, float)},
                          (row["recipe"].get("train") or {}).get("epochs"), run.what)
    saved = {"run": run_key(ctx.spec, ctx.clip, run), "device": str(ctx.device),
             "seconds": round(time.perf_counter() - started, 1), "rows": rows}
    write_text_atomically(folder / ROWS, json.dumps(saved, indent=1))
    return rows


def with_checkpoint(row: dict) -> dict:
    """A result row with the checkpoint its run was scored with ("last epoch", "GPA aggregate of epochs
    1-N"; none for a method that does not train), from its recipe."""
    checkpoint = recipe_checkpoint(row["recipe"])
    return row if checkpoint is None else {**row, "checkpoint": checkpoint}


def row_label(row: dict) -> str:
    """What a row scores, in words: its dataset (ood: and the OOD set and score)."""
    return " · ".join(str(row[key]) for key in ("dataset", "ood", "score") if key in row)


@dataclass(frozen=True)
class RunTask:
    """One run in a process of its own, a launcher's task: load the job's CLIP, train (or resume)
    and score the run, save its rows; on failure its traceback goes to error.txt in its folder."""

    spec: JobSpec
    run: Run
    out_dir: str
    overwrite: bool = False
    keep_epochs: bool = False

    def __call__(self) -> None:
        out_dir = Path(self.out_dir)
        error = self.run.folder(out_dir) / ERROR
        error.unlink(missing_ok=True)
        try:
            clip = self.spec.clip()
            ctx = Context(self.spec, clip, out_dir, self.overwrite, progress=False, keep_epochs=self.keep_epochs)
            execute(ctx, JobData(self.spec, clip), self.run)
        except BaseException:
            error.parent.mkdir(parents=True, exist_ok=True)
            error.write_text(traceback.format_exc())
            raise

    def checkpoint(self, *args, **kwargs):
        """submitit, after a timeout or a preemption: requeue the run, resuming its checkpoint."""
        from submitit.helpers import DelayedSubmission

        return DelayedSubmission(dataclasses.replace(self, overwrite=False), *args, **kwargs)


class RunsFailed(RuntimeError):
    """Runs of a job failed in a launcher's jobs; the report holds the others. The message lists the
    failed runs with their errors."""

    def __init__(self, failures: dict[str, str], total: int):
        lines = "\n".join(f"  {what}: {message}" for what, message in failures.items())
        super().__init__(f"{len(failures)} of {total} runs failed (their tracebacks: {ERROR} in each run's folder); "
                         f"results.md holds the runs that finished, and the same command reruns only the "
                         f"failed ones:\n{lines}")


def run_job(spec: JobSpec, out_dir: str | Path, progress: bool = True, clip: ClipBundle | None = None,
            overwrite: bool = False, launcher: Launcher | None = None, keep_epochs: bool = False) -> list[dict]:
    """Run a protocol for every method, dataset, K and seed; write the results folder.

    A run whose folder holds its rows (same settings) is not run again. The others run one after
    the other in this process (`launcher` None; the first error stops the job), or as independent
    jobs of `launcher` (a `launchers.LocalLauncher` or `SubmititLauncher`: each job loads the CLIP
    the spec names; `RunsFailed` lists the failed runs after the report of the finished ones).
    overwrite: start every run afresh instead of resuming its checkpoint or collecting its rows.
    keep_epochs: every run keeps each epoch's learned tensors (`vlp eval --epoch N`).
    """
    spec.check()
    chosen = protocol(spec.protocol)
    out_dir = Path(out_dir)
    if launcher is not None and clip is not None:
        raise ValueError("a launcher's jobs load the CLIP that the spec names (spec.model, spec.pretrained): "
                         "pass no clip with a launcher")
    if launcher is not None and spec.device not in (None, "cpu", "cuda"):
        raise ValueError(f"each job of a launcher takes its own GPU: use --device cuda (or leave it out), not "
                         f"{spec.device!r} (limit the GPUs with CUDA_VISIBLE_DEVICES)")
    clip = clip or spec.clip("cpu" if launcher is not None else None)
    datasets = JobData(spec, clip)
    plan = plan_job(spec, datasets)
    if overwrite:  # never report the rows of the runs that these replace
        for run in plan:
            (run.folder(out_dir) / ROWS).unlink(missing_ok=True)
    pending = [run for run in plan if finished(spec, clip, run, out_dir) is None]
    if len(pending) < len(plan):
        log.info(f"{len(plan) - len(pending)} of {len(plan)} runs already finished in {out_dir}: collected")
    failures: dict[str, str] = {}
    if launcher is None:
        ctx = Context(spec, clip, out_dir, overwrite, progress, keep_epochs=keep_epochs)
        for index, run in enumerate(pending, 1):
            label = f"run {index}/{len(pending)} · {run.what}"
            log.info(label)
            execute(ctx, datasets, run, label)
    elif pending:
        failures = launcher.run([RunTask(spec, run, str(out_dir), overwrite, keep_epochs) for run in pending],
                                [run.what for run in pending])
    results = [(run, finished(spec, clip, run, out_dir)) for run in plan]
    rows = [row for _, saved in results if saved is not None for row in saved["rows"]]
    config = {"spec": asdict(spec), "model": clip.name, "pretrained": clip.pretrained,
              "device": ", ".join(sorted({saved["device"] for _, saved in results if saved is not None})),
              "launcher": launcher.describe() if launcher is not None else {"launcher": "in-process"},
              "missing_runs": [run.what for run, saved in results if saved is None],
              "run_seconds": {run.what: saved.get("seconds") for run, saved in results if saved is not None},
              "recipes": _distinct_recipes(rows)}
    chosen.write_report(rows, out_dir, config)
    if failures:
        raise RunsFailed(failures, len(plan))
    return rows


def _distinct_recipes(rows: list[dict]) -> list[dict]:
    """Each distinct recipe the rows ran, once (the rows name theirs)."""
    seen: dict[str, dict] = {}
    for row in rows:
        seen.setdefault(json.dumps(row["recipe"], sort_keys=True), row["recipe"])
    return list(seen.values())
