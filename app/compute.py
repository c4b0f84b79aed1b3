"""One thread for every torch computation of the served app: loading, start-up and every event.

Why one thread: torch's CPU kernels run their parallel loops on an OpenMP team that belongs to the
calling thread (libgomp, in torch's Linux wheels). Each thread that ever ran a parallel op keeps its
own team; once the app's threads' teams add up to more threads than the machine has cores (the main
thread's team from loading the model, plus one per server worker thread), libgomp stops letting
idle team members spin and every parallel op waits for them to be woken: the same handler ran
several times slower on any other thread of the process than on the main thread
(docs/performance.md).
With every computation on this one thread, one team of as many threads as cores exists, and an
event costs in the server what its handler costs alone.
"""

from __future__ import annotations

import contextvars
import functools
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, TypeVar

import torch

T = TypeVar("T")


class ComputeThread:
    """`run(fn, *args)` calls fn on the one compute thread and returns its result (or raises its
    error) to the caller, with the caller's context variables (gradio's progress bar and warnings
    find their event through them). Calls take turns in the order they arrive; a call made on the
    compute thread itself runs at once."""

    def __init__(self, name: str = "vlp-compute"):
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._thread: threading.Thread | None = None

    def run(self, fn: Callable[..., T], *args, **kwargs) -> T:
        if threading.current_thread() is self._thread:
            return fn(*args, **kwargs)
        context = contextvars.copy_context()
        return self._executor.submit(self._enter, context, fn, *args, **kwargs).result()

    def wrap(self, fn: Callable[..., T], threads: int | None = None) -> Callable[..., T]:
        """fn, run on the compute thread, with `threads` torch threads if given (then back to
        as many as before); its signature (and so gradio's special arguments, such as
        `progress=gr.Progress()` or an event's data) is fn's own."""
        @functools.wraps(fn)
        def on_compute_thread(*args, **kwargs):
            return self.run(on_threads, threads, fn, *args, **kwargs)
        return on_compute_thread

    def _enter(self, context: contextvars.Context, fn: Callable[..., T], *args, **kwargs) -> T:
        self._thread = threading.current_thread()
        return context.run(fn, *args, **kwargs)


def on_threads(threads: int | None, fn: Callable[..., T], *args, **kwargs) -> T:
    """fn(*args, **kwargs) with `threads` torch threads (None: as many as now), then as many as before."""
    before = torch.get_num_threads()
    if threads is None or threads == before:
        return fn(*args, **kwargs)
    torch.set_num_threads(threads)
    try:
        return fn(*args, **kwargs)
    finally:
        torch.set_num_threads(before)


COMPUTE = ComputeThread()
