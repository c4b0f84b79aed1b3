"""`vlp bench`: time per training step, images/s and peak memory per method, side by side."""

from __future__ import annotations

import resource
import statistics
import time

import torch

from vlp_core.backbone import ClipBundle
from vlp_core.methods.base import PromptMethod
from vlp_core.methods.registry import build_method


def _peak_memory_mb(device: torch.device) -> float:
    """Peak CUDA memory allocated, or the process's peak resident set on the CPU (MB)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _timed(fn, repeats: int, device: torch.device) -> list[float]:
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    return times


def bench_method(method: PromptMethod, images: torch.Tensor, labels: torch.Tensor, steps: int) -> dict:
    """Median train-step and inference time of `method` on one batch (after one warm-up call)."""
    device = method.device
    optimizer = torch.optim.SGD([p for p in method.parameters() if p.requires_grad] or [torch.zeros(1)], lr=0.0)
    if method.trainable:  # one image per class, so every class has a prototype
        num_classes = len(method.class_names)
        method.prepare_training([(images[:1].expand(num_classes, -1, -1, -1),
                                  torch.arange(num_classes, device=images.device))])

    def step():
        optimizer.zero_grad(set_to_none=True)
        method.loss(images, labels)["total"].backward()
        optimizer.step()

    def infer():
        with torch.no_grad():
            method.logits(images)

    row = {"method": method.name, "batch": images.shape[0],
           "trainable": sum(p.numel() for p in method.parameters() if p.requires_grad)}
    if method.trainable:
        train_s = statistics.median(_timed(step, steps + 1, device)[1:])
        row.update(train_step_ms=1000 * train_s, train_images_per_s=images.shape[0] / train_s)
    infer_s = statistics.median(_timed(infer, steps + 1, device)[1:])
    row.update(eval_images_per_s=images.shape[0] / infer_s, peak_memory_mb=_peak_memory_mb(device))
    return row


def bench(clip: ClipBundle, methods: list[str], class_names: list[str], batch_size: int, steps: int) -> list[dict]:
    """`bench_method` for each method on random images of the model's size, C = len(class_names)."""
    generator = torch.Generator().manual_seed(0)
    size = clip.image_size
    images = torch.randn(batch_size, 3, size, size, generator=generator).to(clip.model.logit_scale.device)
    labels = (torch.arange(batch_size) % len(class_names)).to(images.device)
    rows = []
    for name in methods:
        method = build_method(name, clip)
        method.set_classes(class_names)
        rows.append(bench_method(method, images, labels, steps))
    return rows
