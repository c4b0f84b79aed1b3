"""Whole protocol runs: presets, the plan of a job (its independent runs), running them here or on a
launcher, one-off training and evaluation, and the result folder.

A preset names the backbone, the recipe rule and the datasets of a paper configuration (ViT-B/16 on
the CoOp benchmark) or of its SynthWorld analogue (CPU, minutes). Device, precision and workers are
chosen once (`JobSpec`) and passed down. Every dataset of a job is opened and checked before the
first training starts. A job is a list of `Run`s, each (method, dataset, seed, K) with its own folder
that holds its checkpoint and its rows: a job collects the rows of every finished run, skips those,
and runs the others in this process or as independent jobs of a launcher (`launchers`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from vlp_core.backbone import ClipBundle, load_clip
from vlp_core.data.base import ClassificationData, in_class_order, relabel
from vlp_core.data.fewshot import base_novel_labels
from vlp_core.engine import distributed, protocols, results
from vlp_core.engine.launchers import Launcher
from vlp_core.engine.protocols import Context, FewShotOptions
from vlp_core.engine.recipes import Rule
from vlp_core.engine.trainer import checkpoint_meta, load_trained, resolve_device
from vlp_core.methods.registry import build_method, method_class, method_config, method_names

log = logging.getLogger("vlp")
PROTOCOL_OF_CLASSES = {"base": "base2novel", "all": "fewshot"}  # `vlp train`'s default recipe protocol
RUN_RECORD = "run.json"  # what `train_one` trained, beside its checkpoint
ROWS = "rows.json"  # a protocol run's rows and what the run was, in its folder
ERROR = "error.txt"  # the traceback of a run that failed in a launcher's job


@dataclass(frozen=True)
class Preset:
    """Backbone, recipe rule and datasets of one paper configuration."""

    model: str
    pretrained: str | None
    rule: Rule
    crop_scale: tuple[float, float]
    base_to_novel: tuple[str, ...]
    few_shot: tuple[str, ...]
    transfer_source: str
    domain_targets: tuple[str, ...]
    cross_targets: tuple[str, ...]
    ood_sets: tuple[str, ...]
    real_data: bool


COOP_DATASETS = ("ImageNet", "Caltech101", "OxfordPets", "StanfordCars", "Flowers102", "Food101",
                 "FGVCAircraft", "SUN397", "DTD", "EuroSAT", "UCF101")

PRESETS: dict[str, Preset] = {
    "synth": Preset(
        model="synth-clip", pretrained=None, rule="synth", crop_scale=(0.5, 1.0),
        base_to_novel=("shapes", "colour_shapes", "patterns", "scenes"), few_shot=("shapes",),
        transfer_source="shapes",
        domain_targets=("shapes@sketch", "shapes@noisy", "shapes@pixelated", "shapes@painted"),
        cross_targets=("colour_shapes", "patterns", "scenes"),
        ood_sets=("ood",), real_data=False),
    "vitb16": Preset(
        model="ViT-B-16-quickgelu", pretrained="openai", rule="paper", crop_scale=(0.08, 1.0),
        base_to_novel=COOP_DATASETS, few_shot=COOP_DATASETS, transfer_source="ImageNet",
        domain_targets=("ImageNet-V2", "ImageNet-Sketch", "ImageNet-A", "ImageNet-R"),
        cross_targets=COOP_DATASETS[1:],
        ood_sets=("iNaturalist", "SUN", "Places", "Textures"), real_data=True),
}


@dataclass
class JobSpec:
    """Everything that determines a protocol run (written to config.json)."""

    protocol: str  # base2novel | fewshot | dg | xd | ood
    methods: list[str] | None = None  # default: every method
    preset: str = "synth"
    datasets: list[str] | None = None  # default: the preset's
    seeds: list[int] = field(default_factory=lambda: [1, 2, 3])
    shots: list[int] = field(default_factory=lambda: [16])
    model: str | None = None  # override the preset's backbone
    pretrained: str | None = None
    data_root: str | None = None
    method_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    epochs: int | None = None  # override the recipe's epochs (e.g. quick checks)
    device: str | None = None  # None: cuda when available, else cpu
    precision: str | None = None  # None: the recipe's (fp16) on CUDA, fp32 on the CPU
    workers: int = 0  # image-decoding processes per loader
    sampling: str = "per_class"  # per_class (CoOp) | stratified_total (GalLoP's scripts)
    trainval: list[str] = field(default_factory=list)  # datasets trained on train + val (GalLoP: FGVCAircraft)
    class_order: str = "label"  # label (CoOp) | first_appearance (GalLoP's scripts)
    fpr95_rule: str = "threshold"  # threshold | closest (GalLoP's and MCM's code)
    source_prompts: str | None = None  # dg / xd / ood: a folder with the trained sources


def preset_of(spec: JobSpec) -> Preset:
    """The spec's preset; a ValueError names the known ones."""
    if spec.preset not in PRESETS:
        raise ValueError(f"unknown preset {spec.preset!r}; choose from {', '.join(PRESETS)}")
    return PRESETS[spec.preset]


