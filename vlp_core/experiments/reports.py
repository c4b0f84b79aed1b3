"""A protocol's results folder: results.md with its table(s), the recipes that ran, CSV/JSON rows,
config and figures. Each protocol's report function turns its rows into the table of results.md and
draws its figure."""

from __future__ import annotations

import re
from pathlib import Path

from vlp_core.experiments import figures, results
from vlp_core.tables import markdown_table

HEAD_KEY = re.compile(r"^(acc|base|novel)_([a-z]+)$")  # a method's extra heads: acc_global, base_local, ...


def _order(rows: list[dict], key: str) -> list[str]:
    return list(dict.fromkeys(r[key] for r in rows))


def with_hm(rows: list[dict]) -> list[dict]:
    """Base-to-novel rows with each seed's HM, and per method and seed an "average" row (the means
    over its datasets, and their HM) where the seed ran every dataset of the method."""
    rows = [{**r, "hm": results.harmonic_mean(r["base"], r["novel"])} for r in rows]
    averaged = []
    for method in _order(rows, "method"):
        mine = [r for r in rows if r["method"] == method]
        datasets = _order(mine, "dataset")
        for seed in sorted({r["seed"] for r in mine}):
            seed_rows = [r for r in mine if r["seed"] == seed]
            if len(datasets) > 1 and len(seed_rows) == len(datasets):
                base = sum(r["base"] for r in seed_rows) / len(seed_rows)
                novel = sum(r["novel"] for r in seed_rows) / len(seed_rows)
                averaged.append({"method": method, "dataset": "average", "seed": seed, "base": base,
                                 "novel": novel, "hm": results.harmonic_mean(base, novel)})
    return rows + averaged


def base_to_novel(rows: list[dict], out_dir: Path, model: str) -> str:
    table = results.base_to_novel_table(rows)
    hm = {(r["dataset"], r["method"]): r["hm"] for r in table}
    drawn = with_hm(rows)
    figures.grouped_bars(drawn, lambda r: r["hm"], _order(drawn, "dataset"), _order(rows, "method"),
                         lambda r: r["dataset"], lambda r: r["method"], lambda d, m: hm[d, m],
                         out_dir / "hm_by_dataset.png", "Base-to-novel harmonic mean (HM of seed-mean base and novel)",
                         "HM (%)", model)
    return markdown_table(table, ["method", "dataset", "base", "novel", "hm"])


def few_shot(rows: list[dict], out_dir: Path, model: str) -> str:
    table = results.aggregate(rows, ["method", "dataset", "shots"], ["acc"])
    for dataset in _order(rows, "dataset"):
        mine = [r for r in rows if r["dataset"] == dataset]
        name = "few_shot_curve.png" if len(_order(rows, "dataset")) == 1 else f"few_shot_curve_{dataset}.png"
        figures.curves(mine, lambda r: r["shots"], lambda r: r["acc"], _order(mine, "method"), lambda r: r["method"],
                       out_dir / name, f"Few-shot top-1 on {dataset}", "shots per class (K)", "top-1 (%)", model,
                       log2=True)
    return markdown_table(table, ["method", "dataset", "shots", "acc"])


def transfer(rows: list[dict], out_dir: Path, model: str) -> str:
    table = results.aggregate(rows, ["method", "dataset"], ["acc"])
    means = {(r["dataset"], r["method"]): r["acc"] for r in table}
    figures.grouped_bars(rows, lambda r: r["acc"], _order(rows, "dataset"), _order(rows, "method"),
                         lambda r: r["dataset"], lambda r: r["method"], lambda d, m: means[d, m],
                         out_dir / "accuracy_by_dataset.png", "Top-1 on the source and on each target", "top-1 (%)",
                         model)
    return markdown_table(table, ["method", "dataset", "acc"])


def ood(rows: list[dict], out_dir: Path, model: str) -> str:
    table = results.aggregate(rows, ["method", "ood", "score"], ["fpr95", "auroc"])
    body = markdown_table(table, ["method", "ood", "score", "fpr95", "auroc"])
    pairs = list(dict.fromkeys((r["method"], r["score"]) for r in rows if "scores" in r
                               and (r["score"] == "mcm" or r["score"] == "gl_mcm")))
    if pairs:
        figures.roc_and_histograms(rows, pairs[:4], out_dir / "ood_scores.png", "OOD detection", model)
    return body + f"\n\nFPR95 rule: {rows[0]['fpr95_rule'] if rows else 'threshold'}."


def head_table(rows: list[dict]) -> str:
    """The heads of methods that have several (e.g. a global and a local head), one table per
    method, or "" when no method has extra heads."""
    keys = sorted({key for row in rows for key in row if HEAD_KEY.match(key)}, key=lambda k: HEAD_KEY.match(k).groups())
    sections = []
    for method in _order(rows, "method"):
        mine = [row for row in rows if row["method"] == method]
        columns = [key for key in keys if any(key in row for row in mine)]
        if columns:
            table = results.aggregate(mine, ["dataset"], columns)
            sections.append(f"{method}'s heads alone:\n\n" + markdown_table(table, ["dataset", *columns]))
    return "\n\n".join(sections)


def write_report(title: str, body_of, rows: list[dict], out_dir: Path, config: dict) -> Path:
    """results.md (a header, the table `body_of(rows, out_dir, model)`, each method's extra heads, the
    missing runs and the recipes that ran), plus CSV/JSON rows, config and figures."""
    results.write_rows(out_dir, rows, config)
    spec = config["spec"]
    header = (f"# {title}\n\nBackbone `{config['model']}` ({config['pretrained'] or 'random init'}), "
              f"shots {spec['shots']}, seeds {spec['seeds']}; top-1 % as mean ± sample SD over seeds "
              f"(PromptSRC and DiSa: their GPA-aggregated prompts; the others: the last epoch's).\n\n")
    body = body_of(rows, out_dir, config["model"]) if rows else "No run has finished yet."
    heads = head_table(rows)
    if heads:
        body += "\n\n" + heads
    if config.get("missing_runs"):
        body += "\n\n**Missing runs** (failed; the same command reruns them): " + "; ".join(config["missing_runs"])
    body += "\n\n## Recipes that ran\n\n" + results.recipe_table(config["recipes"])
    path = out_dir / "results.md"
    path.write_text(header + body + "\n")
    return path
