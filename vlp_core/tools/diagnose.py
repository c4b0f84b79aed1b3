"""Does prompt learning have room on this backbone and dataset? CLIP's preconditions, measured.

`vlp diagnose` answers, for any CLIP and any dataset (SynthWorld suites or CoOp-format data):
- zero-shot top-1 with the single template and with the template ensemble;
- K-shot class-mean and linear-probe top-1 of the frozen image features (CoOp sampling, several
  seeds) and the probe's gap to zero-shot, the **headroom** that prompt learning can exploit;
- where ground-truth masks exist, the pointing game of the output patch tokens (DiSa's saliency
  features) and of the value-only local features (GalLoP's) against the object's area fraction,
  the hit rate of a random patch;
- zero-shot MCM AUROC / FPR95 of in-distribution vs OOD pairs.

Notation: N images, C classes, P patches, D joint embedding size.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from torch import Tensor

from vlp_core.backbone import ClipBundle, FrozenTextFeatures, encode_image_prompted
from vlp_core.data.base import ClassificationData, Datum
from vlp_core.data.fewshot_cache import few_shot_split
from vlp_core.data.loaders import eval_transform
from vlp_core.engine.metrics import patch_coverage, pointing_hits, top1
from vlp_core.methods.ood import auroc, fpr_at_95_tpr, mcm
from vlp_core.methods.templates import IMAGENET_TEMPLATES, SINGLE_TEMPLATE
from vlp_core.tables import markdown_table

PROBE_WEIGHT_DECAYS = (1e-4, 1e-3, 1e-2, 1e-1)  # L2 strengths searched on the few-shot val split


@dataclass
class Features:
    """Frozen features of a list of items: unit pooled (N, D), labels (N,), and with `dense`,
    unit output patch tokens and value-only local features (N, P, D) and object coverage (N, P)."""

    pooled: Tensor
    labels: Tensor
    patches: Tensor | None = None
    local: Tensor | None = None
    coverage: Tensor | None = None


@torch.no_grad()
def encode_items(clip: ClipBundle, data: ClassificationData, items: Sequence[Datum], dense: bool = False,
                 batch_size: int = 128) -> Features:
    """Encode `items` with the frozen image tower (test transform); `dense` also keeps the patch
    features and each image's object coverage per patch (the dataset must have masks)."""
    mean, std = clip.image_mean_std
    transform = eval_transform(clip.image_size, mean, std)
    device = clip.model.logit_scale.device
    grid = clip.model.visual.grid_size[0]
    pooled, patches, local, coverage = [], [], [], []
    for start in range(0, len(items), batch_size):
        chunk = items[start : start + batch_size]
        images = torch.stack([transform(data.load_image(item)) for item in chunk]).to(device)
        out = encode_image_prompted(clip.model, images, patches=dense, local=dense)
        pooled.append(F.normalize(out.pooled.float(), dim=-1).cpu())
        if dense:
            patches.append(F.normalize(out.patches.float(), dim=-1).cpu())
            local.append(F.normalize(out.local.float(), dim=-1).cpu())
            coverage += [patch_coverage(data.load_mask(item), grid) for item in chunk]
    labels = torch.tensor([item.label for item in items])
    if not dense:
        return Features(torch.cat(pooled), labels)
    return Features(torch.cat(pooled), labels, torch.cat(patches), torch.cat(local), torch.stack(coverage))


def class_mean_accuracy(train: Features, test: Features, num_classes: int) -> float:
    """Top-1 (%) of the nearest class mean (cosine) of the training features."""
    means = torch.zeros(num_classes, train.pooled.shape[1]).index_add_(0, train.labels, train.pooled)
    return top1(test.pooled @ F.normalize(means, dim=-1).T, test.labels)


