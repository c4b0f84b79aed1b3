"""One trainer for every method: SGD + cosine schedule with constant warm-up, mixed precision,
checkpoints, resume, and one run over several processes (torchrun + DistributedDataParallel).

Every random choice of an epoch is a pure function of (seed, epoch, image): the order of the items,
each image's crop (`make_loader`) and each image's draws in the method (masks, prompt dropout), so a
run resumed from its last checkpoint reaches the same final prompts as an uninterrupted one, and a
run split over N processes the same as on one (up to float round-off). A checkpoint records what its
run is (method, method options, training settings, and the caller's `record`: data, classes, shots,
...); resuming into a folder that holds another run is refused with what differs. The number of
processes is not part of a run: a checkpoint resumes with any.

Distributed (`distributed.start` joined torchrun's process group): every process holds the whole
method, takes its share of each global batch (`batch_size` is the global batch) and weights its loss
by that share, so DistributedDataParallel's gradient average is the gradient of the global batch's
loss; the main process alone computes the per-run constants (shared with the others), writes
checkpoints and shows progress.
"""

from __future__ import annotations

import json
import logging
import math
import time
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from vlp_core.backbone import ClipBundle, FrozenTextFeatures
from vlp_core.data.loaders import GlobalBatches, item_seed, start_epoch
from vlp_core.engine import distributed
from vlp_core.engine.run_log import RunLog
from vlp_core.files import write_atomically, write_text_atomically
from vlp_core.methods.base import PromptMethod
from vlp_core.methods.registry import build_method, evaluated_checkpoint

CHECKPOINT_TENSORS = "checkpoint.safetensors"
CHECKPOINT_META = "checkpoint.json"
EPOCH_TENSORS = "epochs"  # the folder of each epoch's learned tensors, when a run keeps them
PRECISIONS = ("fp32", "bf16", "fp16")
log = logging.getLogger("vlp")


@dataclass
class TrainConfig:
    """Optimisation settings; defaults are PromptSRC's base-to-novel recipe (DiSa inherits it)."""

    epochs: int = 20
    batch_size: int = 4  # the global batch, split over the processes of a distributed run
    lr: float = 0.0025
    momentum: float = 0.9
    weight_decay: float = 5e-4
    warmup_epochs: int = 1  # constant warm-up epochs before the cosine schedule
    warmup_lr: float = 1e-5
    seed: int = 1
    precision: str = "fp32"  # fp32 | bf16 (autocast) | fp16 (CUDA autocast + grad scaler)
    crop_scale: tuple[float, float] = (0.08, 1.0)  # RandomResizedCrop's area range (the papers')
    progress: bool = True


@dataclass
class TrainResult:
    epochs_run: int
    history: list[dict] = field(default_factory=list)  # per epoch: lr, mean of each loss term, seconds


