"""The training recipes: one table of data keyed by (method, protocol, dataset, shots).

`TABLE` holds the official values of the papers' configs (ViT-B/16): PromptSRC's for IVLP, PromptSRC and
DiSa (DiSa's paper gives none and inherits PromptSRC's), CoOp's, and GalLoP's scripts'. A recipe is
the merge of every row that matches the key, in table order, so a later, more specific row overrides
an earlier, general one. IVLP is PromptSRC without the SR terms and without GPA, so it takes the
family's schedule and depths but not the GPA rows.

The "synth" rule sizes a recipe for SynthWorld on a CPU: the same rows give the method options (depths,
GPA), the optimiser and the warm-up; the batch becomes 16 with the learning rate scaled linearly from
the paper's batch, the epochs come to about 240 steps (5 to 20 epochs), training images are cropped at
scale 0.5-1, and training runs in fp32.

A method without rows trains with `TrainConfig`'s defaults and its own config defaults. `run_recipe`
is the one place a run's settings are decided: the table's entry, then the run's own overrides.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from vlp_core.choices import check_choice
from vlp_core.engine.trainer import TrainConfig, resolve_precision
from vlp_core.methods.templates import COOP_TEMPLATES

Rule = Literal["paper", "synth"]
RULES: tuple[str, ...] = ("paper", "synth")
IMAGENET_SOURCE = ("dg", "xd", "ood")  # protocols that train on ImageNet (16 shots, all classes) and transfer
PROMPTSRC_FAMILY = ("ivlp", "promptsrc", "disa")
WITH_GPA = ("promptsrc", "disa")
GPA_45_5 = ("StanfordCars", "Flowers102", "FGVCAircraft", "DTD", "EuroSAT")  # few-shot μ 45, σ 5; others 30, 30
ANY = None  # a key column that matches every value


@dataclass(frozen=True)
class Row:
    """Settings for every key whose column values are listed (ANY: all). `train` holds TrainConfig
    fields, `options` method options."""

    methods: tuple[str, ...] | None
    protocols: tuple[str, ...] | None
    datasets: tuple[str, ...] | None
    shots: tuple[int, ...] | None
    train: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)

    def matches(self, method: str, protocol: str, dataset: str, shots: int) -> bool:
        key = (method, protocol, dataset, shots)
        columns = (self.methods, self.protocols, self.datasets, self.shots)
        return all(column is ANY or value in column for column, value in zip(columns, key))


SGD = dict(momentum=0.9, weight_decay=5e-4, warmup_epochs=1, warmup_lr=1e-5, precision="fp16")

TABLE: tuple[Row, ...] = (
    # PromptSRC family (configs vit_b16_c2_ep20_batch4_4+4ctx, ..._cross_datasets, ..._few_shot)
    Row(PROMPTSRC_FAMILY, ANY, ANY, ANY, train=dict(epochs=20, batch_size=4, lr=0.0025, **SGD),
        options=dict(text_depth=9, vision_depth=9)),
    Row(WITH_GPA, ANY, ANY, ANY, options=dict(gpa_mean=15.0, gpa_std=1.0)),  # base-to-novel
    Row(PROMPTSRC_FAMILY, IMAGENET_SOURCE, ANY, ANY, options=dict(text_depth=3, vision_depth=3)),
    Row(WITH_GPA, IMAGENET_SOURCE, ANY, ANY, options=dict(gpa_mean=6.0, gpa_std=10.0)),
    Row(PROMPTSRC_FAMILY, ("fewshot",), ANY, ANY, train=dict(epochs=50)),
    Row(WITH_GPA, ("fewshot",), ANY, ANY, options=dict(gpa_mean=30.0, gpa_std=30.0)),
    Row(WITH_GPA, ("fewshot",), GPA_45_5, ANY, options=dict(gpa_mean=45.0, gpa_std=5.0)),
    # CoOp: 16 random context tokens, class token at the end (its config defaults)
    Row(("coop",), ANY, ANY, ANY, train=dict(epochs=200, batch_size=32, lr=0.002, **SGD)),
    Row(("coop",), ANY, ANY, (1,), train=dict(epochs=50)),
    Row(("coop",), ANY, ANY, (2, 4), train=dict(epochs=100)),
    Row(("coop",), ANY, ("ImageNet",), ANY, train=dict(epochs=50)),
    # GalLoP (docs/methods.md): SGD, weight decay 0.01, cosine, no warm-up, fp16
    Row(("gallop",), ANY, ANY, ANY, train=dict(epochs=200, batch_size=32, lr=0.002, momentum=0.9,
                                               weight_decay=0.01, warmup_epochs=0, precision="fp16")),
    Row(("gallop",), ANY, ("ImageNet",), ANY, train=dict(epochs=50, batch_size=128)),
    Row(("gallop",), ANY, ("SUN397",), ANY, train=dict(batch_size=128)),
    Row(("gallop",), ANY, ("EuroSAT",), ANY, train=dict(batch_size=10)),
    # zero-shot CLIP: CoOp's hand-made template of each dataset
    *(Row(("zeroshot",), ANY, (name,), ANY, options=dict(template=template))
      for name, template in COOP_TEMPLATES.items()),
)

SYNTH_BATCH = 16
SYNTH_STEPS = 240
SYNTH_CROP_SCALE = (0.5, 1.0)


@dataclass(frozen=True)
class Recipe:
    """The training settings (None for a method that does not train) and the method options a run
    of (method, protocol, dataset, shots) uses under a rule."""

    method: str
    protocol: str
    dataset: str
    shots: int
    rule: Rule
    train: TrainConfig | None
    options: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: the key, the TrainConfig fields (without seed and progress) and the options."""
        train = None
        if self.train is not None:
            train = {k: v for k, v in dataclasses.asdict(self.train).items() if k not in ("seed", "progress")}
        return {"method": self.method, "protocol": self.protocol, "dataset": self.dataset, "shots": self.shots,
                "rule": self.rule, "train": train, "options": dict(self.options)}


