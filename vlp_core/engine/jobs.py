"""Whole protocol runs: presets, loops over methods / datasets / seeds, and the result folder.

A preset names the backbone, the training recipe and the datasets of a paper configuration
(ViT-B/16 on the CoOp benchmark) or of its SynthWorld analogue (CPU, minutes).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from vlp_core.backbone import ClipBundle, load_clip
from vlp_core.data.base import ClassificationData, relabel
from vlp_core.data.fewshot import base_novel_labels
from vlp_core.engine import protocols, results
from vlp_core.engine.registry import build_method, load_trained, paper_recipe, synth_recipe
from vlp_core.engine.protocols import Context

DEEP_METHODS = ("ivlp", "promptsrc", "disa")


@dataclass(frozen=True)
class Preset:
    """Backbone, recipe and datasets of one paper configuration."""

    model: str
    pretrained: str | None
    recipe: Callable
    crop_scale: tuple[float, float]
    base_to_novel: tuple[str, ...]
    transfer_source: str
    domain_targets: tuple[str, ...]
    cross_targets: tuple[str, ...]
    ood_sets: tuple[str, ...]
    real_data: bool


COOP_DATASETS = ("ImageNet", "Caltech101", "OxfordPets", "StanfordCars", "Flowers102", "Food101",
                 "FGVCAircraft", "SUN397", "DTD", "EuroSAT", "UCF101")

PRESETS: dict[str, Preset] = {
    "synth": Preset(
        model="synth-clip", pretrained=None, recipe=synth_recipe, crop_scale=(0.5, 1.0),
        base_to_novel=("shapes", "colour_shapes", "patterns", "scenes"),
        transfer_source="shapes",
        domain_targets=("shapes@sketch", "shapes@noisy", "shapes@pixelated", "shapes@painted"),
        cross_targets=("colour_shapes", "patterns", "scenes"),
        ood_sets=("ood",), real_data=False),
    "vitb16": Preset(
        model="ViT-B-16-quickgelu", pretrained="openai", recipe=paper_recipe, crop_scale=(0.08, 1.0),
        base_to_novel=COOP_DATASETS, transfer_source="ImageNet",
        domain_targets=("ImageNet-V2", "ImageNet-Sketch", "ImageNet-A", "ImageNet-R"),
        cross_targets=COOP_DATASETS[1:],
        ood_sets=("iNaturalist", "SUN", "Places", "Textures"), real_data=True),
}


@dataclass
class JobSpec:
    """Everything that determines a protocol run (written to config.json)."""

    protocol: str  # base2novel | fewshot | dg | xd | ood
    methods: list[str]
    preset: str = "synth"
    datasets: list[str] | None = None  # default: the preset's
    seeds: list[int] = field(default_factory=lambda: [1, 2, 3])
    shots: list[int] = field(default_factory=lambda: [16])
    model: str | None = None  # override the preset's backbone
    pretrained: str | None = None
    data_root: str | None = None
    method_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    epochs: int | None = None  # override the recipe's epochs (e.g. quick checks)


def open_dataset(name: str, spec: JobSpec, clip: ClipBundle) -> ClassificationData:
    """A SynthWorld suite, or with a data root (or a real-data preset) a CoOp-format dataset."""
    if spec.data_root is None and not PRESETS[spec.preset].real_data:
        from vlp_core.data.synthworld import get_suite

        return get_suite(name, image_size=clip.image_size)
    if spec.data_root is None:
        raise ValueError(f"preset {spec.preset!r} reads real datasets: pass --data-root /path/to/datasets")
    from vlp_core.data.coop import get_dataset

    return get_dataset(name, spec.data_root)


def _context(spec: JobSpec, clip: ClipBundle, out_dir: Path, progress: bool) -> Context:
    preset = PRESETS[spec.preset]

    def recipe(*args):
        config = preset.recipe(*args)
        return config if spec.epochs is None else replace(config, epochs=spec.epochs)

    options = dict(spec.method_options)
    if spec.protocol in ("dg", "xd"):  # DiSa / PromptSRC use prompt depth 3 for transfer (spec 3)
        for method in DEEP_METHODS:
            options[method] = {"text_depth": 3, "vision_depth": 3, **options.get(method, {})}
    return Context(clip, recipe, out_dir, options, preset.crop_scale, progress=progress)


def run_job(spec: JobSpec, out_dir: str | Path, progress: bool = True, clip: ClipBundle | None = None) -> list[dict]:
    """Run a protocol for every method, dataset, K and seed; write the results folder."""
    if spec.preset not in PRESETS:
        raise ValueError(f"unknown preset {spec.preset!r}; choose from {', '.join(PRESETS)}")
    preset = PRESETS[spec.preset]
    out_dir = Path(out_dir)
    clip = clip or load_clip(spec.model or preset.model, spec.pretrained or preset.pretrained)
    ctx = _context(spec, clip, out_dir, progress)
    rows: list[dict] = []
    for method in spec.methods:
        for seed in spec.seeds:
            rows += _run_protocol(spec, ctx, method, seed, clip)
    example = (spec.datasets or preset.base_to_novel)[0]  # the recipe shown for the first dataset
    config = {"spec": asdict(spec), "model": clip.name, "pretrained": clip.pretrained,
              "recipe": {m: asdict(ctx.recipe(m, example, spec.shots[-1], 16)) for m in spec.methods}}
    write_report(spec.protocol, rows, out_dir, config)
    return rows


def _run_protocol(spec: JobSpec, ctx: Context, method: str, seed: int, clip: ClipBundle) -> list[dict]:
    preset = PRESETS[spec.preset]
    if spec.protocol == "base2novel":
        return [protocols.base_to_novel(ctx, method, open_dataset(d, spec, clip), seed, spec.shots[-1])
                for d in spec.datasets or preset.base_to_novel]
    if spec.protocol == "fewshot":
        return [protocols.few_shot(ctx, method, open_dataset(d, spec, clip), seed, k)
                for d in spec.datasets or preset.base_to_novel[:1] for k in spec.shots]
    if spec.protocol in ("dg", "xd"):
        targets = spec.datasets or (preset.domain_targets if spec.protocol == "dg" else preset.cross_targets)
        return protocols.transfer(ctx, method, open_dataset(preset.transfer_source, spec, clip),
                                  [open_dataset(t, spec, clip) for t in targets], seed, spec.shots[-1],
                                  spec.protocol)
    if spec.protocol == "ood":
        ood_names = spec.datasets or preset.ood_sets
        return protocols.ood_detection(ctx, method, open_dataset(preset.transfer_source, spec, clip),
                                       [_open_ood(n, spec, clip) for n in ood_names], seed, spec.shots[-1])
    raise ValueError(f"unknown protocol {spec.protocol!r}; choose from base2novel, fewshot, dg, xd, ood")


def _open_ood(name: str, spec: JobSpec, clip: ClipBundle) -> ClassificationData:
    if spec.data_root is None and not PRESETS[spec.preset].real_data:
        return open_dataset(name, spec, clip)
    from vlp_core.data.coop import image_folder

    return image_folder(name, spec.data_root)


def write_report(protocol: str, rows: list[dict], out_dir: Path, config: dict) -> Path:
    """results.md with the protocol's table(s), plus CSV/JSON rows, config and plots."""
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
    if any("acc_local" in r or "base_local" in r for r in rows):
        body += "\n\nGalLoP heads: " + _gallop_heads(rows)
    path = out_dir / "results.md"
    path.write_text(header + body + "\n")
    return path


