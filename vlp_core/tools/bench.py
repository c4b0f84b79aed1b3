"""`vlp bench`: time per training step, its text part, images/s and peak memory per method, side by
side, and the same for two versions of the code or two option sets, as ratios.

How it measures, so that its figures can be trusted on a shared, noisy machine:
- every (version, method) pair runs in its own process (`bench_worker.py`), so each peak memory is
  that method's own (CUDA: the peak of allocated tensors; CPU: the process's peak resident set,
  model included, the same model for every method);
- after one untimed warm-up, the timed repetitions go round all pairs in turn (method A of version
  1, of version 2, method B ..., then again), while the other processes wait; a drift of the
  machine's speed then slows them all alike;
- each figure is the median over the repetitions with its min and max, and every ratio is taken
  repetition by repetition (the pair timed back to back) before its median is read.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import vlp_core

WORKER = Path(__file__).with_name("bench_worker.py")
CURRENT_ROOT = Path(vlp_core.__file__).resolve().parents[1]  # the folder holding this `vlp_core`
OPERATIONS = ("train", "text", "infer")


@dataclass
class Variant:
    """One version of the code to time: the folder that holds its `vlp_core`, and method options."""

    label: str
    root: Path = CURRENT_ROOT
    options: dict[str, dict] = field(default_factory=dict)  # method name -> config overrides


def checkout(revision: str, into: Path) -> Path:
    """The tracked files of git `revision` of this checkout, unpacked under `into` -> that folder."""
    try:
        commit = subprocess.run(["git", "-C", str(CURRENT_ROOT), "rev-parse", "--verify", f"{revision}^{{commit}}"],
                                capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError) as error:
        raise ValueError(f"{revision!r} is neither METHOD.OPTION=VALUE settings nor a git revision of "
                         f"{CURRENT_ROOT}") from error
    folder = into / commit[:12]
    folder.mkdir(parents=True, exist_ok=True)
    archive = subprocess.Popen(["git", "-C", str(CURRENT_ROOT), "archive", commit], stdout=subprocess.PIPE)
    subprocess.run(["tar", "-x", "-C", str(folder)], stdin=archive.stdout, check=True)
    if archive.wait() != 0:
        raise ValueError(f"git archive {revision} failed")
    return folder


class _Worker:
    """A `bench_worker.py` process for one (variant, method) pair."""

    def __init__(self, spec: dict, root: Path):
        self.spec = spec
        self._log = tempfile.TemporaryFile(mode="w+")
        path = os.pathsep.join(p for p in (str(root), os.environ.get("PYTHONPATH", "")) if p)
        self._process = subprocess.Popen(
            [sys.executable, str(WORKER), json.dumps(spec)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=self._log, text=True, env={**os.environ, "PYTHONPATH": path})
        self.info: dict = {}

    def _answer(self) -> dict:
        line = self._process.stdout.readline()
        if not line:
            self._log.seek(0)
            raise RuntimeError(f"the bench process for {self.spec['method']} stopped:\n{self._log.read()[-3000:]}")
        return json.loads(line)

    def ready(self) -> dict:
        self.info = self._answer()
        return self.info

    def ask(self, command: str) -> dict:
        self._process.stdin.write(command + "\n")
        self._process.stdin.flush()
        return self._answer()

    def close(self) -> None:
        if self._process.stdin:
            self._process.stdin.close()
        self._process.wait()
        self._log.close()


def _spread(values: list[float]) -> dict:
    """{"median", "min", "max"} of `values`, and the values themselves (one per timed round)."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "values": list(values)}


