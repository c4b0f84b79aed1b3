"""The papers' evaluation protocols as one table, for any method, backbone and data source.

A `Protocol` names the datasets it trains and tests on under each preset, whether a job runs it once per
K, the part of the classes it trains on, its run function and its report. A run function takes the
run's `Task` (the few-shot draw, made once) and the datasets it only tests on, and returns rows (one per
dataset / target / score); every row records the recipe and options its run used, and the per-image
outcomes that claims are graded on.

Each protocol is one module of this package that calls `register_protocol`; the package imports them
all, so a new protocol is one new module (and its tests): nothing else lists it.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from vlp_core.data.base import ClassificationData
from vlp_core.data.tasks import Part, Task
from vlp_core.experiments import reports
from vlp_core.experiments.runs import Context

RunFunction = Callable[[Context, str, Task, Sequence[ClassificationData], str], list[dict]]
Datasets = tuple[tuple[str, ...], tuple[str, ...]]  # (trained on, only tested on)


@dataclass(frozen=True)
class Protocol:
    """One evaluation protocol: a row of `PROTOCOLS`.

    datasets: per preset name, the datasets it trains on and those it only tests on by default; a job's
    `--datasets` replaces the tested-on list of a protocol that has one, else the trained-on list.
    """

    name: str
    title: str
    order: int
    datasets: dict[str, Datasets]
    part: Part  # the classes a run trains on
    per_shots: bool  # one run per K of the job (few-shot), else one run with the job's last K
    run: RunFunction
    report: Callable[[list[dict], Path, str], str]  # (rows, folder, model) -> markdown body; figures written there

    def write_report(self, rows: list[dict], out_dir: Path, config: dict) -> Path:
        """results.md, CSV / JSON rows, config and figures of a job's rows in `out_dir`."""
        return reports.write_report(self.title, self.report, rows, out_dir, config)

    def job_datasets(self, preset: str, chosen: Sequence[str] | None = None) -> tuple[list[str], list[str]]:
        """(datasets trained on, datasets only tested on) under `preset`, `chosen` replacing the list
        that the user picks (the tested-on one where there is one)."""
        if preset not in self.datasets:
            raise ValueError(f"protocol {self.name} has no datasets for preset {preset!r}; it has "
                             f"{', '.join(self.datasets)}")
        trained, tested = self.datasets[preset]
        if not tested:
            return list(chosen or trained), []
        return list(trained), list(chosen or tested)


PROTOCOLS: dict[str, Protocol] = {}


def register_protocol(protocol: Protocol) -> Protocol:
    """Add `protocol` to `PROTOCOLS` under its name (which must be new)."""
    if protocol.name in PROTOCOLS and PROTOCOLS[protocol.name] is not protocol:
        raise ValueError(f"two protocols are named {protocol.name!r}")
    PROTOCOLS[protocol.name] = protocol
    return protocol


def protocol(name: str) -> Protocol:
    """The protocol `name`; a ValueError lists the known ones."""
    if name not in PROTOCOLS:
        raise ValueError(f"unknown protocol {name!r}; choose from {', '.join(PROTOCOLS)}")
    return PROTOCOLS[name]


def run_dir(out_dir: Path, protocol: str, method: str, dataset: str, seed: int, **extra) -> Path:
    """The folder of one run under a results folder: runs/<protocol>/<method>/<dataset>/[<key><value>/]seed<S>."""
    parts = [protocol, method, dataset, *[f"{k}{v}" for k, v in extra.items()], f"seed{seed}"]
    return out_dir.joinpath("runs", *parts)


for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
_ordered = sorted(PROTOCOLS.items(), key=lambda item: item[1].order)
PROTOCOLS.clear()
PROTOCOLS.update(_ordered)