def fit_linear_probe(features: Tensor, labels: Tensor, num_classes: int, weight_decay: float,
                     steps: int = 200) -> tuple[Tensor, Tensor]:
    """Multinomial logistic regression (L2 `weight_decay` on the weights) by full-batch L-BFGS.

    features (N, D), labels (N,) -> weight (C, D), bias (C,).
    """
    weight = torch.zeros(num_classes, features.shape[1], dtype=features.dtype, requires_grad=True)
    bias = torch.zeros(num_classes, dtype=features.dtype, requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], lr=1.0, max_iter=steps, line_search_fn="strong_wolfe")

    def closure() -> Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(features @ weight.T + bias, labels) + weight_decay * weight.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    return weight.detach(), bias.detach()


def linear_probe_accuracy(train: Features, val: Features, test: Features, num_classes: int) -> float:
    """Top-1 (%) of a linear probe whose L2 strength is chosen on `val` (CoOp's linear-probe practice:
    the strength is searched on the few-shot validation split, then the probe is scored on test)."""
    def score(weight_decay: float, on: Features) -> float:
        weight, bias = fit_linear_probe(train.pooled, train.labels, num_classes, weight_decay)
        return top1(on.pooled @ weight.T + bias, on.labels)

    best = max(PROBE_WEIGHT_DECAYS, key=lambda wd: score(wd, val)) if len(val.labels) else PROBE_WEIGHT_DECAYS[1]
    return score(best, test)


def pointing(maps: Tensor, labels: Tensor, coverage: Tensor) -> float:
    """Pointing-game hit rate (%): does the patch most similar to the true class touch the object?

    maps (N, P, C) patch-to-class cosines, labels (N,), coverage (N, P)."""
    rows = torch.arange(len(labels))
    return 100.0 * pointing_hits(maps[rows, :, labels], coverage).float().mean().item()


def diagnose_dataset(clip: ClipBundle, data: ClassificationData, text: FrozenTextFeatures, shots: int = 16,
                     seeds: Sequence[int] = (1, 2, 3), n_test: int | None = None) -> dict:
    """Every measure of the module docstring for one dataset (accuracies in %), as a flat dict."""
    test_items = data.split("test")[:n_test]
    dense = data.load_mask(test_items[0]) is not None
    test = encode_items(clip, data, test_items, dense=dense)
    classes = data.classnames
    single = text(classes, (SINGLE_TEMPLATE,))
    row = {"dataset": data.name, "classes": len(classes), "chance": 100.0 / len(classes), "test_images": len(test_items),
           "zero_shot": top1(test.pooled @ single.T, test.labels),
           "zero_shot_ensemble": top1(test.pooled @ text(classes, IMAGENET_TEMPLATES).T, test.labels)}
    class_means, probes = [], []
    for seed in seeds:
        train_items, val_items = few_shot_split(data, shots, seed, cache_dir=None)
        train = encode_items(clip, data, train_items)
        val = encode_items(clip, data, val_items)
        class_means.append(class_mean_accuracy(train, test, len(classes)))
        probes.append(linear_probe_accuracy(train, val, test, len(classes)))
    for name, values in (("class_mean", class_means), ("linear_probe", probes)):
        row[name] = statistics.fmean(values)
        row[f"{name}_std"] = statistics.stdev(values) if len(values) > 1 else 0.0
    row["headroom"] = row["linear_probe"] - row["zero_shot"]
    if dense:
        row["pointing_patches"] = pointing(test.patches @ single.T, test.labels, test.coverage)
        row["pointing_local"] = pointing(test.local @ single.T, test.labels, test.coverage)
        row["object_area"] = 100.0 * (test.coverage > 0).float().mean().item()
    return row


def id_ness_mcm(clip: ClipBundle, data: ClassificationData, class_names: Sequence[str], text: FrozenTextFeatures,
                n_test: int | None = None) -> Tensor:
    """Zero-shot MCM (T = 1, single template) of `data`'s test images against `class_names` -> (N,)."""
    features = encode_items(clip, data, data.split("test")[:n_test])
    return mcm(features.pooled @ text(class_names, (SINGLE_TEMPLATE,)).T)


