"""Latency of the app on this machine: start-up, new class lists, every slider handler, and with
`--browser` what a person sees in a real browser.

`python scripts/app_bench.py [--model M] [--prompts DIR] [--repeats N] [--browser [--scroll]] [--start]`
prints p50 / p95 in milliseconds of each handler alone and with its pictures drawn (what a slider
move costs the server; on the compute thread, views with the threads the server gives them), and
the time to apply a class list of 32 and of 500 names no earlier list had (the frozen text
ensemble, every method's text, every view redrawn). `--browser` serves the app, opens it in
headless Debian chromium (playwright, never `playwright install`) and times, per slider, the step
from the input event to the updated picture (or text) painted in the page, split at the view's one
request (its resource timing): the page's work before the request leaves, the server's answer (the
handler, picture encoding, HTTP) and the rest (updating the page, fetching new pictures,
rendering); and applying the class lists from the button to the DiSa table showing the new names,
with the server's part of each event (gradio's profiler). Sliders are moved where they sit;
`--scroll` first scrolls each output into view, as a person watching it has it. `--start` times a
new `python app/main.py` to serving, warm (its files in the OS page cache) and cold (evicted
first). Nothing is asserted; run it with OMP_NUM_THREADS set to the cores you want to measure, and
read the figures with the machine's load (`uptime`) next to them.
"""

from __future__ import annotations

import os
import time

STARTED = time.perf_counter()  # before the heavy imports, so start-up includes them
os.environ.setdefault("GRADIO_PROFILING", "1")  # the server's part of each queued event (--browser)

import argparse  # noqa: E402
import socket  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from dataclasses import replace  # noqa: E402
from functools import partial  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Callable  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
if __package__ in (None, ""):  # run as a script: make the `app` and `scripts` packages importable
    sys.path.insert(0, str(ROOT))

from app import handlers, ui, views, wiring  # noqa: E402
from app.attribution import attribution_view  # noqa: E402
from app.compute import COMPUTE, on_threads  # noqa: E402
from app.handlers import DEFAULT_CLASSES, PREDICTED  # noqa: E402
from app.inputs import sample_keys  # noqa: E402
from app.layout import THRESHOLD_LABEL  # noqa: E402
from app.main import DEFAULT_PROMPTS, load, serve  # noqa: E402
from vlp_core.backbone import DEFAULT_MODEL  # noqa: E402
from vlp_core.data.synthworld import ALL_SHAPES, COLOURS, PATTERNS  # noqa: E402

