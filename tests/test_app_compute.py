"""The app's compute thread and its progress reports (no server needed)."""

import contextvars
import inspect
import threading

import gradio as gr
import pytest
import torch

from app import wiring
from app.compute import ComputeThread

WHO = contextvars.ContextVar("who", default="nobody")


def test_every_call_runs_on_one_thread_whoever_calls():
    compute = ComputeThread()
    seen = []
    callers = [threading.Thread(target=lambda: seen.append(compute.run(threading.get_ident))) for _ in range(3)]
    for caller in callers:
        caller.start()
        caller.join()
    seen.append(compute.run(threading.get_ident))
    assert len(set(seen)) == 1 and seen[0] != threading.get_ident()


def test_a_call_sees_the_callers_context_and_returns_or_raises_as_the_function():
    compute = ComputeThread()
    WHO.set("the caller")
    assert compute.run(WHO.get) == "the caller"
    assert compute.run(int, "ff", base=16) == 255
    with pytest.raises(ZeroDivisionError):
        compute.run(divmod, 1, 0)


def test_a_call_from_the_compute_thread_runs_at_once():
    compute = ComputeThread()
    assert compute.run(lambda: compute.run(lambda: threading.get_ident())) == compute.run(threading.get_ident)


def test_a_wrapped_event_function_keeps_its_signature_for_gradio():
    compute = ComputeThread()

    def on_classes(old, text: str, progress=gr.Progress()) -> tuple:
        return threading.get_ident(), text

    wrapped = compute.wrap(on_classes)
    assert inspect.signature(wrapped) == inspect.signature(on_classes) and wrapped.__name__ == "on_classes"
    ident, text = wrapped(None, "circle")
    assert text == "circle" and ident == compute.run(threading.get_ident) != threading.get_ident()


def test_a_wrapped_function_can_run_on_fewer_torch_threads_and_the_count_comes_back():
    compute = ComputeThread()
    original = compute.run(torch.get_num_threads)
    compute.run(torch.set_num_threads, 2)
    try:
        assert compute.wrap(torch.get_num_threads, threads=1)() == 1
        assert compute.run(torch.get_num_threads) == 2
        with pytest.raises(ZeroDivisionError):
            compute.wrap(divmod, threads=1)(1, 0)
        assert compute.run(torch.get_num_threads) == 2
        assert compute.wrap(torch.get_num_threads)() == 2  # no count given: as many as now
    finally:
        compute.run(torch.set_num_threads, original)


@pytest.mark.parametrize("cores, expected", [(1, 1), (2, 1), (8, 7)])
def test_views_leave_one_core_to_the_browser(monkeypatch, cores, expected):
    monkeypatch.setattr(torch, "get_num_threads", lambda: cores)
    assert wiring.view_threads() == expected


class Recorder:
    """A stand-in for gr.Progress: records (fraction, desc) of every report it gets."""

    def __init__(self):
        self.calls = []

    def __call__(self, fraction, desc=None):
        self.calls.append((fraction, desc))


@pytest.mark.parametrize("every, expected", [(0.0, [1, 2, 3, 4]), (3600.0, [4])])
def test_progress_reports_are_spaced_and_the_last_always_comes(every, expected):
    recorder = Recorder()
    report = wiring.progress_reporter(recorder, every=every)
    for done in range(1, 5):
        report(done, 4)
    assert [fraction * 4 for fraction, _ in recorder.calls] == expected
    assert recorder.calls[-1][1] == "Encoding the class names: template 4 of 4"

