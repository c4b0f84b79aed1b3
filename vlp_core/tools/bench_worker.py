"""One `vlp bench` process: one method over one version of the code, driven line by line.

Run as a script, `python bench_worker.py SPEC_JSON`, with the version to measure first on
PYTHONPATH, so that today's bench can time an older revision's `vlp_core` too: the only things it
imports from that version are `load_clip` and `build_method`. It prints one JSON line when ready,
then answers every command read from stdin with one JSON line:
  "train"   seconds of one training step (forward, loss, backward; the optimiser's update of the
            prompts is negligible and left out, so the prompts and the caches keyed on them stay put)
  "text"    seconds of the step's text part: the prompted text features, forward and backward
  "infer"   seconds of the class logits of the batch without gradients
  "memory"  the process's peak memory in MB (CUDA: allocated tensors; CPU: resident set)
"""

from __future__ import annotations

import json
import os
import platform
import resource
import sys
import time

import torch


def _cpu_name() -> str:
    """The CPU model as /proc/cpuinfo names it (or the platform's processor string)."""
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _setup(spec: dict) -> tuple[dict, dict]:
    """Load the model and the method of `spec`; -> (what to report about it, the timed operations)."""
    from vlp_core.backbone import load_clip

    try:
        from vlp_core.methods.registry import build_method
    except ImportError:  # a revision from before the method registry (`--compare` times old checkouts too)
        from vlp_core.engine.registry import build_method

    device = torch.device(spec["device"])
    clip = load_clip(spec["model"], spec["pretrained"], device=device)
    method = build_method(spec["method"], clip, spec["options"])
    classes = spec["classes"]
    method.set_classes(classes)
    generator = torch.Generator().manual_seed(0)
    size, batch = clip.image_size, spec["batch_size"]
    images = torch.randn(batch, 3, size, size, generator=generator).to(device)
    labels = (torch.arange(batch) % len(classes)).to(device)
    # one image per class, so that methods with class prototypes (DiSa) have one for every class
    method.prepare_training([(images[:1].expand(len(classes), -1, -1, -1), torch.arange(len(classes), device=device))])
    learned = [p for p in method.parameters() if p.requires_grad]

    def infer():
        with torch.no_grad():
            method.logits(images)

    def train():
        method.zero_grad(set_to_none=True)
        method.loss(images, labels)["total"].backward()

    def text():
        method.zero_grad(set_to_none=True)
        features = method.text_features()
        features = features if isinstance(features, tuple) else (features,)
        torch.stack([f.sum() for f in features]).sum().backward()

    ops = {"infer": infer, **({"train": train, "text": text} if learned else {})}
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else _cpu_name()
    info = {"trainable": sum(p.numel() for p in learned), "device_name": device_name,
            "threads": torch.get_num_threads(), "torch": torch.__version__}
    return info, ops


def _seconds(op, device: torch.device) -> float:
    """Wall seconds of `op()`, CUDA's queue drained before and after. Written here, not imported: the
    worker imports nothing of the version it measures beyond `load_clip` and `build_method`."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    op()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def _peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    answers = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # whatever else is printed goes to the log, not into the answers
    spec = json.loads(sys.argv[1])
    device = torch.device(spec["device"])
    info, ops = _setup(spec)
    for op in ops.values():  # warm-up, untimed
        op()
    answers.write(json.dumps({**info, "ops": sorted(ops)}) + "\n")
    for line in sys.stdin:
        command = line.strip()
        if command == "memory":
            answers.write(json.dumps({"peak_memory_mb": _peak_memory_mb(device)}) + "\n")
        else:
            answers.write(json.dumps({"seconds": _seconds(ops[command], device)}) + "\n")


if __name__ == "__main__":
    main()