CLASS_LIST_SIZES = (32, 500)
# one per class list applied, so each list's names are new to the frozen text cache
NEW_WORDS = iter(("small", "large", "bright", "dark", "pale", "shiny", "tiny", "huge", "matte", "glossy"))
# (tab, slider label, id of the output whose update ends the step, values the slider steps through)
SLIDER_STEPS = (
    ("DiSa saliency", "Masking ratio ρ", "disa-masked", (0.1, 0.2, 0.3, 0.4, 0.5)),
    ("GalLoP local prompts", "k1", "gallop-maps", (3, 4, 5, 6, 7)),
    ("GalLoP local prompts", THRESHOLD_LABEL, "ood-histogram", (1.1, 1.2, 1.3, 1.4, 1.5)),
    ("Live predictions", "Classes shown per method", "predictions-zeroshot", (2, 3, 4, 5, 6)),
)
# Steps and class lists are waited for by a MutationObserver (plus image load events), so the page
# does no work of its own while the server computes: polling the page's text on every animation frame
# costs headless chromium most of a core, which it takes from the server on a 2-core machine, and a
# person's browser does no such polling.
STEP_JS = """async ([label, value, target]) => {
  const slider = document.querySelector(`input[type=range][aria-label="range slider for ${label}"]`);
  const output = document.getElementById(target);
  const tracker = output.querySelector('[data-testid="status-tracker"]');  // its timer text is no result
  const shown = () => {
    const img = output.querySelector('img');
    if (img) return img.src;
    const walker = document.createTreeWalker(output, NodeFilter.SHOW_TEXT);
    let text = '';
    while (walker.nextNode()) if (!tracker?.contains(walker.currentNode)) text += walker.currentNode.data;
    return text;
  };
  const ready = () => [...output.querySelectorAll('img')].every(img => img.complete && img.naturalWidth > 0);
  const before = shown();
  performance.clearResourceTimings();
  const start = performance.now();
  const ms = await new Promise(resolve => {
    let done = false;
    const check = () => {
      if (done || shown() === before || !ready()) return;
      done = true;
      observer.disconnect();
      output.removeEventListener('load', check, true);
      requestAnimationFrame(() => resolve(performance.now() - start));  // the frame that paints it
    };
    const observer = new MutationObserver(check);
    observer.observe(output, {childList: true, subtree: true, attributes: true, characterData: true});
    output.addEventListener('load', check, true);  // a new picture's bytes arrived
    slider.value = value;
    slider.dispatchEvent(new Event('input', {bubbles: true}));
  });
  await new Promise(resolve => setTimeout(resolve, 100));  // resource entries are recorded after the load
  const entries = performance.getEntriesByType('resource');
  const pictures = entries.filter(r => r.name.includes('/file='));
  const request = entries.find(r => r.name.includes('/run/'));  // the view's one request (not queued)
  return [ms, pictures.reduce((sum, r) => sum + r.encodedBodySize, 0),
          request ? request.startTime - start : null, request ? request.responseEnd - request.startTime : null];
}"""
SHOWS_JS = """([target, word]) => new Promise(resolve => {
  const shows = () => (document.getElementById(target)?.textContent ?? '').includes(word);
  const observer = new MutationObserver(() => shows() && (observer.disconnect(), resolve()));
  observer.observe(document.body, {childList: true, subtree: true, characterData: true});
  if (shows()) { observer.disconnect(); resolve(); }
})"""


def timings(call: Callable[[int], object], repeats: int) -> np.ndarray:
    """Milliseconds of `call(i)` for i = 0..repeats-1, after one warm-up call."""
    call(repeats)
    times = []
    for i in range(repeats):
        start = time.perf_counter()
        call(i)
        times.append(1000 * (time.perf_counter() - start))
    return np.array(times)


def report(name: str, times) -> None:
    print(f"{name:48s} p50 {np.percentile(times, 50):8.1f} ms   p95 {np.percentile(times, 95):8.1f} ms"
          f"   (n={len(times)})")


def class_names(size: int, word: str) -> str:
    """`size` class names from SynthWorld's words, each starting with `word`."""
    names = [f"{word} {pattern} {colour} {shape}"
             for pattern in PATTERNS for colour in COLOURS for shape in ALL_SHAPES]
    return ", ".join(names[:size])


