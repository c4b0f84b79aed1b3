"""Result tables (markdown, CSV, JSON) and plots of a protocol run."""

from __future__ import annotations

import csv
import json
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Sequence

from vlp_core.tables import markdown_table



PER_IMAGE = frozenset({"outcomes", "scores"})  # per-image values of a row: in results.json, not results.csv
COMMITTED = Path(__file__).resolve().parents[2] / "docs" / "results"  # in a clone: the runs behind docs/results.md


def harmonic_mean(base: float, novel: float) -> float:
    """HM = 2·B·N / (B + N) (0 when both are 0)."""
    return 2 * base * novel / (base + novel) if base + novel > 0 else 0.0


def aggregate(rows: Sequence[dict], keys: Sequence[str], values: Sequence[str]) -> list[dict]:
    """Mean and sample standard deviation (n - 1) over seeds of `values`, per distinct combination of
    `keys`.

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
                summary[f"{value}_std"] = statistics.stdev(numbers) if len(numbers) > 1 else 0.0
        summary["seeds"] = len(group)
        out.append(summary)
    return out


def base_to_novel_table(rows: Sequence[dict]) -> list[dict]:
    """Per (method, dataset): base, novel (seed means) and HM of those means, plus each method's
    average over datasets (HM of the averaged base and novel, as the papers report it). The spread of
    HM ("hm_std") is the sample SD over seeds of each seed's HM (of the seed's dataset averages in the
    average row)."""
    table = aggregate(rows, ["method", "dataset"], ["base", "novel"])
    for row in table:
        row["hm"] = harmonic_mean(row["base"], row["novel"])
        row["hm_std"] = _sd([harmonic_mean(r["base"], r["novel"]) for r in rows
                            if (r["method"], r["dataset"]) == (row["method"], row["dataset"])])
    by_method: dict[str, list[dict]] = defaultdict(list)
    for row in table:
        by_method[row["method"]].append(row)
    for method, group in by_method.items():
        if len(group) > 1:
            datasets = [r["dataset"] for r in group]
            per_seed = defaultdict(list)
            for r in rows:
                if r["method"] == method and r["dataset"] in datasets:
                    per_seed[r["seed"]].append(r)
            whole = [seed_rows for seed_rows in per_seed.values() if len(seed_rows) == len(datasets)]
            seed_base = [statistics.fmean(r["base"] for r in seed_rows) for seed_rows in whole]
            seed_novel = [statistics.fmean(r["novel"] for r in seed_rows) for seed_rows in whole]
            base = statistics.fmean(r["base"] for r in group)
            novel = statistics.fmean(r["novel"] for r in group)
            table.append({"method": method, "dataset": "average", "base": base, "base_std": _sd(seed_base),
                          "novel": novel, "novel_std": _sd(seed_novel), "hm": harmonic_mean(base, novel),
                          "hm_std": _sd([harmonic_mean(b, n) for b, n in zip(seed_base, seed_novel)]),
                          "seeds": group[0]["seeds"]})
    return table


def _sd(values: Sequence[float]) -> float:
    """Sample SD, 0 for fewer than two values."""
    return statistics.stdev(values) if len(values) > 1 else 0.0


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