def bench(variants: list[Variant], methods: list[str], class_names: list[str], *, model: str,
          pretrained: str | None, device: str, batch_size: int, repeats: int) -> dict:
    """Time `methods` under every variant, `repeats` rounds; -> {"rows", "ratios", "machine"}.

    rows: one per (variant, method): trainable values, and per operation ("train", "text",
    "infer") the median / min / max seconds, plus "vs_first", the per-round ratio of its training
    step to the first trained method's, and peak_memory_mb. ratios (two variants only): per method and
    operation, the per-round ratio second / first variant.
    """
    if len({v.label for v in variants}) < len(variants):
        raise ValueError(f"the versions to time need different names, got {[v.label for v in variants]}")
    workers = {}
    try:
        for variant in variants:
            for name in methods:
                spec = {"model": model, "pretrained": pretrained, "device": device, "method": name,
                        "options": variant.options.get(name, {}), "classes": list(class_names),
                        "batch_size": batch_size}
                workers[variant.label, name] = _Worker(spec, variant.root)
        for worker in workers.values():
            worker.ready()
        times: dict[tuple[str, str, str], list[float]] = {}
        for _ in range(repeats):
            for op in OPERATIONS:
                for key, worker in workers.items():
                    if op in worker.info["ops"]:
                        times.setdefault((*key, op), []).append(worker.ask(op)["seconds"])
        memory = {key: worker.ask("memory")["peak_memory_mb"] for key, worker in workers.items()}
    finally:
        for worker in workers.values():
            worker.close()
    first = next(iter(workers.values())).info
    return {
        "machine": {k: first[k] for k in ("device_name", "threads", "torch")}, "batch_size": batch_size,
        "model": model, "classes": len(class_names), "rounds": repeats,
        "rows": [_row(variant.label, name, workers[variant.label, name].info, times, memory, methods)
                 for variant in variants for name in methods],
        "ratios": _ratios(variants, methods, times, memory) if len(variants) == 2 else [],
    }


def _row(label: str, name: str, info: dict, times: dict, memory: dict, methods: list[str]) -> dict:
    row = {"version": label, "method": name, "trainable": info["trainable"], "peak_memory_mb": memory[label, name]}
    for op in OPERATIONS:
        if (label, name, op) in times:
            row[op] = _spread(times[label, name, op])
    trained = [m for m in methods if (label, m, "train") in times]
    if "train" in row:  # against the first method with a training step, round by round
        reference = times[label, trained[0], "train"]
        row["vs_first"] = _spread([a / b for a, b in zip(times[label, name, "train"], reference)])
    return row


def _ratios(variants: list[Variant], methods: list[str], times: dict, memory: dict) -> list[dict]:
    """Per method and operation: the per-round ratios second variant / first variant (and of the peaks)."""
    a, b = (v.label for v in variants)
    rows = []
    for name in methods:
        row = {"method": name, "peak_memory": memory[b, name] / memory[a, name]}
        for op in OPERATIONS:
            if (a, name, op) in times and (b, name, op) in times:
                row[op] = _spread([y / x for x, y in zip(times[a, name, op], times[b, name, op])])
        rows.append(row)
    return rows


def _cell(spread: dict | None, scale: float = 1.0, digits: int = 1) -> str:
    """"median [min–max]" of a spread scaled by `scale`, or "" when absent."""
    if spread is None:
        return ""
    low, high = sorted((spread["min"] * scale, spread["max"] * scale))
    return f"{spread['median'] * scale:.{digits}f} [{low:.{digits}f}–{high:.{digits}f}]"


def report(result: dict, batch_size: int) -> str:
    """Markdown tables of a `bench` result: every (version, method), then the ratios if any."""
    lines = ["| version | method | trainable | train step ms | × first trained | text part ms | "
             "train images/s | eval images/s | peak memory MB |", "|" + "---|" * 9]
    for row in result["rows"]:
        train = row.get("train")
        cells = [row["version"], row["method"], str(row["trainable"]), _cell(train, 1000),
                 _cell(row.get("vs_first"), digits=2), _cell(row.get("text"), 1000),
                 f"{batch_size / train['median']:.1f}" if train else "",
                 f"{batch_size / row['infer']['median']:.1f}", f"{row['peak_memory_mb']:.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    if result["ratios"]:
        second, first = result["rows"][-1]["version"], result["rows"][0]["version"]
        lines += ["", f"Ratios {second} / {first} (times per round, median [min–max]; below 1: {second} is "
                  "faster or smaller):", "", "| method | train step | text part | eval | peak memory |", "|---|---|---|---|---|"]
        for row in result["ratios"]:
            cells = [row["method"]] + [_cell(row.get(op), digits=2) for op in OPERATIONS] + [f"{row['peak_memory']:.2f}"]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
