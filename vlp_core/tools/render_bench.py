"""Rendering throughput, for `vlp bench`."""

from __future__ import annotations

import time

from vlp_core.data.synthworld.pretraining import pretraining_example
from vlp_core.data.synthworld.render import render


def render_benchmark(n: int = 2000, size: int = 64) -> dict:
    """Time drawing `n` pretraining scenes (all styles) at `size` px in this thread.

    Returns images_per_s (rendering only), specs_per_s (scene sampling and captions),
    end_to_end_per_s (both), and per_style images/s of rendering.
    """
    start = time.perf_counter()
    examples = [pretraining_example(i, seed=0) for i in range(n)]
    sample_s = time.perf_counter() - start
    for spec, _ in examples[:50]:
        render(spec, size)  # builds the per-size texture banks outside the timing
    per_style: dict[str, list[float]] = {}
    for spec, _ in examples:
        t0 = time.perf_counter()
        render(spec, size)
        per_style.setdefault(spec.style, []).append(time.perf_counter() - t0)
    render_s = sum(sum(times) for times in per_style.values())
    return {
        "n": n,
        "size": size,
        "images_per_s": n / render_s,
        "specs_per_s": n / sample_s,
        "end_to_end_per_s": n / (render_s + sample_s),
        "per_style": {style: len(t) / sum(t) for style, t in sorted(per_style.items())},
    }
