"""How close `--dry-run` comes to the run it predicts: for each method, the estimate of a `vlp train`
run, then the same run trained, its wall time as its run record keeps it (training and scoring).

    python scripts/dry_run_check.py                       # coop ivlp promptsrc disa gallop, shapes, 6 epochs
    python scripts/dry_run_check.py --methods disa --epochs 20 --out runs/dry-run-check

Prints, per method, the predicted and the measured seconds and their ratio (measured / predicted).
Run it on a quiet machine: both numbers grow with other work on the same cores.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

from vlp_core.experiments.estimate import estimate_train
from vlp_core.experiments.runs import train_one
from vlp_core.experiments.spec import JobSpec


def check(method: str, dataset: str, epochs: int, out: Path) -> dict:
    """{method, predicted, measured, ratio} of one run (seconds)."""
    spec = JobSpec(protocol="base2novel", methods=[method], epochs=epochs)
    predicted = estimate_train(spec, method, dataset, "base").seconds
    shutil.rmtree(out, ignore_errors=True)
    record = train_one(spec, method, dataset, "base", out, progress=False)
    measured = record["seconds"]
    return {"method": method, "predicted": round(predicted, 1), "measured": measured,
            "ratio": round(measured / predicted, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", nargs="+", default=["coop", "ivlp", "promptsrc", "disa", "gallop"])
    parser.add_argument("--data", default="shapes")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--out", default=None, help="where the runs go (default: a temporary folder)")
    args = parser.parse_args()
    root = Path(args.out or tempfile.mkdtemp(prefix="dry-run-check-"))
    rows = [check(method, args.data, args.epochs, root / method) for method in args.methods]
    print("| method | predicted (s) | measured (s) | measured / predicted |\n|---|---|---|---|")
    for row in rows:
        print(f"| {row['method']} | {row['predicted']} | {row['measured']} | {row['ratio']} |")
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