def diagnose_ood(clip: ClipBundle, id_data: ClassificationData, ood_data: ClassificationData,
                 text: FrozenTextFeatures, n_test: int | None = None) -> dict:
    """Zero-shot MCM detection of `ood_data` among `id_data`'s test images (AUROC, FPR95 in %)."""
    id_scores = id_ness_mcm(clip, id_data, id_data.classnames, text, n_test)
    ood_scores = id_ness_mcm(clip, ood_data, id_data.classnames, text, n_test)
    return {"id": id_data.name, "ood": ood_data.name, "score": "mcm",
            "auroc": 100 * auroc(id_scores, ood_scores), "fpr95": 100 * fpr_at_95_tpr(id_scores, ood_scores)}


def diagnose(clip: ClipBundle, datasets: Sequence[ClassificationData],
             ood_pairs: Sequence[tuple[ClassificationData, ClassificationData]] = (), shots: int = 16,
             seeds: Sequence[int] = (1, 2, 3), n_test: int | None = None) -> dict:
    """{"model", "pretrained", "shots", "seeds", "datasets": [row per dataset], "ood": [row per pair]}."""
    text = FrozenTextFeatures(clip.model, clip.tokenizer)
    return {
        "model": clip.name, "pretrained": clip.pretrained, "shots": shots, "seeds": list(seeds),
        "datasets": [diagnose_dataset(clip, data, text, shots, seeds, n_test) for data in datasets],
        "ood": [diagnose_ood(clip, id_data, ood_data, text, n_test) for id_data, ood_data in ood_pairs],
    }


DATASET_COLUMNS = ["dataset", "classes", "chance", "zero_shot", "zero_shot_ensemble", "class_mean",
                   "linear_probe", "headroom", "pointing_patches", "pointing_local", "object_area"]


def diagnosis_markdown(report: dict) -> str:
    """The report as markdown: one table of datasets, one of OOD pairs, and what the columns mean."""
    rows = report["datasets"]
    text = (f"# Diagnosis of `{report['model']}` ({report['pretrained'] or 'random init'})\n\n"
            f"Top-1 % on each test split. Class mean and linear probe: {report['shots']}-shot frozen image "
            f"features, mean ± std over seeds {report['seeds']}; headroom = linear probe - zero-shot "
            f"(single template \"{SINGLE_TEMPLATE}\"). Pointing: % of images whose patch most similar to the "
            "true class's text touches the object (output patch tokens; value-only local features); object "
            "area: % of patches touching the object, the hit rate of a random patch.\n\n")
    columns = [c for c in DATASET_COLUMNS if any(c in r for r in rows)]
    text += markdown_table(rows, columns) + "\n"
    if len(rows) > 1:
        mean = statistics.fmean(r["headroom"] for r in rows)
        text += f"\nMean headroom over the datasets: {mean:+.1f} points.\n"
    if report["ood"]:
        text += "\n## Zero-shot OOD detection (MCM, T = 1)\n\n"
        text += markdown_table(report["ood"], ["id", "ood", "score", "auroc", "fpr95"]) + "\n"
    return text


def headroom_plot(report: dict, path: Path) -> None:
    """Bars per dataset: zero-shot, class mean and linear probe (with the seed spread)."""
    rows = report["datasets"]
    series = (("zero_shot", "zero-shot"), ("class_mean", "class mean"), ("linear_probe", "linear probe"))
    fig = Figure(figsize=(max(5, 1.2 * len(rows) + 2), 3.5))
    ax = fig.subplots()
    width = 0.8 / len(series)
    for i, (key, label) in enumerate(series):
        ax.bar([j + i * width for j in range(len(rows))], [r[key] for r in rows], width,
               yerr=[r.get(f"{key}_std", 0.0) for r in rows], capsize=2, label=label)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(rows))], [r["dataset"] for r in rows], rotation=20)
    ax.set_ylabel("top-1 (%)")
    ax.set_title(f"{report['model']}: zero-shot vs {report['shots']}-shot frozen features")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def write_diagnosis(report: dict, out_dir: str | Path) -> Path:
    """diagnosis.md, diagnosis.json and headroom.png in `out_dir`; returns the markdown path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "diagnosis.json").write_text(json.dumps(report, indent=2))
    headroom_plot(report, out_dir / "headroom.png")
    path = out_dir / "diagnosis.md"
    path.write_text(diagnosis_markdown(report))
    return path
