"""A protocol's results in the papers' own table layouts, as markdown, LaTeX (booktabs) and CSV.

- base-to-novel as PromptSRC and MaPLe print it: one row per dataset with the average first, and per
  method three columns Base / Novel / HM (2 decimals). HM is the HM of the seed-averaged base and
  novel; the average row's HM is that of the dataset-averaged base and novel;
- few-shot, domain generalisation and cross-dataset as GalLoP prints them: one row per (K,) method, one
  column per dataset and the average last (1 decimal); for dg and xd the source first and the average
  over the targets;
- OOD detection as GalLoP prints it: one row per method and score, FPR95 / AUROC per OOD set and their
  average (1 decimal).

Every number is the mean over the seeds the rows hold. A method whose rows record a checkpoint ("last
epoch", "GPA aggregate") shows it beside its name.
"""

from __future__ import annotations

import csv
import io
import statistics
from dataclasses import dataclass
from typing import Sequence

from vlp_core.experiments.ledger import protocol_of, seed_mean
from vlp_core.experiments.paper_cards import (
    DATASETS,
    METHOD_TITLES,
    METHODS,
    OOD_SETS,
    PROTOCOL_DATASETS,
    harmonic_mean,
)

FORMATS = ("markdown", "latex", "csv")
SCORE_TITLES = {"mcm": "MCM", "l_mcm": "L-MCM", "gl_mcm": "GL-MCM"}
AVERAGE_TITLE = "Average"


@dataclass(frozen=True)
class Column:
    """A number column: its label, under an optional spanning group (a method, an OOD set)."""

    label: str
    group: str = ""


@dataclass(frozen=True)
class TableRow:
    """A row: its header cells (a dataset; K and a method; a method) and one value per column (None:
    not run). rule_after: a rule under this row (the average of a base-to-novel table)."""

    labels: tuple[str, ...]
    values: tuple[float | None, ...]
    rule_after: bool = False


@dataclass(frozen=True)
class PaperTable:
    """A table in a paper's layout. paired: markdown writes each group's columns in one cell
    ("13.7 / 97.1"), as GalLoP's OOD table does."""

    title: str
    row_header: tuple[str, ...]
    columns: tuple[Column, ...]
    rows: tuple[TableRow, ...]
    decimals: int
    paired: bool = False


# ------------------------------------------------------------------------------------------ building


def paper_table(rows: Sequence[dict], config: dict) -> PaperTable:
    """The table of a protocol's results (rows and config as `results.json` holds them) in its
    paper's layout."""
    protocol = protocol_of(config)
    if not rows:
        raise ValueError("these results hold no rows: nothing to tabulate")
    title = _title(protocol, rows, config)
    if protocol == "base2novel":
        return base_to_novel_table(rows, title)
    if protocol == "ood":
        return ood_table(rows, title)
    return accuracy_table(rows, protocol, title)


def base_to_novel_table(rows: Sequence[dict], title: str = "") -> PaperTable:
    """Rows: datasets, the average first; columns: Base / Novel / HM per method (PromptSRC's layout)."""
    methods = _methods(rows)
    datasets = _ordered(rows, "dataset", DATASETS)
    cells = {(m, d): [r for r in rows if (r["method"], r["dataset"]) == (m, d)] for m in methods for d in datasets}
    columns = tuple(Column(label, _method_title(m, rows)) for m in methods for label in ("Base", "Novel", "HM"))
    body = [TableRow((d,), tuple(v for m in methods for v in _base_novel_hm(cells[m, d]))) for d in datasets]
    average = TableRow((AVERAGE_TITLE,), tuple(v for m in methods for v in _average_base_novel_hm(
        [cells[m, d] for d in datasets])), rule_after=True)
    return PaperTable(title, ("Dataset",), columns, (average, *body), decimals=2)


def accuracy_table(rows: Sequence[dict], protocol: str, title: str = "") -> PaperTable:
    """Rows: (K, method); columns: the datasets and the average (GalLoP's few-shot and DG layout).
    dg / xd: the source first, the average over the targets."""
    datasets = _ordered(rows, "dataset", PROTOCOL_DATASETS[protocol])
    sources = {row["source"] for row in rows if "source" in row}
    averaged = [d for d in datasets if d not in sources]
    methods = _methods(rows)
    body = []
    for shots in sorted({row["shots"] for row in rows}):
        for method in methods:
            chosen = [r for r in rows if (r["method"], r["shots"]) == (method, shots)]
            if chosen:
                values = {d: _mean([r for r in chosen if r["dataset"] == d], "acc") for d in datasets}
                body.append(TableRow((str(shots), _method_title(method, chosen)),
                                     (*values.values(), _average([values[d] for d in averaged]))))
    columns = tuple(Column(d) for d in datasets) + (Column(AVERAGE_TITLE),)
    return PaperTable(title, ("K", "Method"), columns, tuple(body), decimals=1)