def check_spec(spec: JobSpec) -> None:
    """Refuse a job with an unknown preset, protocol or method, or a method option that its method
    does not have or that has the wrong type, before anything is loaded."""
    job_datasets(spec)
    for method in spec.methods or []:
        method_class(method)
    for method, options in spec.method_options.items():
        method_config(method, options)


def job_datasets(spec: JobSpec) -> tuple[list[str], list[str]]:
    """(datasets trained on, datasets only tested on) of a job.

    base2novel / fewshot train on each of `spec.datasets` (default: the preset's lists); dg / xd / ood
    train on the preset's source and test on `spec.datasets` (default: its domain targets, cross-dataset
    targets or OOD sets)."""
    preset = preset_of(spec)
    if spec.protocol in ("base2novel", "fewshot"):
        default = preset.base_to_novel if spec.protocol == "base2novel" else preset.few_shot
        return list(spec.datasets or default), []
    defaults = {"dg": preset.domain_targets, "xd": preset.cross_targets, "ood": preset.ood_sets}
    if spec.protocol not in defaults:
        raise ValueError(f"unknown protocol {spec.protocol!r}; choose from base2novel, fewshot, dg, xd, ood")
    return [preset.transfer_source], list(spec.datasets or defaults[spec.protocol])


def open_dataset(name: str, spec: JobSpec, clip: ClipBundle, splits: tuple[str, ...] = ("train", "test"),
                 ood: bool = False) -> ClassificationData:
    """A SynthWorld suite (or `drawn_shapes`), or with a data root (or a real-data preset) a CoOp-format
    dataset (`ood`: an OOD set), checked for `splits`, in the spec's class order."""
    if spec.data_root is None and not preset_of(spec).real_data:
        from vlp_core.data.drawn import DrawnShapes
        from vlp_core.data.synthworld import get_suite

        data = DrawnShapes() if name == DrawnShapes.name else get_suite(name, image_size=clip.image_size)
        return in_class_order(data, spec.class_order)
    if spec.data_root is None:
        raise ValueError(f"preset {spec.preset!r} reads real datasets: pass --data-root /path/to/datasets")
    from vlp_core.data.coop import get_dataset, get_ood_set

    data = (get_ood_set if ood else get_dataset)(name, spec.data_root)
    data.check(splits)
    return in_class_order(data, spec.class_order)


def _context(spec: JobSpec, clip: ClipBundle, out_dir: Path, progress: bool, overwrite: bool = False) -> Context:
    preset = preset_of(spec)
    few_shot = FewShotOptions(spec.sampling, tuple(spec.trainval), spec.class_order)
    source = Path(spec.source_prompts) if spec.source_prompts else None
    return Context(clip, out_dir, preset.rule, spec.method_options, spec.epochs, spec.precision, spec.workers,
                   preset.crop_scale, few_shot, spec.fpr95_rule, source, overwrite, progress=progress)


def job_clip(spec: JobSpec, device: str | None = None) -> ClipBundle:
    """The job's CLIP on its device (or `device`): the preset's model and weights, or `spec.model`
    with `spec.pretrained`."""
    preset = preset_of(spec)
    model, pretrained = (spec.model, spec.pretrained) if spec.model else (preset.model, spec.pretrained or preset.pretrained)
    return load_clip(model, pretrained, device=resolve_device(device or spec.device))


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
        return f"{what} · {self.shots} shots" if self.protocol == "fewshot" else what

    def folder(self, out_dir: Path) -> Path:
        """Its own folder under `out_dir`: its rows, and its checkpoint (dg / xd / ood train their
        source under runs/source/)."""
        extra = {} if self.protocol == "base2novel" else {"shots": self.shots}
        return protocols.run_dir(out_dir, self.protocol, self.method, self.dataset, self.seed, **extra)


