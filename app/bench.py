"""Latency of the app on this machine: start-up, encoding a new image, and every slider handler.

`python app/bench.py [--model M] [--prompts DIR] [--repeats N]` prints p50 / p95 in milliseconds of
each handler alone and with its pictures drawn (what a slider move costs the server). Nothing is
asserted; run it with OMP_NUM_THREADS set to the cores you want to measure.
"""

from __future__ import annotations

import time

STARTED = time.perf_counter()  # before the heavy imports, so start-up includes them

import argparse  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Callable  # noqa: E402

import numpy as np  # noqa: E402

if __package__ in (None, ""):  # run as a script: make the `app` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app import handlers, ui  # noqa: E402
from app.attribution import attribution_view  # noqa: E402
from app.handlers import DEFAULT_CLASSES, PREDICTED  # noqa: E402
from app.inputs import sample_keys  # noqa: E402
from app.main import DEFAULT_PROMPTS, load  # noqa: E402
from vlp_core.backbone import DEFAULT_MODEL  # noqa: E402


def timings(call: Callable[[int], object], repeats: int) -> np.ndarray:
    """Milliseconds of `call(i)` for i = 0..repeats-1, after one warm-up call."""
    call(repeats)
    times = []
    for i in range(repeats):
        start = time.perf_counter()
        call(i)
        times.append(1000 * (time.perf_counter() - start))
    return np.array(times)


def report(name: str, times: np.ndarray) -> None:
    print(f"{name:42s} p50 {np.percentile(times, 50):8.1f} ms   p95 {np.percentile(times, 95):8.1f} ms"
          f"   (n={len(times)})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--pretrained", default=None)
    parser.add_argument("--prompts", default=str(DEFAULT_PROMPTS))
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args(argv)

    start = time.perf_counter()
    models = load(args.model, args.pretrained, args.prompts)
    loaded = time.perf_counter()
    ui.build_app(models)
    done = time.perf_counter()
    print(f"start-up {done - STARTED:.2f} s: imports {start - STARTED:.2f} s, models {loaded - start:.2f} s, "
          f"app {done - loaded:.2f} s ({models.bundle.name}, {models.num_patches} patches)")

    keys, text, n = sample_keys(), ", ".join(DEFAULT_CLASSES), args.repeats
    session = handlers.load_sample(models, keys[0], text).session
    ratios = np.linspace(0.05, 0.9, n + 1)
    patches = models.num_patches
    cases: dict[str, Callable[[int], object]] = {
        "new image (encode, all methods)": lambda i: handlers.load_sample(models, keys[i % len(keys)], text),
        "DiSa sliders: handler": lambda i: handlers.disa_view(models, session, PREDICTED, ratios[i], 0.9, i),
        "DiSa sliders: handler + pictures": lambda i: ui.disa_outputs(models, session, PREDICTED, ratios[i], 0.9, i),
        "GalLoP top-k: handler": lambda i: handlers.gallop_view(session, PREDICTED, 1 + i % patches),
        "GalLoP top-k: handler + pictures": lambda i: ui.gallop_outputs(session, PREDICTED, True, 1 + i % patches),
        "OOD threshold: handler + text": lambda i: ui.ood_outputs(session, "GL-MCM", 1.0, 1 + i / n),
        "predictions top-k: handler + table": lambda i: ui.prediction_outputs(models, session, 1 + i % 10),
        "attribution, integrated gradients (16)": lambda i: attribution_view(
            models, session, "disa", PREDICTED, "integrated_gradients", 16),
        "attribution, Grad-CAM": lambda i: attribution_view(models, session, "disa", PREDICTED, "gradcam"),
    }
    for name, call in cases.items():
        report(name, timings(call, n if "attribution" not in name and "encode" not in name else max(5, n // 5)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
