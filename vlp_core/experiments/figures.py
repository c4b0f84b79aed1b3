"""Figures of result rows that a reviewer can read: every compared number with its seeds drawn as
points and its mean ± sample SD as a bar or line, a y range that shows the differences, and the
model and seeds in the title."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from matplotlib.figure import Figure  # drawn without pyplot: no backend is switched for the caller

Value = Callable[[dict], float]  # a row -> the number drawn for it


def _y_range(values: Sequence[float], margin: float = 4.0) -> tuple[float, float]:
    """A range around the drawn values (percentages), padded, within 0-100."""
    low, high = min(values), max(values)
    return max(0.0, math.floor(low - margin)), min(100.0, math.ceil(high + margin))


def _seeds_note(rows: Sequence[dict]) -> str:
    seeds = sorted({r["seed"] for r in rows})
    return f"seed {seeds[0]}" if len(seeds) == 1 else f"seeds {seeds[0]}-{seeds[-1]}" if seeds == list(
        range(seeds[0], seeds[-1] + 1)) else "seeds " + ", ".join(map(str, seeds))


def subtitle(rows: Sequence[dict], model: str) -> str:
    """"synth-clip, seeds 1-3; bars: mean ± sample SD over seeds, dots: one per seed"."""
    return f"{model}, {_seeds_note(rows)}; mean ± sample SD over seeds, dots: one per seed"


def grouped_bars(rows: Sequence[dict], value: Value, groups: Sequence[str], series: Sequence[str],
                 group_of: Callable[[dict], str], series_of: Callable[[dict], str], centre: Callable[[str, str], float],
                 path: Path, title: str, ylabel: str, model: str) -> None:
    """Bars per group (x) and series (colour): height `centre(group, series)`, error bar the sample SD
    of the rows' values, and each row (one seed) a dot."""
    width = 0.8 / max(len(series), 1)
    fig = Figure(figsize=(max(6.0, 1.4 * len(groups) + 2.5), 3.8))
    ax = fig.subplots()
    drawn: list[float] = []
    for i, name in enumerate(series):
        xs, heights, errors = [], [], []
        for j, group in enumerate(groups):
            mine = [value(r) for r in rows if group_of(r) == group and series_of(r) == name]
            if not mine:
                continue
            x = j + (i - (len(series) - 1) / 2) * width
            xs.append(x)
            heights.append(centre(group, name))
            errors.append(float(np.std(mine, ddof=1)) if len(mine) > 1 else 0.0)
            ax.scatter([x] * len(mine), mine, s=8, color="black", zorder=3)
            drawn += mine + [heights[-1]]
        ax.bar(xs, heights, width, yerr=errors, capsize=2, label=name, alpha=0.85)
    ax.set_xticks(range(len(groups)), groups, rotation=15)
    if drawn:
        ax.set_ylim(*_y_range(drawn))
    ax.set_ylabel(ylabel)
    ax.set_title(f"{title}\n{subtitle(rows, model)}", fontsize=9)
    ax.legend(fontsize=7, ncols=min(3, len(series)), loc="best", framealpha=0.6)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def curves(rows: Sequence[dict], x_of: Callable[[dict], float], value: Value, series: Sequence[str],
           series_of: Callable[[dict], str], path: Path, title: str, xlabel: str, ylabel: str, model: str,
           log2: bool = False) -> None:
    """One line per series through the mean at each measured x (no x that was not run), error bars the
    sample SD over seeds, each seed a dot."""
    fig = Figure(figsize=(6.0, 3.8))
    ax = fig.subplots()
    drawn: list[float] = []
    xs_all: set[float] = set()
    for offset, name in enumerate(series):
        mine = [r for r in rows if series_of(r) == name]
        xs = sorted({x_of(r) for r in mine})
        xs_all.update(xs)
        means, errors = [], []
        for x in xs:
            values = [value(r) for r in mine if x_of(r) == x]
            means.append(float(np.mean(values)))
            errors.append(float(np.std(values, ddof=1)) if len(values) > 1 else 0.0)
            jitter = x * 2 ** (0.03 * (offset - len(series) / 2)) if log2 else x + 0.004 * (offset - len(series) / 2)
            ax.scatter([jitter] * len(values), values, s=6, color="black", alpha=0.5, zorder=3)
            drawn += values
        ax.errorbar(xs, means, yerr=errors, marker="o", capsize=3, label=name)
    if log2:
        ax.set_xscale("log", base=2)
    ticks = sorted(xs_all)
    ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
    if drawn:
        ax.set_ylim(*_y_range(drawn))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(f"{title}\n{subtitle(rows, model)}", fontsize=9)
    ax.legend(fontsize=7, loc="best", framealpha=0.6)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def roc_and_histograms(rows: Sequence[dict], pairs: Sequence[tuple[str, str]], path: Path, title: str,
                       model: str) -> None:
    """For each (method, score) of `pairs`: the ROC curve of every seed (OOD positive) with FPR95 and
    AUROC marked, and the ID-ness histograms of ID and OOD test images (all seeds)."""
    fig = Figure(figsize=(4.0 * (len(pairs) + 1), 3.8))
    axes = fig.subplots(1, len(pairs) + 1)
    roc = axes[0]
    for method, score in pairs:
        mine = [r for r in rows if r["method"] == method and r["score"] == score]
        for index, row in enumerate(sorted(mine, key=lambda r: r["seed"])):
            fpr, tpr = roc_curve(np.array(row["scores"]["id"]), np.array(row["scores"]["ood"]))
            label = (f"{method} {score}: AUROC {np.mean([r['auroc'] for r in mine]):.1f}, "
                     f"FPR95 {np.mean([r['fpr95'] for r in mine]):.1f}") if index == 0 else None
            roc.plot(fpr, tpr, alpha=0.7, label=label, color=f"C{pairs.index((method, score))}")
    roc.axhline(0.95, color="grey", linestyle=":", linewidth=1)
    roc.text(0.55, 0.9, "TPR 95 % (FPR95 is read here)", fontsize=7, color="grey")
    roc.plot([0, 1], [0, 1], color="grey", linewidth=0.8)
    roc.set_xlabel("false positive rate (OOD kept)")
    roc.set_ylabel("true positive rate (ID kept)")
    roc.legend(fontsize=6, loc="lower right")
    roc.set_title("ROC, one curve per seed", fontsize=9)
    for ax, (method, score) in zip(axes[1:], pairs):
        mine = [r for r in rows if r["method"] == method and r["score"] == score]
        id_scores = np.concatenate([r["scores"]["id"] for r in mine])
        ood_scores = np.concatenate([r["scores"]["ood"] for r in mine])
        bins = np.histogram_bin_edges(np.concatenate([id_scores, ood_scores]), bins=30)
        ax.hist(id_scores, bins=bins, alpha=0.6, density=True, label=f"ID ({len(id_scores)} scores)")
        ax.hist(ood_scores, bins=bins, alpha=0.6, density=True, label=f"OOD ({len(ood_scores)} scores)")
        ax.set_xlabel(f"{score} ID-ness score")
        ax.set_ylabel("density")
        ax.set_title(f"{method}, {score}", fontsize=9)
        ax.legend(fontsize=7)
    fig.suptitle(f"{title} ({subtitle(rows, model)})", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def roc_curve(id_scores: np.ndarray, ood_scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(FPR, TPR) at every threshold, ID positive: the fraction of OOD and of ID scores >= t, t from
    the highest score down, starting at (0, 0)."""
    thresholds = np.unique(np.concatenate([id_scores, ood_scores]))[::-1]
    tpr = np.array([0.0, *[(id_scores >= t).mean() for t in thresholds]])
    fpr = np.array([0.0, *[(ood_scores >= t).mean() for t in thresholds]])
    return fpr, tpr