def ood_table(rows: Sequence[dict], title: str = "") -> PaperTable:
    """Rows: method and score; columns: FPR95 / AUROC per OOD set and their average (GalLoP's layout)."""
    sets = _ordered(rows, "ood", OOD_SETS)
    id_sets = _ordered(rows, "dataset", ())
    body = []
    for id_set in id_sets:
        for method in _methods(rows):
            for score in [s for s in SCORE_TITLES if any(r["score"] == s for r in rows)]:
                chosen = [r for r in rows if (r["dataset"], r["method"], r["score"]) == (id_set, method, score)]
                if chosen:
                    body.append(TableRow(_ood_labels(id_set, method, score, chosen, len(id_sets) > 1),
                                         _ood_values(chosen, sets)))
    columns = tuple(Column(metric, group) for group in (*sets, AVERAGE_TITLE) for metric in ("FPR95", "AUROC"))
    header = ("ID", "Method") if len(id_sets) > 1 else ("Method",)
    return PaperTable(title, header, columns, tuple(body), decimals=1, paired=True)


def _ood_labels(id_set: str, method: str, score: str, rows: Sequence[dict], with_id: bool) -> tuple[str, ...]:
    label = f"{_method_title(method, rows)} ({SCORE_TITLES[score]})"
    return (id_set, label) if with_id else (label,)


def _ood_values(rows: Sequence[dict], sets: Sequence[str]) -> tuple[float | None, ...]:
    pairs = [(_mean([r for r in rows if r["ood"] == s], "fpr95"), _mean([r for r in rows if r["ood"] == s], "auroc"))
             for s in sets]
    average = (_average([p[0] for p in pairs]), _average([p[1] for p in pairs]))
    return tuple(v for pair in (*pairs, average) for v in pair)


def _base_novel_hm(rows: Sequence[dict]) -> tuple[float | None, float | None, float | None]:
    if not rows:
        return None, None, None
    return seed_mean(rows, "base"), seed_mean(rows, "novel"), seed_mean(rows, "hm")


def _average_base_novel_hm(cells: Sequence[Sequence[dict]]) -> tuple[float | None, float | None, float | None]:
    """The mean base and novel over datasets and the HM of those means, as the papers' average; None
    when a dataset has no rows (an average over fewer datasets is not the paper's)."""
    if not cells or not all(cells):
        return None, None, None
    base = statistics.fmean(seed_mean(rows, "base") for rows in cells)
    novel = statistics.fmean(seed_mean(rows, "novel") for rows in cells)
    return base, novel, harmonic_mean(base, novel)


def _mean(rows: Sequence[dict], metric: str) -> float | None:
    return seed_mean(rows, metric) if rows else None


def _average(values: Sequence[float | None]) -> float | None:
    """The mean, or None when a value is missing (an average over fewer datasets is not the paper's)."""
    return statistics.fmean(values) if values and None not in values else None


def _methods(rows: Sequence[dict]) -> list[str]:
    present = list(dict.fromkeys(row["method"] for row in rows))
    return [m for m in METHODS if m in present] + [m for m in present if m not in METHODS]


def _ordered(rows: Sequence[dict], key: str, benchmark: Sequence[str]) -> list[str]:
    """The values of `key` in the rows: the benchmark's order first, then others as they appear."""
    present = list(dict.fromkeys(row[key] for row in rows))
    return [d for d in benchmark if d in present] + [d for d in present if d not in benchmark]


def _method_title(method: str, rows: Sequence[dict]) -> str:
    """The method's name as the papers write it, with the checkpoint its rows record, if any."""
    checkpoints = list(dict.fromkeys(row["checkpoint"] for row in rows
                                     if row["method"] == method and "checkpoint" in row))
    title = METHOD_TITLES.get(method, method)
    return f"{title} ({' / '.join(checkpoints)})" if checkpoints else title


def _title(protocol: str, rows: Sequence[dict], config: dict) -> str:
    seeds = sorted({row["seed"] for row in rows})
    over = f"seeds {', '.join(map(str, seeds))}" if len(seeds) > 1 else f"seed {seeds[0]}"
    names = {"base2novel": "Base-to-novel generalisation: top-1 (%) on base and novel classes, HM",
             "fewshot": "Few-shot classification: top-1 (%)",
             "dg": "Domain generalisation: top-1 (%), trained on the source",
             "xd": "Cross-dataset transfer: top-1 (%), trained on the source",
             "ood": "OOD detection: FPR95 / AUROC (%)"}
    return f"{names[protocol]}; {config.get('model')} ({config.get('pretrained')}), mean over {over}"