class JobData:
    """The datasets of a job in this process, each opened (and checked) once."""

    def __init__(self, spec: JobSpec, clip: ClipBundle):
        self.spec, self.clip = spec, clip
        self._opened: dict[tuple[str, bool], ClassificationData] = {}

    def trained(self, name: str) -> ClassificationData:
        """A dataset trained on (train and test splits checked)."""
        if (name, True) not in self._opened:
            self._opened[name, True] = open_dataset(name, self.spec, self.clip)
        return self._opened[name, True]

    def tested(self, name: str) -> ClassificationData:
        """A dataset only tested on (its test split; an OOD set in the ood protocol)."""
        if (name, False) not in self._opened:
            self._opened[name, False] = open_dataset(name, self.spec, self.clip, ("test",),
                                                     ood=self.spec.protocol == "ood")
        return self._opened[name, False]


def plan_job(spec: JobSpec, datasets: JobData) -> list[Run]:
    """Every run of the job in order (method, seed, dataset, K); all its datasets opened and checked
    here, before anything trains."""
    trained_on, tested_on = job_datasets(spec)
    names = [datasets.trained(name).name for name in trained_on]
    targets = tuple(datasets.tested(name).name for name in tested_on)
    shots = spec.shots if spec.protocol == "fewshot" else spec.shots[-1:]
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


def execute(spec: JobSpec, ctx: Context, datasets: JobData, run: Run, label: str = "") -> list[dict]:
    """Train (or resume) and score one run in this process -> its rows, also saved in its folder."""
    data = datasets.trained(run.dataset)
    targets = [datasets.tested(name) for name in run.targets]
    if run.protocol == "base2novel":
        rows = [protocols.base_to_novel(ctx, run.method, data, run.seed, run.shots, label)]
    elif run.protocol == "fewshot":
        rows = [protocols.few_shot(ctx, run.method, data, run.seed, run.shots, label)]
    elif run.protocol == "ood":
        rows = protocols.ood_detection(ctx, run.method, data, targets, run.seed, run.shots, label)
    else:
        rows = protocols.transfer(ctx, run.method, data, targets, run.seed, run.shots, run.protocol, label)
    folder = run.folder(ctx.out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    temporary = folder / f"{ROWS}.{os.getpid()}.tmp"
    temporary.write_text(json.dumps({"run": run_key(spec, ctx.clip, run), "device": str(ctx.device), "rows": rows},
                                    indent=1))
    temporary.replace(folder / ROWS)
    return rows


@dataclass(frozen=True)
class RunTask:
    """One run in a process of its own, a launcher's task: load the job's CLIP, train (or resume)
    and score the run, save its rows; on failure its traceback goes to error.txt in its folder."""

    spec: JobSpec
    run: Run
    out_dir: str
    overwrite: bool = False

    def __call__(self) -> None:
        out_dir = Path(self.out_dir)
        error = self.run.folder(out_dir) / ERROR
        error.unlink(missing_ok=True)
        try:
            clip = job_clip(self.spec)
            ctx = _context(self.spec, clip, out_dir, progress=False, overwrite=self.overwrite)
            execute(self.spec, ctx, JobData(self.spec, clip), self.run)
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
            overwrite: bool = False, launcher: Launcher | None = None) -> list[dict]:
    """Run a protocol for every method, dataset, K and seed; write the results folder.

    A run whose folder holds its rows (same settings) is not run again. The others run one after
    the other in this process (`launcher` None; the first error stops the job), or as independent
    jobs of `launcher` (a `launchers.LocalLauncher` or `SubmititLauncher`: each job loads the CLIP
    the spec names; `RunsFailed` lists the failed runs after the report of the finished ones).
    overwrite: start every run afresh instead of resuming its checkpoint or collecting its rows.
    """
    check_spec(spec)
    out_dir = Path(out_dir)
    if launcher is not None and clip is not None:
        raise ValueError("a launcher's jobs load the CLIP that the spec names (spec.model, spec.pretrained): "
                         "pass no clip with a launcher")
    if launcher is not None and spec.device not in (None, "cpu", "cuda"):
        raise ValueError(f"each job of a launcher takes its own GPU: use --device cuda (or leave it out), not "
                         f"{spec.device!r} (limit the GPUs with CUDA_VISIBLE_DEVICES)")
    clip = clip or job_clip(spec, "cpu" if launcher is not None else None)
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
        ctx = _context(spec, clip, out_dir, progress, overwrite)
        for index, run in enumerate(pending, 1):
            label = f"run {index}/{len(pending)} · {run.what}"
            log.info(label)
            execute(spec, ctx, datasets, run, label)
    elif pending:
        failures = launcher.run([RunTask(spec, run, str(out_dir), overwrite) for run in pending],
                                [run.what for run in pending])
    results = [(run, finished(spec, clip, run, out_dir)) for run in plan]
    rows = [row for _, saved in results if saved is not None for row in saved["rows"]]
    config = {"spec": asdict(spec), "model": clip.name, "pretrained": clip.pretrained,
              "device": ", ".join(sorted({saved["device"] for _, saved in results if saved is not None})),
              "launcher": launcher.describe() if launcher is not None else {"launcher": "in-process"},
              "missing_runs": [run.what for run, saved in results if saved is None],
              "recipes": _distinct_recipes(rows)}
    write_report(spec.protocol, rows, out_dir, config)
    if failures:
        raise RunsFailed(failures, len(plan))
    return rows


