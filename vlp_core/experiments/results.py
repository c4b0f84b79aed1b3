"""Result tables (markdown, CSV, JSON) and plots of a protocol run."""

from __future__ import annotations

import csv
import json
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Sequence

from matplotlib.figure import Figure  # drawn without pyplot: no backend is switched for the caller


PER_IMAGE = frozenset({"outcomes", "scores"})  # per-image values of a row: in results.json, not results.csv
COMMITTED = Path(__file__).resolve().parents[2] / "docs" / "results"  # in a clone: the runs behind docs/results.md


def harmonic_mean(base: float, novel: float) -> float:
    """HM = 2·B·N / (B + N) (0 when both are 0)."""
    return 2 * base * novel / (base + novel) if base + novel > 0 else 0.0


def aggregate(rows: Sequence[dict], keys: Sequence[str], values: Sequence[str]) -> list[dict]:
    """Mean and standard deviation over seeds of `values`, per distinct combination of `keys`.

    Each output row has the keys, "<value>" (mean), "<value>_std" and "seeds" (how many).
    """
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for row in rows:
        groups[tuple(row[k] for k in keys)].append(row)
    out = []
    for group_key, group in groups.items():
        summary = dict(zip(keys, group_key))
        for value in values:
            numbers = [r[value] for r in group if value in r]
            if numbers:
                summary[value] = statistics.fmean(numbers)
                summary[f"{value}_std"] = statistics.pstdev(numbers) if len(numbers) > 1 else 0.0
        summary["seeds"] = len(group)
        out.append(summary)
    return out


def base_to_novel_table(rows: Sequence[dict]) -> list[dict]:
    """Per (method, dataset): base, novel (seed means) and HM of those means, plus each method's
    average over datasets (HM of the averages, as the papers report it)."""
    table = aggregate(rows, ["method", "dataset"], ["base", "novel"])
    for row in table:
        row["hm"] = harmonic_mean(row["base"], row["novel"])
    by_method: dict[str, list[dict]] = defaultdict(list)
    for row in table:
        by_method[row["method"]].append(row)
    for method, group in by_method.items():
        if len(group) > 1:
            base = statistics.fmean(r["base"] for r in group)
            novel = statistics.fmean(r["novel"] for r in group)
            table.append({"method": method, "dataset": "average", "base": base, "novel": novel,
                          "hm": harmonic_mean(base, novel), "seeds": group[0]["seeds"]})
    return table


def markdown_table(table: Sequence[dict], columns: Sequence[str]) -> str:
    """A markdown table; numeric columns print as "mean ± std" when a std is present."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in table:
        cells = []
        for column in columns:
            value = row.get(column, "")
            if isinstance(value, float):
                std = row.get(f"{column}_std")
                value = f"{value:.1f} ± {std:.1f}" if std else f"{value:.1f}"
            cells.append(str(value))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_rows(out_dir: Path, rows: Sequence[dict], config: dict) -> None:
    """results.json (rows + exact config), results.csv (rows without their per-image values; nested
    values as JSON) and config.json."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "results.json").write_text(json.dumps({"config": config, "rows": list(rows)}, indent=2))
    (out_dir / "config.json").write_text(json.dumps(config, indent=2))
    columns = sorted({k for row in rows for k in row} - PER_IMAGE)
    with open(out_dir / "results.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows({k: json.dumps(v) if isinstance(v, (dict, list)) else v for k, v in row.items()
                          if k not in PER_IMAGE} for row in rows)


def committed_results(name: str, root: str | Path = COMMITTED) -> tuple[list[dict], dict] | None:
    """(rows, config) of the committed results folder `<root>/<name>` as its results.json holds them,
    e.g. "base2novel" or "ablation_disa/ratio_0.1"; None where that folder holds no results.json (not
    generated yet, or an install without the repository's docs/)."""
    path = Path(root) / name / "results.json"
    if not path.is_file():
        return None
    content = json.loads(path.read_text())
    return content["rows"], content["config"]


def recipe_table(recipes: Sequence[dict]) -> str:
    """A markdown table of recipes (`Recipe.as_dict()`): key, schedule, precision and options."""
    table = []
    for r in recipes:
        train = r["train"] or {}
        options = ", ".join(f"{k}={v}" for k, v in sorted(r["options"].items()) if k != "seed")
        table.append({"method": r["method"], "dataset": r["dataset"], "shots": str(r["shots"]),
                      "epochs": str(train.get("epochs", "-")), "batch": str(train.get("batch_size", "-")),
                      "lr": str(train.get("lr", "-")), "precision": train.get("precision", "-"),
                      "options": options or "-"})
    return markdown_table(table, ["method", "dataset", "shots", "epochs", "batch", "lr", "precision", "options"])


def bar_plot(table: Sequence[dict], value: str, path: Path, title: str) -> None:
    """Grouped bars of `value` per dataset, one bar per method."""
    datasets = list(dict.fromkeys(r["dataset"] for r in table))
    methods = list(dict.fromkeys(r["method"] for r in table))
    width = 0.8 / len(methods)
    fig = Figure(figsize=(max(5, 1.3 * len(datasets) + 2), 3.5))
    ax = fig.subplots()
    for i, method in enumerate(methods):
        heights = [next((r[value] for r in table if r["method"] == method and r["dataset"] == d), 0.0)
                   for d in datasets]
        ax.bar([j + i * width for j in range(len(datasets))], heights, width, label=method)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(datasets))], datasets, rotation=20)
    ax.set_ylabel(f"{value} (%)")
    ax.set_title(title)
    ax.legend(fontsize=7, ncols=min(3, len(methods)))
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def curve_plot(table: Sequence[dict], x: str, y: str, path: Path, title: str) -> None:
    """One line per method: `y` against `x` (log2 axis), with the seed spread as error bars."""
    fig = Figure(figsize=(5, 3.5))
    ax = fig.subplots()
    for method in dict.fromkeys(r["method"] for r in table):
        points = sorted((r[x], r[y], r.get(f"{y}_std", 0.0)) for r in table if r["method"] == method)
        ax.errorbar([p[0] for p in points], [p[1] for p in points], yerr=[p[2] for p in points],
                    marker="o", capsize=3, label=method)
    ax.set_xscale("log", base=2)
    ax.set_xlabel(x)
    ax.set_ylabel(f"{y} (%)")
    ax.set_title(title)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
