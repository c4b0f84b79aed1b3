"""Where the independent runs of a protocol execute: processes of this machine (`LocalLauncher`, one
GPU each when there are GPUs) or jobs of a SLURM cluster through submitit (`SubmititLauncher`).

A task is a picklable callable that runs one run in a process of its own and writes its results to
its own folder; a launcher starts the tasks, waits for them and returns the error message of each
one that failed, by name. The local launcher is the standard library's process pool; submitit is
what SLURM clusters in this field use (array jobs, logs per job, requeue after a timeout or a
preemption, the run then resuming from its checkpoint). Ray would add a cluster service of its own
for runs that never talk to each other, so it is not one of them.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

import torch

log = logging.getLogger("vlp")
Task = Callable[[], None]


class Launcher(Protocol):
    def run(self, tasks: Sequence[Task], names: Sequence[str]) -> dict[str, str]:
        """Run every task (a picklable callable), wait for all -> error message by name of the failed ones."""

    def describe(self) -> dict[str, Any]:
        """What ran the tasks, for the job's config.json."""


class MissingExtraError(ImportError):
    """An optional package that a launcher needs is not installed; the message says how to get it."""


def _attempt(task: Task) -> str | None:
    """Run `task` -> None, or its error message (a worker reports, never raises)."""
    try:
        task()
    except BaseException as error:  # Ctrl-C in a worker too: reported as that run's failure
        return str(error).strip() or type(error).__name__
    return None


def _start_worker(counter, devices: list[str], threads: int) -> None:
    """A pool worker takes the next slot: its GPU (CUDA_VISIBLE_DEVICES, before CUDA starts) and its
    share of the CPU threads."""
    with counter.get_lock():
        slot = counter.value
        counter.value += 1
    if devices:
        os.environ["CUDA_VISIBLE_DEVICES"] = devices[slot % len(devices)]
    torch.set_num_threads(threads)


def visible_gpus() -> list[str]:
    """The GPUs this process may use, as CUDA_VISIBLE_DEVICES entries ([] without CUDA)."""
    if not torch.cuda.is_available():
        return []
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    return listed.split(",")[: torch.cuda.device_count()] if listed else [str(i) for i in range(torch.cuda.device_count())]


class LocalLauncher:
    """`jobs` processes of this machine at a time, each its own GPU (round robin over the visible
    ones) or, without GPUs, its share of the CPU threads."""

    def __init__(self, jobs: int, devices: list[str] | None = None):
        if jobs < 1:
            raise ValueError(f"--jobs must be at least 1, got {jobs}")
        self.jobs = jobs
        self.devices = visible_gpus() if devices is None else devices

    def describe(self) -> dict[str, Any]:
        return {"launcher": "local", "jobs": self.jobs, "gpus": self.devices}

    def run(self, tasks: Sequence[Task], names: Sequence[str]) -> dict[str, str]:
        """Run every task in a pool of processes -> error message by name of the failed ones."""
        context = multiprocessing.get_context("spawn")
        threads = max(1, torch.get_num_threads() // self.jobs)
        failures: dict[str, str] = {}
        with ProcessPoolExecutor(max_workers=self.jobs, mp_context=context, initializer=_start_worker,
                                 initargs=(context.Value("i", 0), self.devices, threads)) as pool:
            futures = {pool.submit(_attempt, task): name for task, name in zip(tasks, names)}
            try:
                for done, future in enumerate(as_completed(futures), 1):
                    try:
                        error = future.result()
                    except BrokenProcessPool:
                        error = "its process died (killed, or out of memory?)"
                    _report(futures[future], error, done, len(futures), failures)
            except KeyboardInterrupt:
                for future in futures:
                    future.cancel()
                raise
        return failures


def _report(name: str, error: str | None, done: int, total: int, failures: dict[str, str]) -> None:
    if error is None:
        log.info(f"finished {done}/{total}: {name}")
    else:
        failures[name] = error
        log.warning(f"failed {done}/{total}: {name}: {error.splitlines()[0]}")


def require(module: str, what: str):
    """Import an optional package, or say which extra installs it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as missing:
        raise MissingExtraError(f"{what} needs the {module} package: pip install 'vlp-lab[cluster]' "
                                f"(or pip install {module})") from missing


class SubmititLauncher:
    """One job per run on a SLURM cluster (or submitit's "local" cluster), at most `jobs` at a time
    (an array job; None: SLURM's limit), each with one GPU, waited for. Ctrl-C cancels the jobs; their finished epochs are
    checkpointed, so the same command resumes them.

    options: submitit's executor parameters over the defaults (timeout_min=720, gpus_per_node=1,
    tasks_per_node=1, cpus_per_task=workers + 1), e.g. slurm_partition, slurm_account, mem_gb;
    "cluster" picks submitit's executor (default: SLURM when it is there).
    """

    POLL_S = 5

    def __init__(self, folder: Path, jobs: int | None = None, options: dict[str, Any] | None = None,
                 workers: int = 0):
        submitit = require("submitit", "--launcher submitit")
        options = dict(options or {})
        self.executor = submitit.AutoExecutor(folder=folder, cluster=options.pop("cluster", None))
        self.executor.update_parameters(name="vlp", timeout_min=720, gpus_per_node=1, tasks_per_node=1,
                                        cpus_per_task=workers + 1)
        if jobs is not None:
            self.executor.update_parameters(slurm_array_parallelism=jobs)
        try:
            self.executor.update_parameters(**options)
        except NameError as unknown:  # submitit's word for a parameter it does not know
            raise ValueError(f"--slurm: {' '.join(str(unknown).split())}") from unknown
        self.jobs, self.options = jobs, options

    def describe(self) -> dict[str, Any]:
        return {"launcher": "submitit", "cluster": self.executor.cluster, "jobs": self.jobs, "options": self.options}

    def run(self, tasks: Sequence[Task], names: Sequence[str]) -> dict[str, str]:
        """Submit every task, wait for all -> error message by name of the failed ones."""
        from submitit.helpers import as_completed as jobs_completed

        with self.executor.batch():
            jobs = [self.executor.submit(task) for task in tasks]
        named = {job.job_id: name for job, name in zip(jobs, names)}
        log.info(f"submitted {len(jobs)} jobs ({self.executor.cluster}); logs in {self.executor.folder}")
        failures: dict[str, str] = {}
        try:
            for done, job in enumerate(jobs_completed(jobs, poll_frequency=self.POLL_S), 1):
                error = job.exception()
                _report(named[job.job_id], None if error is None else _last_line(error), done, len(jobs), failures)
        except KeyboardInterrupt:
            for job in jobs:
                job.cancel(check=False)
            raise
        return failures


def _last_line(error: BaseException) -> str:
    """The message of a job's error: submitit wraps it with the job's whole traceback."""
    lines = [line for line in str(error).strip().splitlines() if line.strip()]
    return lines[-1] if lines else type(error).__name__
