"""A protocol's results folder: results.md with its table(s), the recipes that ran, CSV/JSON rows,
config and plots. Each protocol's report function turns its rows into the table of results.md."""

from __future__ import annotations

import re
from pathlib import Path

from vlp_core.experiments import results

HEAD_KEY = re.compile(r"^(acc|base|novel)_([a-z]+)$")  # a method's extra heads: acc_global, base_local, ...


def base_to_novel(rows: list[dict], out_dir: Path) -> str:
    table = results.base_to_novel_table(rows)
    results.bar_plot(table, "hm", out_dir / "hm_by_dataset.png", "Base-to-novel HM")
    return results.markdown_table(table, ["method", "dataset", "base", "novel", "hm"])


def few_shot(rows: list[dict], out_dir: Path) -> str:
    table = results.aggregate(rows, ["method", "dataset", "shots"], ["acc"])
    results.curve_plot(table, "shots", "acc", out_dir / "few_shot_curve.png", "Few-shot accuracy")
    return results.markdown_table(table, ["method", "dataset", "shots", "acc"])


def transfer(rows: list[dict], out_dir: Path) -> str:
    table = results.aggregate(rows, ["method", "dataset"], ["acc"])
    results.bar_plot(table, "acc", out_dir / "accuracy_by_dataset.png", "Accuracy by dataset")
    return results.markdown_table(table, ["method", "dataset", "acc"])


def ood(rows: list[dict], out_dir: Path) -> str:
    table = results.aggregate(rows, ["method", "ood", "score"], ["fpr95", "auroc"])
    body = results.markdown_table(table, ["method", "ood", "score", "fpr95", "auroc"])
    return body + f"\n\nFPR95 rule: {rows[0]['fpr95_rule'] if rows else 'threshold'}."


def head_table(rows: list[dict]) -> str:
    """The heads of methods that have several (e.g. a global and a local head), one table per
    method, or "" when no method has extra heads."""
    keys = sorted({key for row in rows for key in row if HEAD_KEY.match(key)}, key=lambda k: HEAD_KEY.match(k).groups())
    sections = []
    for method in dict.fromkeys(row["method"] for row in rows):
        mine = [row for row in rows if row["method"] == method]
        columns = [key for key in keys if any(key in row for row in mine)]
        if columns:
            table = results.aggregate(mine, ["dataset"], columns)
            sections.append(f"{method}'s heads alone:\n\n" + results.markdown_table(table, ["dataset", *columns]))
    return "\n\n".join(sections)


def write_report(title: str, body_of, rows: list[dict], out_dir: Path, config: dict) -> Path:
    """results.md (a header, the table `body_of(rows, out_dir)`, each method's extra heads, the missing
    runs and the recipes that ran), plus CSV/JSON rows, config and plots."""
    results.write_rows(out_dir, rows, config)
    spec = config["spec"]
    header = (f"# {title}\n\nBackbone `{config['model']}` ({config['pretrained'] or 'random init'}), "
              f"shots {spec['shots']}, seeds {spec['seeds']}; top-1 % as mean ± std over seeds "
              f"(last-epoch model).\n\n")
    body = body_of(rows, out_dir)
    heads = head_table(rows)
    if heads:
        body += "\n\n" + heads
    if config.get("missing_runs"):
        body += "\n\n**Missing runs** (failed; the same command reruns them): " + "; ".join(config["missing_runs"])
    body += "\n\n## Recipes that ran\n\n" + results.recipe_table(config["recipes"])
    path = out_dir / "results.md"
    path.write_text(header + body + "\n")
    return path