def _distinct_recipes(rows: list[dict]) -> list[dict]:
    """Each distinct recipe the rows ran, once (the rows name theirs)."""
    seen: dict[str, dict] = {}
    for row in rows:
        seen.setdefault(json.dumps(row["recipe"], sort_keys=True), row["recipe"])
    return list(seen.values())


def diagnosis_datasets(spec: JobSpec, clip: ClipBundle, names: list[str] | None, ood_pairs: list[str] | None
                       ) -> tuple[list[ClassificationData], list[tuple[ClassificationData, ClassificationData]]]:
    """The datasets and "ID:OOD" pairs `vlp diagnose` measures; SynthWorld defaults to every
    classification suite and style domain, and the pair shapes:ood."""
    synthetic = spec.data_root is None and not preset_of(spec).real_data
    if names is None:
        if not synthetic:
            raise ValueError("name the datasets to diagnose: --data Caltech101 DTD ...")
        from vlp_core.data.synthworld import CLASSIFICATION_SUITES

        names = list(CLASSIFICATION_SUITES)
    if ood_pairs is None:
        ood_pairs = ["shapes:ood"] if synthetic else []
    pairs = []
    for pair in ood_pairs:
        if pair.count(":") != 1:
            raise ValueError(f"--ood takes ID:OOD pairs such as shapes:ood, got {pair!r}")
        id_name, ood_name = pair.split(":")
        pairs.append((open_dataset(id_name, spec, clip, ("test",)), open_dataset(ood_name, spec, clip, ("test",), True)))
    return [open_dataset(name, spec, clip) for name in names], pairs


def write_report(protocol: str, rows: list[dict], out_dir: Path, config: dict) -> Path:
    """results.md with the protocol's table(s) and the recipes that ran, plus CSV/JSON rows, config
    and plots."""
    results.write_rows(out_dir, rows, config)
    spec = config["spec"]
    header = (f"# {protocol}\n\nBackbone `{config['model']}` ({config['pretrained'] or 'random init'}), "
              f"shots {spec['shots']}, seeds {spec['seeds']}; top-1 % as mean ± std over seeds "
              f"(last-epoch model).\n\n")
    if protocol == "base2novel":
        table = results.base_to_novel_table(rows)
        body = results.markdown_table(table, ["method", "dataset", "base", "novel", "hm"])
        results.bar_plot(table, "hm", out_dir / "hm_by_dataset.png", "Base-to-novel HM")
    elif protocol == "fewshot":
        table = results.aggregate(rows, ["method", "dataset", "shots"], ["acc"])
        body = results.markdown_table(table, ["method", "dataset", "shots", "acc"])
        results.curve_plot(table, "shots", "acc", out_dir / "few_shot_curve.png", "Few-shot accuracy")
    elif protocol in ("dg", "xd"):
        table = results.aggregate(rows, ["method", "dataset"], ["acc", "acc_global", "acc_local"])
        body = results.markdown_table(table, ["method", "dataset", "acc"])
        results.bar_plot(table, "acc", out_dir / "accuracy_by_dataset.png", f"{protocol}: accuracy")
    else:
        table = results.aggregate(rows, ["method", "ood", "score"], ["fpr95", "auroc"])
        body = results.markdown_table(table, ["method", "ood", "score", "fpr95", "auroc"])
        body += f"\n\nFPR95 rule: {rows[0]['fpr95_rule'] if rows else 'threshold'}."
    if any("acc_local" in r or "base_local" in r for r in rows):
        body += "\n\nGalLoP heads: " + _gallop_heads(rows)
    if config.get("missing_runs"):
        body += "\n\n**Missing runs** (failed; the same command reruns them): " + "; ".join(config["missing_runs"])
    body += "\n\n## Recipes that ran\n\n" + results.recipe_table(config["recipes"])
    path = out_dir / "results.md"
    path.write_text(header + body + "\n")
    return path


