"""`vlp runs`: list the runs under a folder, to follow and compare them."""

from __future__ import annotations

import argparse
import dataclasses
import json

HELP = "list the runs under a folder: method, data, recipe, epochs done, scores, time, checkpoint scored"
DESCRIPTION = (
    "Every run under DIR, at any depth (`vlp train` folders, the run folders of `vlp protocol` results): method, "
    "data, shots, seed, recipe (epochs, learning rate, batch), epochs done of those planned, scores, wall time "
    "(of the command that finished it; an unfinished run's epochs so far) and the checkpoint its scores come "
    "from (the last epoch, or PromptSRC's and DiSa's GPA aggregate). A results.json whose run folders are not "
    "there is read from its rows instead, and said so. Each run folder also keeps metrics.jsonl and curves.png.")
EXAMPLES = """\
  vlp runs runs/                     # every vlp train run under runs/
  vlp runs results/b2n               # a protocol's runs, finished or not
  vlp runs docs/results --json       # the committed results, from their rows"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dir", nargs="?", default=".", help="folder to list, at any depth (default: this one)")
    parser.add_argument("--json", action="store_true", help="one JSON object per run instead of a table")


def run(args: argparse.Namespace) -> int:
    from vlp_core.experiments.listing import find_runs, runs_table
    from vlp_core.tables import markdown_table

    runs, from_rows = find_runs(args.dir)
    if args.json:
        for summary in runs:
            print(json.dumps(dataclasses.asdict(summary)))
        return 0
    if not runs:
        print(f"no runs under {args.dir}")
        return 0
    table = runs_table(runs)
    print(markdown_table(table, list(table[0])))
    for path in from_rows:
        print(f"\n{path}: its run folders are not here, so its runs are read from its rows (no epochs in progress, "
              f"metrics or curves)")
    return 0
