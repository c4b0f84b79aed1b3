"""What a run folder keeps of its training as it goes, to follow it and compare it with others:

- `metrics.jsonl`, one JSON object a line: `{"kind": "step", ...}` per optimisation step (epoch, step,
  steps, lr, every loss term, seconds, images_per_s), `{"kind": "epoch", ...}` per epoch (the epoch's
  mean of every term, lr, seconds, images_per_s, processes) and `{"kind": "eval", ...}` per evaluation of
  the trained run (what was scored, the epoch, its top-1 or other scores);
- `curves.png`: the loss terms per step and per epoch, the learning rate, and the scores at the end;
- TensorBoard event files under `tensorboard/` (Dassl's scalars: train/<term> and train/lr per step,
  test/<score> at the end) when the optional `tensorboard` package is installed.

A resumed run first drops the lines of the epochs its checkpoint does not hold (an interrupted epoch's
steps) and the stale evaluations, then appends: an epoch is never listed twice. A run started afresh
starts the file afresh.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from vlp_core.files import write_atomically, write_text_atomically

METRICS = "metrics.jsonl"
CURVES = "curves.png"
TENSORBOARD = "tensorboard"
DRAW_EVERY_S = 10.0  # redraw curves.png after an epoch at most this often (always after the last one)


def read_metrics(folder: str | Path) -> list[dict[str, Any]]:
    """The lines of a run folder's metrics.jsonl (none when it has none); a line cut short by a kill is
    skipped."""
    path = Path(folder) / METRICS
    if not path.is_file():
        return []
    lines = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            lines.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return lines


def _summary_writer(folder: Path, purge_step: int | None):
    """A TensorBoard writer of `folder` that discards the events of steps >= `purge_step` written before
    (those of an interrupted epoch; steps count from 1), or None without the `tensorboard` package."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(folder), purge_step=purge_step)


class RunLog:
    """The metrics of one run folder, written as training goes (see the module docstring).

    `epochs_kept`: the epochs its checkpoint holds (0: a fresh start); `steps_per_epoch`: the epoch's
    optimisation steps; `finished`: nothing is left to train, so earlier evaluations stay valid.
    """

    def __init__(self, folder: str | Path, epochs_kept: int, steps_per_epoch: int, title: str = "",
                 finished: bool = False):
        self.folder, self.title = Path(folder), title
        self.steps_per_epoch = steps_per_epoch
        kept = [line for line in read_metrics(self.folder)
                if (line.get("kind") == "eval" and finished) or (line.get("kind") != "eval"
                                                                 and line.get("epoch", 0) <= epochs_kept)]
        write_text_atomically(self.folder / METRICS, "".join(json.dumps(line) + "\n" for line in kept))
        self.board = _summary_writer(self.folder / TENSORBOARD, epochs_kept * steps_per_epoch + 1)
        self._drawn = 0.0

    def _append(self, line: dict[str, Any]) -> None:
        with open(self.folder / METRICS, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(line) + "\n")

    def step(self, epoch: int, step: int, lr: float, terms: dict[str, float], seconds: float, images: int) -> None:
        """One optimisation step (1-based epoch and step) of `images` images (the global batch)."""
        speed = images / seconds if seconds > 0 else 0.0
        self._append({"kind": "step", "epoch": epoch, "step": step, "steps": self.steps_per_epoch, "lr": lr, **terms,
                      "seconds": round(seconds, 4), "images_per_s": round(speed, 2)})
        if self.board is not None:
            at = (epoch - 1) * self.steps_per_epoch + step
            for name, value in {**terms, "lr": lr, "images_per_s": speed}.items():
                self.board.add_scalar(f"train/{name}", value, at)

    def epoch(self, entry: dict[str, Any], last: bool) -> None:
        """One finished epoch (a trainer history entry); curves.png redrawn now and then, and after the
        `last` epoch."""
        self._append({"kind": "epoch", **entry})
        if self.board is not None:
            self.board.flush()
        if last or time.monotonic() - self._drawn >= DRAW_EVERY_S:
            draw_curves(self.folder, self.title)
            self._drawn = time.monotonic()

    def close(self) -> None:
        if self.board is not None:
            self.board.close()