class NonFiniteLossError(RuntimeError):
    """A loss term became NaN or infinite; training stops instead of learning from it."""


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM) during training; `epoch` (1-based) was running, the epochs before it are
    saved in `out_dir` (when there is one)."""

    def __init__(self, epoch: int, epochs: int, out_dir: Path | None):
        super().__init__(f"interrupted at epoch {epoch} of {epochs}")
        self.epoch, self.epochs, self.out_dir = epoch, epochs, out_dir


class RunMismatchError(ValueError):
    """A checkpoint folder holds a run other than the one asked for; the message says what differs."""


def resolve_device(name: str | None = None) -> torch.device:
    """`name` as a device; None means CUDA when available, else the CPU."""
    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} was asked for but this torch has no usable CUDA device; "
                         f"use --device cpu (or install a CUDA build of torch on a machine with a GPU)")
    return device


def resolve_precision(requested: str | None, recipe_precision: str, device: torch.device) -> str:
    """The precision a run uses: `requested` if given (fp16 only on CUDA), else the recipe's on CUDA
    and fp32 on the CPU."""
    precision = requested or (recipe_precision if device.type == "cuda" else "fp32")
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "fp16" and device.type != "cuda":
        raise ValueError("fp16 autocast with a grad scaler runs on CUDA; on the CPU use --precision bf16 or fp32")
    return precision


def autocast(precision: str, device: torch.device) -> tuple[AbstractContextManager, torch.amp.GradScaler | None]:
    """The autocast context of a training step and the grad scaler (fp16 only) for `precision`."""
    if precision == "fp32":
        return nullcontext(), None
    dtype = torch.float16 if precision == "fp16" else torch.bfloat16
    scaler = torch.amp.GradScaler(device.type) if precision == "fp16" else None
    return torch.autocast(device.type, dtype=dtype), scaler


def learning_rate(config: TrainConfig, epoch: int) -> float:
    """LR of 0-based `epoch`: `warmup_lr` for the warm-up epochs, then cosine over `epochs`.

    Matches Dassl's ConstantWarmupScheduler + CosineAnnealingLR(T_max=epochs) stepped per epoch:
    lr_e = lr/2 * (1 + cos(pi * (e - W) / epochs)) for e >= W.
    """
    if epoch < config.warmup_epochs:
        return config.warmup_lr
    return 0.5 * config.lr * (1 + math.cos(math.pi * (epoch - config.warmup_epochs) / config.epochs))


def epoch_seed(seed: int, epoch: int) -> int:
    """The RNG seed of one epoch (data order; with `item_seed`, each image's crop and draws)."""
    return seed * 100_003 + epoch


def _check_finite(terms: dict[str, float], epoch: int, step: int) -> None:
    if not all(math.isfinite(v) for v in terms.values()):
        values = ", ".join(f"{k}={v:.4g}" for k, v in terms.items())
        raise NonFiniteLossError(
            f"non-finite loss at epoch {epoch + 1}, step {step + 1}: {values}. Nothing was saved for "
            f"this epoch; lower the learning rate or use --precision fp32, then resume."
        )


def train(
    method: PromptMethod,
    loader: DataLoader,
    config: TrainConfig,
    out_dir: str | Path | None = None,
    resume: bool = False,
    prepare_loader: DataLoader | None = None,
    record: dict[str, Any] | None = None,
    label: str = "",
    keep_epochs: bool = False,
) -> TrainResult:
    """Train `method`'s learned tensors on `loader` (a `make_loader(..., shuffle=True)`) for
    `config.epochs` epochs, on this process or over the processes of a distributed run.

    prepare_loader: the training split with the test transform, handed once to
        `method.prepare_training` (the constant features: teacher, prototypes), outside autocast.
    out_dir: where a checkpoint (learned tensors + optimiser state, safetensors + JSON) is written
        after every epoch, with the run's metrics and curves (`run_log`); with `resume=True` training
        continues from it, if it holds the same run (method, options, `config` and `record`), else
        `RunMismatchError`.
    record: what the run is beyond the method and `config` (data, classes, shots, ...), JSON-ready.
    label: names the run in the progress bar and on its curves.
    keep_epochs: also keep each epoch's learned tensors (`epochs/epoch_<N>.safetensors`, before GPA
        replaces the last epoch's by its aggregate), for `load_trained(..., epoch=N)`.
    Ctrl-C raises `TrainingInterrupted`, the finished epochs saved.
    """
    _check_split(method, loader)
    params = [p for p in method.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    result = TrainResult(epochs_run=0)
    out_dir = Path(out_dir) if out_dir is not None else None
    if resume and out_dir is not None and (out_dir / CHECKPOINT_META).is_file():
        result = _load_checkpoint(out_dir, method, optimizer, config, record or {})
        done = "already finished" if result.epochs_run >= config.epochs else "resuming"
        log.info(f"{done}: {out_dir} holds epochs 1-{result.epochs_run} of {config.epochs}")
    if prepare_loader is not None:
        prepare_constants(method, prepare_loader)
    loss_of = distributed.loss_function(method)
    step_context, scaler = autocast(config.precision, method.device)
    writes = out_dir is not None and distributed.is_main()
    run_log = None
    if writes:
        out_dir.mkdir(parents=True, exist_ok=True)
        _drop_epoch_tensors(out_dir, after=result.epochs_run)
        run_log = RunLog(out_dir, result.epochs_run, len(loader), label, finished=result.epochs_run >= config.epochs)
    epoch = result.epochs_run
    try:
        for epoch in range(result.epochs_run, config.epochs):
            _train_epoch(method, loader, optimizer, config, epoch, loss_of, step_context, scaler, result, label,
                         run_log)
            if writes and keep_epochs:
                _save_epoch_tensors(out_dir, method, epoch + 1)
            method.on_epoch_end(epoch, config.epochs)
            if writes:
                _save_checkpoint(out_dir, method, optimizer, config, result, record or {})
                run_log.epoch(result.history[-1], last=epoch + 1 == config.epochs)
    except KeyboardInterrupt as interrupt:
        raise TrainingInterrupted(epoch + 1, config.epochs, out_dir) from interrupt
    finally:
        if run_log is not None:
            run_log.close()
    method.eval()
    return result


def _check_split(method: PromptMethod, loader: DataLoader) -> None:
    """Refuse a loader that splits batches over another number of processes than the run has, and a
    method whose loss cannot be split."""
    processes, sampler = distributed.world_size(), loader.batch_sampler
    if isinstance(sampler, GlobalBatches) and (sampler.rank, sampler.world_size) != (distributed.rank(), processes):
        raise ValueError(f"the loader gives process {sampler.rank} of {sampler.world_size} its share, but this is "
                         f"process {distributed.rank()} of {processes}: build it with "
                         f"make_loader(..., rank=..., world_size=...) of this run")
    if processes > 1:
        method.check_batch_split()


def prepare_constants(method: PromptMethod, prepare_loader: DataLoader) -> None:
    """The method's per-run constants: computed by the main process, handed to the others."""
    device, main = method.device, distributed.is_main()
    if main:
        with torch.no_grad():
            method.prepare_training((_to(x, device), _to(y, device)) for x, y in prepare_loader)
    shared = distributed.share_from_main(method.training_constants() if main else {}, device)
    if not main:
        method.load_training_constants(shared)


def _to(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A (pinned) batch copied to `device` without blocking the host."""
    return tensor.to(device, non_blocking=True)


def _train_epoch(method: PromptMethod, loader: DataLoader, optimizer, config: TrainConfig, epoch: int,
                 loss_of, step_context, scaler, result: TrainResult, label: str, run_log: RunLog | None) -> None:
    """One epoch's steps at `learning_rate(config, epoch)`; appends the global batches' mean loss terms,
    seconds, images/s and processes to `result.history`, and each step to `run_log`. `loss_of(images,
    labels)`: the method's loss, or the same through DDP."""
    seed = epoch_seed(config.seed, epoch)
    torch.manual_seed(seed)
    steps = start_epoch(loader, seed)
    batches = global_batch_sizes(loader)
    lr = learning_rate(config, epoch)
    for group in optimizer.param_groups:
        group["lr"] = lr
    method.train()
    sums: dict[str, float] = {}
    started = clock = time.perf_counter()
    desc = f"{label} · epoch {epoch + 1}/{config.epochs}" if label else f"epoch {epoch + 1}/{config.epochs}"
    bar = tqdm(loader, desc=desc, disable=not (config.progress and distributed.is_main()), leave=False)
    for step, ((images, labels), (indices, share)) in enumerate(zip(bar, steps)):
        values = train_step(method, optimizer, loss_of, step_context, scaler, images, labels,
                            [item_seed(seed, i, "draws") for i in indices], share, epoch, step)
        now = time.perf_counter()
        if run_log is not None:
            run_log.step(epoch + 1, step + 1, lr, values, now - clock, batches[step])
        clock = now
        for name, value in values.items():
            sums[name] = sums.get(name, 0.0) + value
        bar.set_postfix({k: f"{v / (step + 1):.3f}" for k, v in sums.items()})
    seconds = time.perf_counter() - started
    result.history.append({"epoch": epoch + 1, "lr": lr, "seconds": seconds,
                           **{k: v / max(len(steps), 1) for k, v in sums.items()},
                           "images_per_s": sum(batches) / seconds if seconds > 0 else 0.0,
                           "processes": distributed.world_size()})
    result.epochs_run = epoch + 1


def train_step(method: PromptMethod, optimizer, loss_of, step_context, scaler, images: torch.Tensor,
               labels: torch.Tensor, draw_seeds: list[int], share: float, epoch: int = 0,
               step: int = 0) -> dict[str, float]:
    """One optimisation step on this process's `share` of a global batch (images (B, 3, S, S), labels
    (B,), each image's draws seeded by `draw_seeds`) -> the global batch's loss terms. A non-finite
    term stops it (`NonFiniteLossError`, naming 0-based `epoch` and `step` 1-based)."""
    device, processes = method.device, distributed.world_size()
    with step_context, method.drawing_per_image(draw_seeds):
        terms = loss_of(_to(images, device), _to(labels, device))
    values = dict(zip(terms, distributed.global_values(terms, share).tolist()))
    _check_finite(values, epoch, step)
    total = terms["total"] * (processes * share)  # DDP averages gradients over the processes
    optimizer.zero_grad(set_to_none=True)
    if scaler is not None:
        scaler.scale(total).backward()
        scaler.step(optimizer)
        scaler.update()
    else:
        total.backward()
        optimizer.step()
    return values


def global_batch_sizes(loader: DataLoader) -> list[int]:
    """The number of images of each global batch of a training loader's epoch (the last may be smaller)."""
    sampler: GlobalBatches = loader.batch_sampler
    return [min(sampler.batch_size, sampler.size - start) for start in range(0, sampler.size, sampler.batch_size)]


def _epoch_tensors_path(out_dir: Path, epoch: int) -> Path:
    return out_dir / EPOCH_TENSORS / f"epoch_{epoch}.safetensors"


def _save_epoch_tensors(out_dir: Path, method: PromptMethod, epoch: int) -> None:
    """The learned tensors as they are at the end of `epoch` (1-based), for `load_trained(..., epoch)`."""
    tensors = {k: v.contiguous() for k, v in method.trainable_state_dict().items()}
    write_atomically(_epoch_tensors_path(out_dir, epoch), lambda temporary: save_file(tensors, str(temporary)))


def _drop_epoch_tensors(out_dir: Path, after: int) -> None:
    """Remove the kept tensors of epochs after `after` (an interrupted run's, or all on a fresh start)."""
    for epoch in kept_epochs(out_dir):
        if epoch > after:
            _epoch_tensors_path(out_dir, epoch).unlink()


def kept_epochs(folder: str | Path) -> list[int]:
    """The epochs whose learned tensors a run folder kept (trained with `keep_epochs`), in order."""
    found = Path(folder).glob(f"{EPOCH_TENSORS}/epoch_*.safetensors")
    return sorted(int(path.stem.removeprefix("epoch_")) for path in found)


def _run_identity(method: PromptMethod, config: TrainConfig, record: dict[str, Any]) -> dict[str, Any]:
    """What a checkpoint must match to be resumed: method, its options, settings, clip and record."""
    return {"method": method.name, "method_config": json.loads(json.dumps(asdict(method.config))),
            "config": json.loads(json.dumps({k: v for k, v in asdict(config).items() if k != "progress"})),
            "clip": {"model": method.clip.name, "pretrained": method.clip.pretrained},
            "record": json.loads(json.dumps(record))}


def _save_checkpoint(out_dir: Path, method: PromptMethod, optimizer, config: TrainConfig,
                     result: TrainResult, record: dict[str, Any]) -> None:
    """Write tensors and metadata to temporary files, then rename: a kill never leaves half a file."""
    out_dir.mkdir(parents=True, exist_ok=True)
    tensors = {f"method.{k}": v.contiguous() for k, v in method.trainable_state_dict().items()}
    for index, param in enumerate(optimizer.param_groups[0]["params"]):
        buffer = optimizer.state.get(param, {}).get("momentum_buffer")
        if buffer is not None:
            tensors[f"optim.{index}.momentum_buffer"] = buffer.detach().contiguous()
    identity = _run_identity(method, config, record)
    meta = {**identity, "config": asdict(config), "classes": method.class_names,
            "epochs_run": result.epochs_run, "history": result.history}
    write_atomically(out_dir / CHECKPOINT_TENSORS, lambda temporary: save_file(tensors, str(temporary)))
    write_text_atomically(out_dir / CHECKPOINT_META, json.dumps(meta, indent=2))  # last: it names the epochs saved


def differences(saved: dict[str, Any], wanted: dict[str, Any], prefix: str = "") -> list[str]:
    """"key: saved -> wanted" for every leaf of two nested dicts that differs (keys of either)."""
    lines = []
    for key in sorted(set(saved) | set(wanted)):
        old, new = saved.get(key), wanted.get(key)
        if isinstance(old, dict) and isinstance(new, dict):
            lines += differences(old, new, f"{prefix}{key}.")
        elif old != new:
            lines.append(f"{prefix}{key}: {_short(old)} -> {_short(new)}")
    return lines


# keys of a run's identity, the most telling difference first (a prefix ending in "." covers a group)
MOST_TELLING = ("method", "clip.", "record.dataset", "record.classes", "record.shots", "config.seed",
                "record.few_shot.", "method_config.", "config.epochs", "config.batch_size", "config.lr", "config.",
                "record.")
DIFFERENCES_SHOWN = 6


def telling(changed: list[str]) -> list[str]:
    """`differences` lines, the most telling first (`MOST_TELLING`), at most `DIFFERENCES_SHOWN` and a
    line naming the keys of the others; when the method differs, its options' lines are left out (they
    are another method's)."""
    def rank(line: str) -> int:
        key = line.split(":", 1)[0]
        return next((i for i, p in enumerate(MOST_TELLING) if key == p or (p.endswith(".") and key.startswith(p))),
                    len(MOST_TELLING))

    if any(line.startswith("method:") for line in changed):
        changed = [line for line in changed if not line.startswith("method_config.")]
    ordered = sorted(changed, key=rank)
    shown, others = ordered[:DIFFERENCES_SHOWN], ordered[DIFFERENCES_SHOWN:]
    if others:
        shown.append(f"and {len(others)} more: " + ", ".join(line.split(":", 1)[0] for line in others))
    return shown


def _short(value: Any, limit: int = 60) -> str:
    text = json.dumps(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _load_checkpoint(out_dir: Path, method: PromptMethod, optimizer, config: TrainConfig,
                     record: dict[str, Any]) -> TrainResult:
    meta = json.loads((out_dir / CHECKPOINT_META).read_text())
    saved = {key: meta.get(key) for key in ("method", "method_config", "config", "clip", "record")}
    saved["config"] = {k: v for k, v in (saved["config"] or {}).items() if k != "progress"}
    changed = differences(saved, _run_identity(method, config, record))
    if changed:
        raise RunMismatchError(f"{out_dir} holds another run (saved -> asked for):\n  " + "\n  ".join(telling(changed))
                               + "\nUse the same settings to resume it, another output folder, or --overwrite to "
                                 "start afresh.")
    tensors = load_file(str(out_dir / CHECKPOINT_TENSORS), device=str(method.device))
    method.load_trainable_state_dict({k[len("method."):]: v for k, v in tensors.items() if k.startswith("method.")})
    for index, param in enumerate(optimizer.param_groups[0]["params"]):
        key = f"optim.{index}.momentum_buffer"
        if key in tensors:
            optimizer.state[param]["momentum_buffer"] = tensors[key]
    return TrainResult(epochs_run=meta["epochs_run"], history=meta["history"])


def checkpoint_meta(folder: str | Path) -> dict[str, Any]:
    """The JSON of the checkpoint in `folder`; FileNotFoundError says what was expected."""
    folder = Path(folder)
    meta_path = folder / CHECKPOINT_META
    if not meta_path.is_file():
        raise FileNotFoundError(f"no prompt checkpoint in {folder}: expected {meta_path} and "
                                f"{folder / CHECKPOINT_TENSORS} as written by `vlp train --out {folder}`")
    return json.loads(meta_path.read_text())


def load_trained(folder: str | Path, clip: ClipBundle, frozen_text: FrozenTextFeatures | None = None,
                 epoch: int | None = None) -> PromptMethod:
    """A method restored from a trainer checkpoint folder: its config, class list and learned tensors,
    those it is scored with (`evaluated_checkpoint`: the last epoch's, or GPA's aggregate), or with
    `epoch` those of that epoch (kept by a run trained with `keep_epochs`)."""
    folder = Path(folder)
    meta = checkpoint_meta(folder)
    trained_on = meta.get("clip", {}).get("model")
    if trained_on is not None and trained_on != clip.name:
        raise ValueError(f"the prompts in {folder} were trained on CLIP {trained_on!r}, not {clip.name!r}: "
                         f"load that model (--model {trained_on}) or train prompts for this one")
    method = build_method(meta["method"], clip, meta["method_config"], frozen_text)
    method.set_classes(meta["classes"])  # before the tensors: class-specific contexts are created here
    if epoch is None:
        tensors = load_file(str(folder / CHECKPOINT_TENSORS), device=str(method.device))
        tensors = {k[len("method."):]: v for k, v in tensors.items() if k.startswith("method.")}
    else:
        tensors = load_file(str(_kept_epoch_file(folder, meta, epoch)), device=str(method.device))
    method.load_trainable_state_dict(tensors)
    method.eval()
    return method


def _kept_epoch_file(folder: Path, meta: dict[str, Any], epoch: int) -> Path:
    """The file of `epoch`'s tensors; a FileNotFoundError says which epochs the run kept and what the
    folder's own checkpoint holds instead."""
    path = _epoch_tensors_path(folder, epoch)
    if path.is_file():
        return path
    kept = kept_epochs(folder)
    has = f"it kept epochs {', '.join(map(str, kept))}" if kept else \
        "it kept no epoch's tensors (train with --keep-epochs to keep them)"
    raise FileNotFoundError(f"{folder} has no tensors of epoch {epoch}: {has}. Without --epoch, eval scores what "
                            f"the run is scored with: {scored_checkpoint(meta)}")


def scored_checkpoint(meta: dict[str, Any]) -> str:
    """Which tensors a plain evaluation of a checkpoint (its `checkpoint_meta`) scores, in words: those
    its run is scored with ("last epoch", "GPA aggregate of epochs 1-N"), or an unfinished run's last
    trained epoch."""
    epochs, done = meta["config"]["epochs"], meta["epochs_run"]
    finished = evaluated_checkpoint(meta["method"], meta["method_config"], epochs)
    if done >= epochs:
        return finished
    return f"epoch {done} of {epochs} (unfinished; finished, it is scored with its {finished})"
