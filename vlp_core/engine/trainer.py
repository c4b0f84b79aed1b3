"""One trainer for every method: SGD + cosine schedule with constant warm-up, checkpoints, resume.

Every epoch starts from RNG states that are a pure function of (seed, epoch), so a run resumed
from its last checkpoint reaches the same final prompts as an uninterrupted one.
"""

from __future__ import annotations

import json
import math
import os
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from vlp_core.methods.base import PromptMethod

CHECKPOINT_TENSORS = "checkpoint.safetensors"
CHECKPOINT_META = "checkpoint.json"


@dataclass
class TrainConfig:
    """Optimisation settings; defaults are PromptSRC's base-to-novel recipe (DiSa inherits it)."""

    epochs: int = 20
    batch_size: int = 4
    lr: float = 0.0025
    momentum: float = 0.9
    weight_decay: float = 5e-4
    warmup_epochs: int = 1  # constant warm-up epochs before the cosine schedule
    warmup_lr: float = 1e-5
    seed: int = 1
    precision: str = "auto"  # auto (bf16/fp16 autocast on CUDA, fp32 on CPU) | fp32 | bf16 | fp16
    progress: bool = True


@dataclass
class TrainResult:
    epochs_run: int
    history: list[dict] = field(default_factory=list)  # per epoch: lr, mean of each loss term, seconds


class NonFiniteLossError(RuntimeError):
    """A loss term became NaN or infinite; training stops instead of learning from it."""


def learning_rate(config: TrainConfig, epoch: int) -> float:
    """LR of 0-based `epoch`: `warmup_lr` for the warm-up epochs, then cosine over `epochs`.

    Matches Dassl's ConstantWarmupScheduler + CosineAnnealingLR(T_max=epochs) stepped per epoch:
    lr_e = lr/2 * (1 + cos(pi * (e - W) / epochs)) for e >= W.
    """
    if epoch < config.warmup_epochs:
        return config.warmup_lr
    return 0.5 * config.lr * (1 + math.cos(math.pi * (epoch - config.warmup_epochs) / config.epochs))


def epoch_seed(seed: int, epoch: int) -> int:
    """The RNG seed of one epoch (data order, augmentation, masks, prompt dropout)."""
    return seed * 100_003 + epoch


def _autocast(config: TrainConfig, device: torch.device):
    if device.type != "cuda" or config.precision == "fp32":
        return nullcontext(), None
    dtype = torch.float16 if config.precision == "fp16" else torch.bfloat16
    if config.precision == "auto" and not torch.cuda.is_bf16_supported():
        dtype = torch.float16
    scaler = torch.amp.GradScaler("cuda") if dtype == torch.float16 else None
    return torch.autocast("cuda", dtype=dtype), scaler


