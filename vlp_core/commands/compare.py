"""`vlp compare --paper`: a protocol's results beside the papers' published numbers."""

from __future__ import annotations

import argparse
import dataclasses
import json

from vlp_core.experiments.ledger import compare_with_papers, load_results, render_comparison
from vlp_core.experiments.paper_cards import METHODS

HELP = "set a protocol's results beside the papers' numbers: difference, seed spread, verdict, likely causes"
DESCRIPTION = (
    "Read RESULTS_DIR/results.json (written by `vlp protocol ... --out RESULTS_DIR`) and set each method's "
    "numbers, per dataset and on average, beside the papers' published numbers (the paper cards in "
    "vlp_core/experiments/papers/, each number cited by repository, file and commit): the run's seed mean and "
    "sample SD, the difference, and a verdict against the seed variance the papers report, or a stated default "
    "band where they report none. For a number outside its band it names what the run record shows differing "
    "from the paper's recipe (template, crop scale, precision, batch size, epochs, checkpoint, backbone tag). "
    "A run of another model or on other data (e.g. synth-clip on SynthWorld) is reported as not comparable."
)
EXAMPLES = (
    "  vlp compare --paper results/b2n\n"
    "  vlp compare --paper --method promptsrc results/b2n\n"
    "  vlp compare --paper --json results/ood > ood-vs-papers.json"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """RESULTS_DIR, --paper, --method, --json."""
    parser.add_argument("results", metavar="RESULTS_DIR", help="a `vlp protocol --out` folder (or its results.json)")
    parser.add_argument("--paper", action="store_true", help="compare with the papers' published numbers")
    parser.add_argument("--method", choices=METHODS, default=None, help="only this method (default: every method)")
    parser.add_argument("--json", action="store_true", help="print the comparison as JSON instead of text")


def run(args: argparse.Namespace) -> int:
    """Print the comparison; 0 once printed (the verdicts are in the output, not the exit code)."""
    if not args.paper:
        raise ValueError("say what to compare with: --paper (the papers' published numbers)")
    rows, config = load_results(args.results)
    comparison = compare_with_papers(rows, config, args.method)
    print(json.dumps(dataclasses.asdict(comparison), indent=2) if args.json else render_comparison(comparison))
    return 0