# ----------------------------------------------------------------------------------------- rendering


def render(table: PaperTable, fmt: str) -> str:
    """`table` as "markdown", "latex" or "csv"."""
    renderers = {"markdown": to_markdown, "latex": to_latex, "csv": to_csv}
    if fmt not in renderers:
        raise ValueError(f"unknown table format {fmt!r}; choose from {', '.join(FORMATS)}")
    return renderers[fmt](table)


def number(value: float | None, decimals: int, missing: str = "-") -> str:
    """A value with `decimals` digits, `missing` for None."""
    return missing if value is None else f"{value:.{decimals}f}"


def to_markdown(table: PaperTable) -> str:
    """A title line and a markdown table (label columns left-aligned, numbers right-aligned)."""
    if table.paired:
        groups = list(dict.fromkeys(c.group for c in table.columns))
        header = [f"{g} {' / '.join(c.label for c in table.columns if c.group == g)}" for g in groups]
        body = [[" / ".join(number(v, table.decimals) for c, v in zip(table.columns, row.values) if c.group == g)
                 for g in groups] for row in table.rows]
    else:
        header = [f"{c.group} {c.label}".strip() for c in table.columns]
        body = [[number(v, table.decimals) for v in row.values] for row in table.rows]
    lines = [f"**{table.title}**", "",
             "| " + " | ".join([*table.row_header, *header]) + " |",
             "|" + ":---|" * len(table.row_header) + "---:|" * len(header)]
    lines += ["| " + " | ".join([*row.labels, *cells]) + " |" for row, cells in zip(table.rows, body)]
    return "\n".join(lines) + "\n"


def to_latex(table: PaperTable) -> str:
    """A booktabs table environment: the groups as spanning headers over cmidrules, a rule under
    the average row where the layout has one."""
    n_labels = len(table.row_header)
    lines = ["\\begin{table}[t]", "\\centering", f"\\caption{{{latex_escape(table.title)}}}",
             f"\\begin{{tabular}}{{{'l' * n_labels}{'r' * len(table.columns)}}}", "\\toprule"]
    lines += _latex_group_lines(table, n_labels)
    lines.append(" & ".join([*map(latex_escape, table.row_header), *(latex_escape(c.label) for c in table.columns)])
                 + " \\\\")
    lines.append("\\midrule")
    for row in table.rows:
        cells = [*map(latex_escape, row.labels), *(number(v, table.decimals, "--") for v in row.values)]
        lines.append(" & ".join(cells) + " \\\\")
        if row.rule_after:
            lines.append("\\midrule")
    lines += ["\\bottomrule", "\\end{tabular}", "\\end{table}"]
    return "\n".join(lines) + "\n"


def _latex_group_lines(table: PaperTable, n_labels: int) -> list[str]:
    """The spanning group header and its cmidrules (none when no column has a group)."""
    if not any(c.group for c in table.columns):
        return []
    spans: list[tuple[str, int]] = []
    for column in table.columns:
        if spans and spans[-1][0] == column.group:
            spans[-1] = (column.group, spans[-1][1] + 1)
        else:
            spans.append((column.group, 1))
    cells, rules, start = [""] * n_labels, [], n_labels + 1
    for group, width in spans:
        cells.append(f"\\multicolumn{{{width}}}{{c}}{{{latex_escape(group)}}}")
        rules.append(f"\\cmidrule(lr){{{start}-{start + width - 1}}}")
        start += width
    return [" & ".join(cells) + " \\\\", " ".join(rules)]


def to_csv(table: PaperTable) -> str:
    """One header line ("group label" per number column), one line per row, numbers as printed."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([*table.row_header, *(f"{c.group} {c.label}".strip() for c in table.columns)])
    for row in table.rows:
        writer.writerow([*row.labels, *(number(v, table.decimals, "") for v in row.values)])
    return out.getvalue()


LATEX_SPECIALS = {"\\": "\\textbackslash{}", "&": "\\&", "%": "\\%", "$": "\\$", "#": "\\#", "_": "\\_",
                  "{": "\\{", "}": "\\}", "~": "\\textasciitilde{}", "^": "\\textasciicircum{}"}


def latex_escape(text: str) -> str:
    """`text` with LaTeX's special characters escaped."""
    return "".join(LATEX_SPECIALS.get(char, char) for char in text)
