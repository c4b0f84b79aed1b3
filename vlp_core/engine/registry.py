"""Method names, their config classes, and the training recipes of the papers and of SynthWorld."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

from safetensors.torch import load_file

from vlp_core.backbone import ClipBundle, FrozenTextFeatures
from vlp_core.engine.trainer import CHECKPOINT_META, CHECKPOINT_TENSORS, TrainConfig
from vlp_core.methods.base import PromptMethod
from vlp_core.methods.coop import CoOp, CoOpConfig
from vlp_core.methods.disa import DiSa, DiSaConfig
from vlp_core.methods.gallop import PRESETS as GALLOP_PRESETS
from vlp_core.methods.gallop import GalLoP, GalLoPConfig
from vlp_core.methods.ivlp import IVLP, IVLPConfig
from vlp_core.methods.promptsrc import PromptSRC, PromptSRCConfig
from vlp_core.methods.zeroshot import ZeroShotCLIP, ZeroShotConfig

METHODS: dict[str, tuple[type[PromptMethod], type]] = {
    "zeroshot": (ZeroShotCLIP, ZeroShotConfig),
    "coop": (CoOp, CoOpConfig),
    "ivlp": (IVLP, IVLPConfig),
    "promptsrc": (PromptSRC, PromptSRCConfig),
    "disa": (DiSa, DiSaConfig),
    "gallop": (GalLoP, GalLoPConfig),
}
TRAINABLE = tuple(name for name in METHODS if name != "zeroshot")


def method_config(name: str, options: dict[str, Any] | None = None):
    """The config of method `name` with its paper defaults, overridden by `options`."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; choose from {', '.join(METHODS)}")
    config_class = METHODS[name][1]
    fields = {f.name for f in dataclasses.fields(config_class)}
    unknown = sorted(set(options or {}) - fields)
    if unknown:
        raise ValueError(f"{name} has no option {', '.join(unknown)}; its options are {', '.join(sorted(fields))}")
    return config_class(**(options or {}))


def build_method(name: str, clip: ClipBundle, options: dict[str, Any] | None = None,
                 frozen_text: FrozenTextFeatures | None = None) -> PromptMethod:
    """Method `name` over the frozen `clip`, sharing `frozen_text` (the frozen text-feature cache)."""
    return METHODS[name][0](clip, method_config(name, options), frozen_text)


def load_trained(folder: str | Path, clip: ClipBundle, frozen_text: FrozenTextFeatures | None = None) -> PromptMethod:
    """A method restored from a trainer checkpoint folder: its config, class list and learned tensors."""
    folder = Path(folder)
    meta_path = folder / CHECKPOINT_META
    if not meta_path.is_file():
        raise FileNotFoundError(f"no prompt checkpoint in {folder}: expected {meta_path} and "
                                f"{folder / CHECKPOINT_TENSORS} as written by `vlp train --out {folder}`")
    meta = json.loads(meta_path.read_text())
    trained_on = meta.get("clip", {}).get("model")
    if trained_on is not None and trained_on != clip.name:
        raise ValueError(f"the prompts in {folder} were trained on CLIP {trained_on!r}, not {clip.name!r}: "
                         f"load that model (--model {trained_on}) or train prompts for this one")
    options = {k: tuple(v) if isinstance(v, list) else v for k, v in meta["method_config"].items()}
    method = build_method(meta["method"], clip, options, frozen_text)
    tensors = load_file(str(folder / CHECKPOINT_TENSORS), device=str(method.device))
    method.load_trainable_state_dict({k[len("method."):]: v for k, v in tensors.items() if k.startswith("method.")})
    method.set_classes(meta["classes"])
    method.eval()
    return method


def _promptsrc_recipe(shots: int) -> TrainConfig:
    """PromptSRC's recipe (DiSa inherits it): 20 epochs, batch 4, lr 0.0025, 1 warm-up epoch;
    few-shot runs below 16 shots use 50 epochs (spec disa.md section 3)."""
    return TrainConfig(epochs=20 if shots >= 16 else 50, batch_size=4, lr=0.0025, weight_decay=5e-4)


def _coop_recipe(shots: int) -> TrainConfig:
    """CoOp's schedule: lr 0.002, batch 32, 200 epochs at 16 shots, 100 at 4-8, 50 at 1-2."""
    epochs = 200 if shots >= 16 else 100 if shots >= 4 else 50
    return TrainConfig(epochs=epochs, batch_size=32, lr=0.002, weight_decay=5e-4)


def paper_recipe(method: str, dataset: str, shots: int = 16, num_classes: int = 0) -> TrainConfig:
    """The training settings the papers use for `method` on a CoOp benchmark `dataset` (ViT-B/16).

    `num_classes` is unused (the papers fix epochs per dataset); it keeps one recipe signature."""
    if method == "gallop":
        return TrainConfig(**GALLOP_PRESETS[dataset].train_kwargs())
    if method == "coop":
        return _coop_recipe(shots)
    return _promptsrc_recipe(shots)


SYNTH_BATCH = 16
SYNTH_STEPS = 240


def synth_recipe(method: str, dataset: str = "shapes", shots: int = 16, num_classes: int = 16) -> TrainConfig:
    """CPU-sized settings for SynthWorld: each paper's optimiser, batch 16 with the learning rate
    scaled linearly from the paper's batch, and epochs chosen for about 240 steps (5 to 20)."""
    steps_per_epoch = math.ceil(shots * num_classes / SYNTH_BATCH)
    epochs = max(5, min(20, round(SYNTH_STEPS / steps_per_epoch)))
    paper = paper_recipe(method, "Caltech101", shots)
    lr = paper.lr * SYNTH_BATCH / paper.batch_size
    return dataclasses.replace(paper, epochs=epochs, batch_size=SYNTH_BATCH, lr=lr)