def _gallop_heads(rows: list[dict]) -> str:
    keys = [k for k in ("acc_global", "acc_local", "base_global", "base_local", "novel_global", "novel_local")
            if any(k in r for r in rows)]
    table = results.aggregate([r for r in rows if r["method"] == "gallop"], ["dataset"], keys)
    return "\n\n" + results.markdown_table(table, ["dataset", *keys])


def class_subset(data: ClassificationData, which: str, shots: int, seed: int) -> list[int]:
    """Labels of `which` classes: "all", or the CoOp base / novel half."""
    if which == "all":
        return list(range(len(data.classnames)))
    base, novel = base_novel_labels(protocols.few_shot_train(data, shots, seed))
    return base if which == "base" else novel


def train_one(spec: JobSpec, method: str, dataset: str, classes: str, out_dir: str | Path,
              progress: bool = True) -> dict:
    """Train one method on one dataset (K shots of `classes`); the checkpoint goes to `out_dir`."""
    preset = PRESETS[spec.preset]
    clip = load_clip(spec.model or preset.model, spec.pretrained or preset.pretrained)
    ctx = _context(spec, clip, Path(out_dir), progress)
    data = open_dataset(dataset, spec, clip)
    shots, seed = spec.shots[-1], spec.seeds[0]
    labels = class_subset(data, classes, shots, seed)
    items = relabel(protocols.few_shot_train(data, shots, seed), labels)
    names = [data.classnames[i] for i in labels]
    model = protocols.fit(ctx, method, data, items, names, shots, seed, Path(out_dir))
    test = relabel(data.split("test"), labels)
    return protocols.evaluate(ctx, model, data, test, names)


def evaluate_one(spec: JobSpec, prompts: str | None, method: str, dataset: str, classes: str) -> dict:
    """Top-1 of trained prompts (a `train_one` folder) or zero-shot CLIP on a dataset's test split."""
    preset = PRESETS[spec.preset]
    clip = load_clip(spec.model or preset.model, spec.pretrained or preset.pretrained)
    ctx = _context(spec, clip, Path("."), progress=False)
    data = open_dataset(dataset, spec, clip)
    model = load_trained(prompts, clip) if prompts else build_method(method, clip)
    labels = class_subset(data, classes, spec.shots[-1], spec.seeds[0])
    return protocols.evaluate(ctx, model, data, relabel(data.split("test"), labels),
                              [data.classnames[i] for i in labels])
