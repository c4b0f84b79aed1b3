"""Whole protocol runs: presets, the plan of a job (every training, named for the progress bars),
one-off training and evaluation, and the result folder.

A preset names the backbone, the recipe rule and the datasets of a paper configuration (ViT-B/16 on
the CoOp benchmark) or of its SynthWorld analogue (CPU, minutes). Device, precision and workers are
chosen once (`JobSpec`) and passed down. Every dataset of a job is opened and checked before the
first training starts.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from vlp_core.backbone import ClipBundle, load_clip
from vlp_core.data.base import ClassificationData, in_class_order, relabel
from vlp_core.data.fewshot import base_novel_labels
from vlp_core.engine import distributed, protocols, results
from vlp_core.engine.protocols import Context, FewShotOptions
from vlp_core.engine.recipes import Rule
from vlp_core.engine.trainer import checkpoint_meta, load_trained, resolve_device
from vlp_core.methods.registry import build_method, method_class, method_config, method_names

log = logging.getLogger("vlp")
PROTOCOL_OF_CLASSES = {"base": "base2novel", "all": "fewshot"}  # `vlp train`'s default recipe protocol
RUN_RECORD = "run.json"  # what `train_one` trained, beside its checkpoint


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


def job_clip(spec: JobSpec) -> ClipBundle:
    """The job's CLIP on its device: the preset's model and weights, or `spec.model` with `spec.pretrained`."""
    preset = preset_of(spec)
    model, pretrained = (spec.model, spec.pretrained) if spec.model else (preset.model, spec.pretrained or preset.pretrained)
    return load_clip(model, pretrained, device=resolve_device(spec.device))


Plan = list[tuple[str, Callable[[str], list[dict]]]]  # (what a run is, run(label) -> rows)


def plan_job(spec: JobSpec, ctx: Context) -> Plan:
    """Every training of the job in order, each with its rows' producer; all datasets opened and
    checked here, before anything trains."""
    trained_on, tested_on = job_datasets(spec)
    opened = {name: open_dataset(name, spec, ctx.clip) for name in trained_on}
    targets = [open_dataset(name, spec, ctx.clip, ("test",), ood=spec.protocol == "ood") for name in tested_on]
    plan: Plan = []
    for method in spec.methods or method_names():
        for seed in spec.seeds:
            for name, data in opened.items():
                plan += _runs(spec, ctx, method, seed, data, targets)
    return plan


def _runs(spec: JobSpec, ctx: Context, method: str, seed: int, data: ClassificationData,
          targets: list[ClassificationData]) -> Plan:
    what = f"{method} · {data.name} · seed {seed}"
    if spec.protocol == "base2novel":
        shots = spec.shots[-1]
        return [(what, lambda label: [protocols.base_to_novel(ctx, method, data, seed, shots, label)])]
    if spec.protocol == "fewshot":
        return [(f"{what} · {k} shots", lambda label, k=k: [protocols.few_shot(ctx, method, data, seed, k, label)])
                for k in spec.shots]
    shots = spec.shots[-1]
    if spec.protocol == "ood":
        return [(what, lambda label: protocols.ood_detection(ctx, method, data, targets, seed, shots, label))]
    return [(what, lambda label: protocols.transfer(ctx, method, data, targets, seed, shots, spec.protocol, label))]


def run_job(spec: JobSpec, out_dir: str | Path, progress: bool = True, clip: ClipBundle | None = None,
            overwrite: bool = False) -> list[dict]:
    """Run a protocol for every method, dataset, K and seed; write the results folder.

    overwrite: start every run afresh instead of resuming its checkpoint."""
    check_spec(spec)
    out_dir = Path(out_dir)
    clip = clip or job_clip(spec)
    ctx = _context(spec, clip, out_dir, progress, overwrite)
    plan = plan_job(spec, ctx)
    rows: list[dict] = []
    for index, (what, run) in enumerate(plan, 1):
        label = f"run {index}/{len(plan)} · {what}"
        log.info(label)
        rows += run(label)
    config = {"spec": asdict(spec), "model": clip.name, "pretrained": clip.pretrained, "device": str(ctx.device),
              "recipes": _distinct_recipes(rows)}
    write_report(spec.protocol, rows, out_dir, config)
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