def _check_finite(terms: dict[str, torch.Tensor], epoch: int, step: int) -> None:
    if not all(torch.isfinite(v).all() for v in terms.values()):
        values = ", ".join(f"{k}={v.item():.4g}" for k, v in terms.items())
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
) -> TrainResult:
    """Train `method`'s learned tensors on `loader` for `config.epochs` epochs.

    prepare_loader: the training split with the test transform, handed once to
        `method.prepare_training` (e.g. DiSa's class prototypes).
    out_dir: where a checkpoint (learned tensors + optimiser state, safetensors + JSON) is written
        after every epoch; with `resume=True` training continues from it.
    """
    device = method.device
    params = [p for p in method.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    result = TrainResult(epochs_run=0)
    if resume and out_dir is not None and (Path(out_dir) / CHECKPOINT_META).is_file():
        result = _load_checkpoint(Path(out_dir), method, optimizer, config)
    if prepare_loader is not None:
        with torch.no_grad():
            method.prepare_training((x.to(device), y.to(device)) for x, y in prepare_loader)
    autocast, scaler = _autocast(config, device)

    for epoch in range(result.epochs_run, config.epochs):
        torch.manual_seed(epoch_seed(config.seed, epoch))
        loader.generator.manual_seed(epoch_seed(config.seed, epoch))
        method.reseed(epoch_seed(config.seed, epoch))
        lr = learning_rate(config, epoch)
        for group in optimizer.param_groups:
            group["lr"] = lr
        method.train()
        sums: dict[str, float] = {}
        started = time.perf_counter()
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{config.epochs}", disable=not config.progress, leave=False)
        for step, (images, labels) in enumerate(bar):
            with autocast:
                terms = method.loss(images.to(device), labels.to(device))
            _check_finite(terms, epoch, step)
            optimizer.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(terms["total"]).backward()
                scaler.step(optimizer)
                scaler.update()
            else:
                terms["total"].backward()
                optimizer.step()
            for name, value in terms.items():
                sums[name] = sums.get(name, 0.0) + value.item()
            bar.set_postfix({k: f"{v / (step + 1):.3f}" for k, v in sums.items()})
        method.on_epoch_end(epoch, config.epochs)
        steps = max(len(loader), 1)
        result.history.append({"epoch": epoch + 1, "lr": lr, "seconds": time.perf_counter() - started,
                               **{k: v / steps for k, v in sums.items()}})
        result.epochs_run = epoch + 1
        if out_dir is not None:
            _save_checkpoint(Path(out_dir), method, optimizer, config, result)
    method.eval()
    return result


def _save_checkpoint(out_dir: Path, method: PromptMethod, optimizer, config: TrainConfig,
                     result: TrainResult) -> None:
    """Write tensors and metadata to temporary files, then rename: a kill never leaves half a file."""
    out_dir.mkdir(parents=True, exist_ok=True)
    tensors = {f"method.{k}": v.contiguous() for k, v in method.trainable_state_dict().items()}
    for index, param in enumerate(optimizer.param_groups[0]["params"]):
        buffer = optimizer.state.get(param, {}).get("momentum_buffer")
        if buffer is not None:
            tensors[f"optim.{index}.momentum_buffer"] = buffer.detach().contiguous()
    meta = {"method": method.name, "method_config": asdict(method.config), "classes": method.class_names,
            "clip": {"model": method.clip.name, "pretrained": method.clip.pretrained},
            "epochs_run": result.epochs_run, "config": asdict(config), "history": result.history}
    save_file(tensors, str(out_dir / (CHECKPOINT_TENSORS + ".tmp")))
    (out_dir / (CHECKPOINT_META + ".tmp")).write_text(json.dumps(meta, indent=2))
    os.replace(out_dir / (CHECKPOINT_TENSORS + ".tmp"), out_dir / CHECKPOINT_TENSORS)
    os.replace(out_dir / (CHECKPOINT_META + ".tmp"), out_dir / CHECKPOINT_META)


def _load_checkpoint(out_dir: Path, method: PromptMethod, optimizer, config: TrainConfig) -> TrainResult:
    meta = json.loads((out_dir / CHECKPOINT_META).read_text())
    saved = {k: v for k, v in meta["config"].items() if k != "progress"}
    wanted = {k: v for k, v in asdict(config).items() if k != "progress"}
    if saved != wanted or meta["method"] != method.name:
        changed = sorted(k for k in wanted if saved.get(k) != wanted[k])
        raise ValueError(
            f"cannot resume from {out_dir}: it holds a {meta['method']} run with different settings "
            f"({', '.join(changed) or 'method'}). Use the same settings, or another output folder."
        )
    tensors = load_file(str(out_dir / CHECKPOINT_TENSORS), device=str(method.device))
    method.load_trainable_state_dict({k[len("method."):]: v for k, v in tensors.items() if k.startswith("method.")})
    for index, param in enumerate(optimizer.param_groups[0]["params"]):
        key = f"optim.{index}.momentum_buffer"
        if key in tensors:
            optimizer.state[param]["momentum_buffer"] = tensors[key]
    return TrainResult(epochs_run=meta["epochs_run"], history=meta["history"])
