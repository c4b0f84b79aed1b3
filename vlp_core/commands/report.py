"""`vlp report --format paper`: a protocol's results as the papers print their tables."""

from __future__ import annotations

import argparse
from pathlib import Path

from vlp_core.experiments.ledger import load_results
from vlp_core.experiments.paper_tables import FORMATS, paper_table, render

HELP = "write a protocol's results as the papers' tables (markdown, LaTeX booktabs or CSV)"
DESCRIPTION = (
    "Read RESULTS_DIR/results.json (written by `vlp protocol ... --out RESULTS_DIR`) and write its numbers, "
    "averaged over seeds, in the layout of the papers' tables: base-to-novel as PromptSRC and MaPLe print it "
    "(a row per dataset with the average first, Base / Novel / HM per method), few-shot, domain generalisation "
    "and cross-dataset as GalLoP prints them (a row per K and method, a column per dataset, the average last), "
    "OOD detection as GalLoP prints it (FPR95 / AUROC per OOD set and their average)."
)
EXAMPLES = (
    "  vlp report --format paper results/b2n\n"
    "  vlp report --format paper --as latex results/b2n --out b2n.tex\n"
    "  vlp report --format paper --as csv results/ood --out ood.csv"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """RESULTS_DIR, --format, --as, --out."""
    parser.add_argument("results", metavar="RESULTS_DIR", help="a `vlp protocol --out` folder (or its results.json)")
    parser.add_argument("--format", choices=["paper"], default="paper",
                        help="the table layout: paper (the papers' own; the default)")
    parser.add_argument("--as", dest="as_", choices=FORMATS, default="markdown",
                        help="markdown (default), latex (booktabs) or csv")
    parser.add_argument("--out", default=None, metavar="FILE", help="write to FILE instead of printing")


def run(args: argparse.Namespace) -> int:
    """Print the table, or write it to --out and say where; 0 on success."""
    rows, config = load_results(args.results)
    text = render(paper_table(rows, config), args.as_)
    if args.out is None:
        print(text, end="")
        return 0
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(f"wrote {out}")
    return 0