def handler_timings(models, session, repeats: int) -> None:
    """Every handler on its own, and with its pictures drawn."""
    keys, text, n = sample_keys(), ", ".join(DEFAULT_CLASSES), repeats
    ratios = np.linspace(0.05, 0.9, n + 1)
    patches = models.num_patches
    cases: dict[str, Callable[[int], object]] = {
        "new image (encode, all methods)": lambda i: handlers.load_sample(models, keys[i % len(keys)], text),
        "DiSa sliders: handler": lambda i: handlers.disa_view(models, session, PREDICTED, ratios[i], 0.9, i),
        "DiSa ρ/γ/seed: handler + picture": lambda i: views.disa_mask_outputs(models, session, PREDICTED, ratios[i], 0.9, i),
        "GalLoP top-k: handler": lambda i: handlers.gallop_view(session, PREDICTED, 1 + i % patches),
        "GalLoP top-k: handler + pictures": lambda i: views.gallop_outputs(session, PREDICTED, True, 1 + i % patches),
        "OOD threshold: handler + charts": lambda i: views.ood_outputs(session, "GL-MCM", 1.0, 1 + i / n),
        "predictions top-k: handler": lambda i: views.prediction_labels(models, session, 1 + i % 10),
        "learned prompts, a new class: handler + pictures": lambda i: views.learned_outputs(
            models, replace(session, pictures={}), session.classes[i % len(session.classes)], "GalLoP"),
        "attribution, integrated gradients (16)": lambda i: attribution_view(
            models, session, "disa", PREDICTED, "integrated_gradients", 16),
        "attribution, Grad-CAM": lambda i: attribution_view(models, session, "disa", PREDICTED, "gradcam"),
    }
    threads = wiring.view_threads()  # what the server redraws views with (new images and class lists: every core)
    for name, call in cases.items():
        heavy = "attribution" in name or "encode" in name
        report(name, timings(partial(on_threads, None if heavy else threads, call), max(5, n // 5) if heavy else n))
    for size in CLASS_LIST_SIZES:
        times = []
        for _ in range(2 if size > 100 else 3):
            text = class_names(size, next(NEW_WORDS))
            start = time.perf_counter()
            handlers.change_classes(models, session, text)
            times.append(1000 * (time.perf_counter() - start))
        report(f"apply {size} new class names (handler)", times)


def browser_timings(models, repeats: int, scroll: bool = False) -> None:
    """Slider steps and class lists in headless chromium, with where their time went; `scroll`:
    each step's output scrolled into view first (the browser then paints it on every step)."""
    from gradio.profiling import collector
    from playwright.sync_api import sync_playwright

    from scripts.app_screenshot import launch_chromium, open_app

    demo = serve(models)
    try:
        with sync_playwright() as playwright:
            browser = launch_chromium(playwright)
            page = open_app(browser, demo.local_url)
            for tab, label, target, values in SLIDER_STEPS:
                page.get_by_role("tab", name=tab).click()
                if scroll:
                    page.locator(f"#{target}").scroll_into_view_if_needed()
                page.wait_for_timeout(500)
                steps = []
                for i in range(repeats):
                    steps.append(page.evaluate(STEP_JS, [label, values[i % len(values)], target]))
                    page.wait_for_timeout(150)  # an idle gap: no step waits in the queue behind the last one
                _report_step(f"{tab}: {label}", steps)
            page.get_by_role("tab", name="DiSa saliency").click()
            for size in CLASS_LIST_SIZES:
                collector.clear()
                report(f"apply {size} new class names (browser)", [_apply(page, size, next(NEW_WORDS))
                                                                    for _ in range(2 if size > 100 else 3)])
                traces = collector.get_all()
                server = {name: statistics.median(t["total_ms"] for t in traces if t["fn_name"].startswith(name))
                          for name in ("set_classes", "refresh") if any(t["fn_name"].startswith(name) for t in traces)}
                print(f"{'':48s} server p50 ms: " + " · ".join(f"{k} {v:.0f}" for k, v in server.items())
                      + " (encode the names, then redraw every view)")
            browser.close()
    finally:
        demo.close()


def _report_step(name: str, steps: list) -> None:
    """p50 of the steps as seen in the browser, split at the view's request: the page's own work
    before it leaves, the server's answer (handler, pictures, HTTP) and the rest (updating the page,
    fetching new pictures, rendering)."""
    browser_ms = [ms for ms, *_ in steps]
    report(f"{name} (browser)", browser_ms)
    fetched = [size for _, size, *_ in steps if size > 0]  # a picture seen before comes from the browser's cache
    pictures = (f"pictures fetched {statistics.median(fetched) / 1024:.1f} KiB per step that fetched any"
                f" ({len(fetched)} of {len(steps)} steps; the others reused pictures the browser had)"
                if fetched else "no pictures fetched")
    if any(before is None for _, _, before, _ in steps):  # a queued event: a join request and an event stream
        print(f"{'':48s} {pictures}")
        return
    sent = statistics.median(before for _, _, before, _ in steps)
    answered = statistics.median(server for *_, server in steps)
    rest = statistics.median(ms - before - server for ms, _, before, server in steps)
    print(f"{'':48s} p50 ms: the page's work before the request {sent:.1f} · the server's answer {answered:.1f}"
          f" · the rest (page update, picture fetch, render) {rest:.1f}; {pictures}")


def _apply(page, size: int, word: str) -> float:
    """Milliseconds from pressing *Apply classes* with `size` new names starting with `word` to the
    DiSa table showing them (every view is redrawn in the same event)."""
    page.get_by_label("Classes (comma or new line separated; type novel ones too)").fill(class_names(size, word))
    start = time.perf_counter()
    page.get_by_role("button", name="Apply classes").click()
    page.evaluate(SHOWS_JS, ["disa-table", word])
    return 1000 * (time.perf_counter() - start)


def start_to_serving(cold: bool) -> float:
    """Seconds from starting `python app/main.py` (a new process, default flags) to its "ready"
    line, when it serves. cold: first evict the files it reads (this Python's installation and the
    repository) from the OS page cache, as after a reboot (posix_fadvise, no privileges needed)."""
    if cold:
        for folder in dict.fromkeys((Path(sys.prefix), Path(sys.base_prefix), ROOT)):
            evict(folder)
    start = time.perf_counter()
    command = [sys.executable, "-u", str(ROOT / "app" / "main.py"), "--port", str(free_port())]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True) as process:
        try:
            for line in process.stdout:
                if line.startswith("VLP Lab ready"):
                    return time.perf_counter() - start
            raise RuntimeError(f"app/main.py stopped (exit code {process.wait()}) before serving")
        finally:
            process.terminate()


def evict(folder: Path) -> None:
    """Ask the OS to drop the cached pages of every file under `folder` (unreadable files skipped)."""
    for path in folder.rglob("*"):
        try:
            descriptor = os.open(path, os.O_RDONLY)
        except OSError:
            continue
        try:
            os.posix_fadvise(descriptor, 0, 0, os.POSIX_FADV_DONTNEED)
        except OSError:
            pass  # a folder or special file: nothing cached to drop
        finally:
            os.close(descriptor)


def free_port() -> int:
    """A TCP port nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--pretrained", default=None)
    parser.add_argument("--prompts", default=str(DEFAULT_PROMPTS))
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--browser", action="store_true", help="also time slider steps in headless chromium")
    parser.add_argument("--scroll", action="store_true",
                        help="with --browser: scroll each slider's output into view before timing its steps")
    parser.add_argument("--start", action="store_true",
                        help="also time `python app/main.py` to serving, warm and cold (OS page cache evicted)")
    args = parser.parse_args(argv)

    start = time.perf_counter()
    models = load(args.model, args.pretrained, args.prompts)
    loaded = time.perf_counter()
    COMPUTE.run(ui.build_app, models)
    done = time.perf_counter()
    print(f"start-up {done - STARTED:.2f} s: imports {start - STARTED:.2f} s, models {loaded - start:.2f} s, "
          f"app {done - loaded:.2f} s ({models.bundle.name}, {models.num_patches} patches, "
          f"{os.environ.get('OMP_NUM_THREADS', 'default')} threads)")
    session = COMPUTE.run(handlers.load_sample, models, sample_keys()[0], ", ".join(DEFAULT_CLASSES)).session
    COMPUTE.run(handler_timings, models, session, args.repeats)  # where the server runs them
    if args.browser:
        browser_timings(models, max(10, args.repeats // 2), args.scroll)
    if args.start:
        warm = [start_to_serving(cold=False) for _ in range(3)]
        print(f"python app/main.py to serving: warm p50 {statistics.median(warm):.1f} s (n=3), "
              f"cold {start_to_serving(cold=True):.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