def record_evaluation(folder: str | Path, what: str, scores: dict[str, float], epoch: int | None,
                      title: str = "") -> None:
    """Add the scores of a trained run's evaluation on `what` (a dataset, or dataset and score) to its
    folder's metrics.jsonl, replacing an earlier evaluation of the same `what`, and to curves.png and
    TensorBoard."""
    folder = Path(folder)
    kept = [line for line in read_metrics(folder) if not (line.get("kind") == "eval" and line.get("what") == what)]
    kept.append({"kind": "eval", "what": what, "epoch": epoch, **scores})
    write_text_atomically(folder / METRICS, "".join(json.dumps(line) + "\n" for line in kept))
    board = _summary_writer(folder / TENSORBOARD, purge_step=None) if epoch is not None else None
    if board is not None:
        for name, value in scores.items():
            board.add_scalar(f"test/{what}/{name}", value, epoch)
        board.close()
    draw_curves(folder, title)


def draw_curves(folder: str | Path, title: str = "") -> Path | None:
    """curves.png of a run folder from its metrics.jsonl: the loss terms per step (thin) and per epoch
    (dots) against the epoch, the learning rate, and the scores of its evaluations. None (nothing drawn)
    for a run without training steps."""
    from matplotlib.figure import Figure

    folder = Path(folder)
    lines = read_metrics(folder)
    steps = [line for line in lines if line.get("kind") == "step"]
    if not steps:
        return None
    epochs = [line for line in lines if line.get("kind") == "epoch"]
    evaluations = [line for line in lines if line.get("kind") == "eval"]
    terms = [key for key in steps[-1] if key not in ("kind", "epoch", "step", "steps", "lr", "seconds", "images_per_s")]
    figure = Figure(figsize=(10, 3.6) if evaluations else (6.5, 3.6))
    loss = figure.add_subplot(1, 2 if evaluations else 1, 1)
    at = [line["epoch"] - 1 + line["step"] / line["steps"] for line in steps]
    for index, term in enumerate(terms):
        colour = f"C{index}"
        loss.plot(at, [line.get(term) for line in steps], color=colour, alpha=0.35, linewidth=0.8)
        loss.plot([line["epoch"] for line in epochs], [line.get(term) for line in epochs], "o-", color=colour,
                  markersize=3, label=term)
    if all(line.get(term, 0) > 0 for line in steps for term in terms):
        loss.set_yscale("log")  # terms of different sizes, each visible
    loss.set_xlabel("epoch")
    loss.set_ylabel("loss (per step; dots: epoch mean)")
    loss.legend(fontsize=7, loc="upper right")
    rate = loss.twinx()
    rate.plot(at, [line["lr"] for line in steps], "--", color="grey", linewidth=0.8)
    rate.set_ylabel("learning rate (dashed)", color="grey")
    if evaluations:
        scored = figure.add_subplot(1, 2, 2)
        labels = [f"{line['what']}: {name}" for line in evaluations for name in line
                  if name not in ("kind", "what", "epoch")]
        values = [line[name] for line in evaluations for name in line if name not in ("kind", "what", "epoch")]
        bars = scored.barh(labels[::-1], values[::-1], color="tab:green")
        scored.bar_label(bars, fmt="%.1f", fontsize=7)
        scored.set_xlim(0, max(100.0, *values))
        scored.set_xlabel("%" + (f", after epoch {evaluations[-1]['epoch']}" if evaluations[-1]["epoch"] else ""))
        scored.tick_params(axis="y", labelsize=7)
    figure.suptitle(title or folder.name, fontsize=9)
    figure.tight_layout()
    write_atomically(folder / CURVES, lambda temporary: figure.savefig(temporary, format="png", dpi=100))
    return folder / CURVES