def recipe(method: str, protocol: str, dataset: str, shots: int, rule: Rule = "paper",
           num_classes: int | None = None, trainable: bool = True) -> Recipe:
    """The recipe of (method, protocol, dataset, shots).

    rule "synth" needs `num_classes`, the number of classes trained on (it sets the epochs).
    trainable: False gives no TrainConfig (zero-shot CLIP).
    """
    check_choice("recipe rule", rule, RULES)
    train: dict[str, Any] = {}
    options: dict[str, Any] = {}
    for row in TABLE:
        if row.matches(method, protocol, dataset, shots):
            train.update(row.train)
            options.update(row.options)
    config = TrainConfig(**train) if trainable else None
    if config is not None and rule == "synth":
        if num_classes is None:
            raise ValueError("the synth rule needs num_classes, the number of classes trained on")
        config = synth_sized(config, shots, num_classes)
    return Recipe(method, protocol, dataset, shots, rule, config, options)


def synth_sized(paper: TrainConfig, shots: int, num_classes: int) -> TrainConfig:
    """`paper` at batch 16 (learning rate scaled linearly), fp32, crops of scale 0.5-1, and epochs for
    about 240 steps of shots x num_classes images, clamped to 5..20."""
    steps_per_epoch = math.ceil(shots * num_classes / SYNTH_BATCH)
    epochs = max(5, min(20, round(SYNTH_STEPS / steps_per_epoch)))
    return dataclasses.replace(paper, epochs=epochs, batch_size=SYNTH_BATCH,
                               lr=paper.lr * SYNTH_BATCH / paper.batch_size, precision="fp32",
                               crop_scale=SYNTH_CROP_SCALE)


def run_recipe(method: str, protocol: str, dataset: str, shots: int, num_classes: int, *, rule: Rule,
               trainable: bool, device: torch.device, epochs: int | None = None, precision: str | None = None,
               options: dict[str, Any] | None = None) -> Recipe:
    """The settings of one run, decided once: the table's recipe under `rule`, then the run's overrides:
    `epochs` (quick checks; a notebook's fast mode), the precision for `device` (`precision`, else the
    recipe's on CUDA and fp32 on the CPU) and the user's method `options` over the recipe's.
    `as_dict()` of the result is what the run records."""
    table = recipe(method, protocol, dataset, shots, rule, num_classes, trainable)
    config = table.train
    if config is not None:
        config = dataclasses.replace(config, epochs=epochs or config.epochs,
                                     precision=resolve_precision(precision, config.precision, device))
    return dataclasses.replace(table, train=config, options={**table.options, **(options or {})})
