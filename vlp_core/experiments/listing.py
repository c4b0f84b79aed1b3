"""`vlp runs`: the runs under a folder, each read from what its folder keeps, to follow and compare them.

A run folder is one that holds a trainer checkpoint (`checkpoint.json`), a `vlp train` record (`run.json`)
or a protocol run's rows (`rows.json`); each is summarised from them: method, data, shots, seed, recipe
(epochs, learning rate, batch), epochs done of those planned, scores, wall time, and which checkpoint its
scores come from (the last epoch, or PromptSRC's and DiSa's GPA aggregate). A protocol's `results.json`
whose run folders are not there (the results committed without them) is read instead: one run per
(method, dataset, seed, K) of its rows, said so.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from vlp_core.engine.recipes import recipe_checkpoint
from vlp_core.engine.trainer import CHECKPOINT_META
from vlp_core.experiments.jobs import ERROR, ROWS
from vlp_core.experiments.results import harmonic_mean
from vlp_core.experiments.runs import RUN_RECORD
from vlp_core.methods.registry import evaluated_checkpoint
from vlp_core.tables import duration

RESULTS = "results.json"
SKIPPED = frozenset({"epochs", "tensorboard", "split_fewshot", "__pycache__", "node_modules", "submitit"})
SHOWN_SCORES = 3  # rows' scores named in a summary, with the count of the others


@dataclass(frozen=True)
class RunSummary:
    """One run, as `vlp runs` lists it."""

    where: str  # its folder, relative to the folder listed (or results.json's, for its rows)
    method: str
    data: str
    shots: int | None
    seed: int | None
    epochs: int | None  # planned by its recipe (None: it does not train)
    lr: float | None
    batch: int | None
    done: int | None  # epochs trained
    scores: str
    seconds: float | None
    finished: bool
    checkpoint: str | None  # the checkpoint its scores come from
    failed: bool = False


def find_runs(root: str | Path) -> tuple[list[RunSummary], list[Path]]:
    """Every run under `root` (a run folder itself, or any folder holding runs at any depth) -> (the
    runs in path order, the results.json files read for want of their run folders)."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a folder: pass a folder holding runs (a `vlp train --out`, a "
                                f"`vlp protocol --out`, or any folder above them)")
    folders, results = [], []
    for folder in _folders(root):
        names = set(os.listdir(folder))
        if names & {CHECKPOINT_META, RUN_RECORD, ROWS}:
            folders.append(folder)
        if RESULTS in names:
            results.append(folder / RESULTS)
    runs = [summarise_folder(folder, root) for folder in folders]
    orphans = [path for path in results if not any(f.is_relative_to(path.parent / "runs") for f in folders)]
    for path in orphans:
        runs += summarise_results(path, root)
    return runs, orphans


def _folders(root: Path) -> Iterator[Path]:
    """`root` and every folder below it, in path order, hidden ones and those of no run left out."""
    for current, subfolders, _ in os.walk(root):
        subfolders[:] = sorted(name for name in subfolders if not name.startswith(".") and name not in SKIPPED)
        yield Path(current)