def _gallop_heads(rows: list[dict]) -> str:
    keys = [k for k in ("acc_global", "acc_local", "base_global", "base_local", "novel_global", "novel_local")
            if any(k in r for r in rows)]
    table = results.aggregate([r for r in rows if r["method"] == "gallop"], ["dataset"], keys)
    return "\n\n" + results.markdown_table(table, ["dataset", *keys])


def class_subset(ctx: Context, data: ClassificationData, which: str, shots: int, seed: int) -> list[int]:
    """Labels of `which` classes: "all", or the CoOp base / novel half."""
    if which == "all":
        return list(range(len(data.classnames)))
    if which not in ("base", "novel"):
        raise ValueError(f"classes must be all, base or novel, got {which!r}")
    base, novel = base_novel_labels(protocols.few_shot_train(ctx, data, shots, seed))
    return base if which == "base" else novel


def train_one(spec: JobSpec, method: str, dataset: str, classes: str, out_dir: str | Path,
              progress: bool = True, overwrite: bool = False) -> dict | None:
    """Train one method on one dataset (K shots of `classes`, the first seed, the recipe of
    `spec.protocol`); the checkpoint and a run record go to `out_dir`. -> test scores and what ran.

    In a distributed run every process trains; the main one alone evaluates, writes and returns
    the record (the others None)."""
    check_spec(spec)
    out_dir = Path(out_dir)
    ctx = _context(spec, job_clip(spec), out_dir, progress, overwrite)
    data = open_dataset(dataset, spec, ctx.clip)
    shots, seed = spec.shots[-1], spec.seeds[0]
    labels = class_subset(ctx, data, classes, shots, seed)
    names = [data.classnames[i] for i in labels]
    settings = ctx.settings(method, spec.protocol, data.name, shots, len(labels))
    items = relabel(protocols.few_shot_train(ctx, data, shots, seed), labels)
    model = protocols.fit_with_recipe(ctx, settings, data, items, names, seed, out_dir,
                           f"{method} · {data.name} · seed {seed}")
    if not distributed.is_main():
        return None
    scores = protocols.evaluate(ctx, model, data, relabel(data.split("test"), labels), names)
    record = {"dataset": data.name, "classes": classes, "shots": shots, "seed": seed, "preset": spec.preset,
              "data_root": spec.data_root, "class_order": spec.class_order, "recipe": settings.as_dict(),
              "test": scores}
    (out_dir / RUN_RECORD).write_text(json.dumps(record, indent=2))
    return record


def evaluate_one(spec: JobSpec, prompts: str | None, method: str, dataset: str, classes: str,
                 progress: bool = True) -> dict:
    """Top-1 of trained prompts (a `train_one` folder) or of an untrained method on a dataset's test
    split -> the scores with the dataset, split and classes evaluated."""
    check_spec(spec)
    clip = job_clip(spec)
    ctx = _context(spec, clip, Path("."), progress)
    data = open_dataset(dataset, spec, clip, ("test",) if classes == "all" else ("train", "test"))
    labels = class_subset(ctx, data, classes, spec.shots[-1], spec.seeds[0])
    if prompts:
        model = load_trained(prompts, clip, ctx.frozen_text)
    else:
        options = ctx.settings(method, "fewshot", data.name, spec.shots[-1], len(labels)).options
        model = build_method(method, clip, options, ctx.frozen_text)
    names = [data.classnames[i] for i in labels]
    scores = protocols.evaluate(ctx, model, data, relabel(data.split("test"), labels), names)
    return {"dataset": data.name, "split": "test", "classes": classes, "class_names": names,
            "method": model.name, "scores": scores}


def trained_defaults(prompts: str | Path) -> dict[str, Any]:
    """What a `train_one` folder was trained on (dataset, data root, preset, classes, shots, seed,
    model), for `vlp eval`'s defaults; only the model for a checkpoint without a run record."""
    meta = checkpoint_meta(prompts)
    defaults = {"model": meta.get("clip", {}).get("model"), "pretrained": meta.get("clip", {}).get("pretrained")}
    record_path = Path(prompts) / RUN_RECORD
    if record_path.is_file():
        record = json.loads(record_path.read_text())
        defaults.update({key: record[key] for key in ("dataset", "data_root", "preset", "shots", "seed",
                                                      "class_order")})
    return defaults


def synth_num_classes(protocol: str, dataset: str) -> int:
    """How many classes a SynthWorld run of `protocol` trains on (the synth rule's epochs need it)."""
    from vlp_core.data.synthworld import get_suite

    count = len(get_suite(dataset).classnames)
    return math.ceil(count / 2) if protocol == "base2novel" else count