def _read(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.is_file() else None


def summarise_folder(folder: Path, root: Path) -> RunSummary:
    """A run folder's summary from its run record, rows and checkpoint (whichever it holds)."""
    record, saved, meta = (_read(folder / name) for name in (RUN_RECORD, ROWS, CHECKPOINT_META))
    rows = saved["rows"] if saved else []
    run = saved["run"]["run"] if saved else {}
    recipe = (record or {}).get("recipe") or (rows[0]["recipe"] if rows else None)
    train = (meta or {}).get("config") or (recipe or {}).get("train")
    method = run.get("method") or (recipe or meta)["method"]
    done = meta["epochs_run"] if meta else (train["epochs"] if train and rows else None)
    finished = done == train["epochs"] if train and done is not None else bool(record or rows)
    data = (record or {}).get("dataset") or run.get("dataset") or meta["record"].get("dataset", "?")
    if run.get("targets"):
        data += f" -> {len(run['targets'])} targets"
    seconds = (record or saved or {}).get("seconds")
    if seconds is None and meta:
        seconds = sum(entry.get("seconds", 0.0) for entry in meta["history"])
    return RunSummary(
        where=str(folder.relative_to(root)) if folder != root else ".", method=method, data=data,
        shots=_first("shots", record, run, meta and meta["record"]), seed=_first("seed", record, run, train),
        epochs=train["epochs"] if train else None, lr=train["lr"] if train else None,
        batch=train["batch_size"] if train else None, done=done,
        scores=scores_text(rows) if rows else _test_scores(record), seconds=seconds, finished=finished,
        checkpoint=_checkpoint(record, rows, recipe, meta), failed=(folder / ERROR).is_file())


def _first(key: str, *sources: dict | None) -> Any:
    """`key`'s value in the first of `sources` (dicts or None) that holds it, or None."""
    return next((source[key] for source in sources if source and source.get(key) is not None), None)


def _test_scores(record: dict | None) -> str:
    """A `vlp train` record's test top-1 ("acc 63.2"), or "-" before it is scored."""
    if not record:
        return "-"
    return " ".join(f"{key} {value:.1f}" for key, value in record["test"].items() if key == "acc") or "-"


def _checkpoint(record: dict | None, rows: list[dict], recipe: dict | None, meta: dict | None) -> str | None:
    """Which checkpoint the run's scores come from (or will, when it finishes): as recorded, else from
    its recipe or its checkpoint's method, options and epochs."""
    recorded = (record or {}).get("checkpoint") or next((row["checkpoint"] for row in rows if "checkpoint" in row), None)
    if recorded:
        return recorded
    if recipe and not recipe.get("loaded_from"):
        return recipe_checkpoint(recipe)
    if meta:
        return evaluated_checkpoint(meta["method"], meta["method_config"], meta["config"]["epochs"])
    return None


def scores_text(rows: list[dict]) -> str:
    """A run's rows in a few words: "base 70.1 novel 60.2 HM 64.6", "acc 63.2", "AUROC 81.0 FPR95 52.3";
    several rows each named by what they score, the first `SHOWN_SCORES` and the count of the others."""
    parts = []
    for row in rows:
        if "base" in row and "novel" in row:
            text = f"base {row['base']:.1f} novel {row['novel']:.1f} HM {harmonic_mean(row['base'], row['novel']):.1f}"
        elif "acc" in row:
            text = f"acc {row['acc']:.1f}"
        elif "auroc" in row:
            text = f"AUROC {row['auroc']:.1f} FPR95 {row['fpr95']:.1f}"
        else:
            continue
        what = " · ".join(str(row[key]) for key in ("ood", "score") if key in row) or row["dataset"]
        parts.append(text if len(rows) == 1 else f"{what}: {text}")
    more = f"; and {len(parts) - SHOWN_SCORES} more" if len(parts) > SHOWN_SCORES else ""
    return "; ".join(parts[:SHOWN_SCORES]) + more if parts else "-"


def summarise_results(path: Path, root: Path) -> list[RunSummary]:
    """The runs of a results.json without its run folders: one per (method, dataset or source, seed, K)
    of its rows, finished, with the wall time its config records where it does."""
    content = json.loads(path.read_text())
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for row in content["rows"]:
        groups[row["method"], row.get("source", row["dataset"]), row["seed"], row.get("shots")].append(row)
    seconds = content["config"].get("run_seconds", {})
    where = str(path.parent.relative_to(root)) if path.parent != root else "."
    runs = []
    for (method, data, seed, shots), rows in groups.items():
        recipe = rows[0].get("recipe") or {}
        train = recipe.get("train")
        what = f"{method} · {data} · seed {seed}"
        targets = len({row["dataset"] for row in rows if row.get("source") and row["dataset"] != data})
        runs.append(RunSummary(
            where=f"{where} (results.json)", method=method, data=data + (f" -> {targets} targets" if targets else ""),
            shots=shots, seed=seed, epochs=train["epochs"] if train else None, lr=train["lr"] if train else None,
            batch=train["batch_size"] if train else None, done=train["epochs"] if train else None,
            scores=scores_text(rows), seconds=seconds.get(what, seconds.get(f"{what} · {shots} shots")), finished=True,
            checkpoint=_checkpoint(None, rows, recipe if recipe else None, None)))
    return runs


# ------------------------------------------------------------------------------------- rendering


def runs_table(runs: list[RunSummary]) -> list[dict[str, str]]:
    """The rows of `vlp runs`' table, one per run."""
    return [{"run": run.where, "method": run.method, "data": run.data, "shots": _cell(run.shots), "seed": _cell(run.seed),
             "recipe": f"{run.epochs} ep · lr {run.lr:g} · batch {run.batch}" if run.epochs else "-",
             "epochs": (f"{run.done}/{run.epochs}" if run.epochs else "-") + ("" if run.finished else " (unfinished)")
             + (" (failed)" if run.failed else ""),
             "scores": run.scores, "time": _time(run), "scored with": _cell(run.checkpoint)} for run in runs]


def _cell(value: Any) -> str:
    return "-" if value is None else str(value)


def _time(run: RunSummary) -> str:
    """A run's wall time in words; an unfinished run's "so far"."""
    if run.seconds is None:
        return "-"
    return duration(run.seconds) + ("" if run.finished else " so far")
