"""The training recipes: one table of data keyed by (method, protocol, dataset, shots).

`TABLE` holds the official values of the papers' configs (ViT-B/16): PromptSRC's for IVLP, PromptSRC and
DiSa (DiSa's paper gives none and inherits PromptSRC's), CoOp's, and GalLoP's scripts'. A recipe is
the merge of every row that matches the key, in table order, so a later, more specific row overrides
an earlier, general one. IVLP is PromptSRC without the SR terms and without GPA, so it takes the
family's schedule and depths but not the GPA rows.

The "synth" rule (`SynthRule`) sizes a recipe for another model on a CPU by principles stated before
any run (docs/methods.md, "The synth rule"): what does not depend on the model stays the papers'
(optimiser, warm-up, augmentation, shots, method options); what is expressed in the model's units is
rescaled so that it means on the model what it means on ViT-B/16 (`ModelShape`): prompt depth as a
fraction of the blocks, GalLoP's top-k as a fraction of the patches, the loss weights of terms whose
gradient does not grow with the logit scale relative to the cross-entropy's, GPA's μ and σ as
fractions of the epochs; and every run gets the same budget of optimisation steps at batch 16 (the
learning rate scaled linearly from the paper's batch), never more epochs than its paper's recipe.

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
from vlp_core.backbone import ClipBundle
from vlp_core.engine.trainer import TrainConfig, resolve_precision
from vlp_core.methods.registry import evaluated_checkpoint
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
    Row(WITH_GPA, ANY, ANY, ANY, options=dict(gpa_mean=15.0, gpa_std=1.0,  # base-to-novel
                                              sr_text_weight=25.0, sr_image_weight=10.0)),
    Row(("disa",), ANY, ANY, ANY, options=dict(dir_weight=1.0)),  # λ (a reconstruction: DiSa's paper gives none)
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
                                               weight_decay=0.01, warmup_epochs=0, precision="fp16"),
        options=dict(topk=(5, 10, 15, 20))),
    Row(("gallop",), ANY, ("ImageNet",), ANY, train=dict(epochs=50, batch_size=128)),
    Row(("gallop",), ANY, ("SUN397",), ANY, train=dict(batch_size=128)),
    Row(("gallop",), ANY, ("EuroSAT",), ANY, train=dict(batch_size=10)),
    # zero-shot CLIP: CoOp's hand-made template of each dataset
    *(Row(("zeroshot",), ANY, (name,), ANY, options=dict(template=template))
      for name, template in COOP_TEMPLATES.items()),
)



@dataclass(frozen=True)
class ModelShape:
    """What the synth rule rescales by: blocks per tower, patch tokens, joint width D, logit scale s."""

    text_blocks: int
    vision_blocks: int
    patches: int
    width: int
    logit_scale: float

    @classmethod
    def of(cls, clip: ClipBundle) -> ModelShape:
        model = clip.model
        grid = model.visual.grid_size
        return cls(len(model.transformer.resblocks), len(model.visual.transformer.resblocks), grid[0] * grid[1],
                   int(model.text_projection.shape[1]), float(model.logit_scale.exp()))


VIT_B16 = ModelShape(text_blocks=12, vision_blocks=12, patches=196, width=512, logit_scale=100.0)  # the papers'


@dataclass(frozen=True)
class SynthRule:
    """The synth rule's budget (docs/methods.md, "The synth rule"); the sensitivity page varies it."""

    steps: int = 240  # optimisation steps per run (at least `min_epochs`, at most the paper's epochs)
    batch_size: int = 16
    min_epochs: int = 5  # GPA aggregates over epochs: never fewer than this
    crop_scale: tuple[float, float] = (0.08, 1.0)  # the papers' RandomResizedCrop scale

    @classmethod
    def with_options(cls, options: dict[str, Any] | None) -> SynthRule:
        """The rule with `options` (field name -> value) over its defaults; a ValueError names an
        unknown one."""
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(options or {}) - fields)
        if unknown:
            raise ValueError(f"the synth rule has no option {', '.join(unknown)}; its options are {', '.join(sorted(fields))}")
        values = dict(options or {})
        if "crop_scale" in values:
            values["crop_scale"] = tuple(values["crop_scale"])
        return cls(**values)


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
    rule_options: dict[str, Any] = field(default_factory=dict)  # the synth rule's budget, where changed
    clipped: dict[str, Any] = field(default_factory=dict)  # options the model cannot run: the value asked for

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: the key, the TrainConfig fields (without seed and progress), the options (those
        that run), any change of the rule's budget and any option clipped to the model (its value asked
        for)."""
        train = None
        if self.train is not None:
            train = {k: v for k, v in dataclasses.asdict(self.train).items() if k not in ("seed", "progress")}
        record = {"method": self.method, "protocol": self.protocol, "dataset": self.dataset, "shots": self.shots,
                  "rule": self.rule, "train": train, "options": dict(self.options)}
        extra = {"rule_options": dict(self.rule_options), "clipped": dict(self.clipped)}
        return {**record, **{key: value for key, value in extra.items() if value}}


def recipe(method: str, protocol: str, dataset: str, shots: int, rule: Rule = "paper",
           num_classes: int | None = None, trainable: bool = True, shape: ModelShape | None = None,
           epochs: int | None = None, rule_options: dict[str, Any] | None = None) -> Recipe:
    """The recipe of (method, protocol, dataset, shots).

    rule "synth" needs `num_classes`, the number of classes trained on (it sets the epochs), and the
    `shape` of the model it scales to; `rule_options` change its budget (`SynthRule`).
    epochs: the run's epochs instead of the recipe's (GPA's μ and σ follow them under the synth rule).
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
    if rule == "synth":
        if num_classes is None or shape is None:
            raise ValueError("the synth rule needs num_classes (the number of classes trained on) and the model's shape")
        synth = SynthRule.with_options(rule_options)
        paper_epochs = config.epochs if config is not None else None
        if config is not None:
            config = synth_sized(config, shots, num_classes, synth)
            config = dataclasses.replace(config, epochs=epochs or config.epochs)
        options = scaled_options(options, shape, paper_epochs, config.epochs if config is not None else None)
    elif config is not None and epochs:
        config = dataclasses.replace(config, epochs=epochs)
    return Recipe(method, protocol, dataset, shots, rule, config, options)


def synth_sized(paper: TrainConfig, shots: int, num_classes: int, rule: SynthRule = SynthRule()) -> TrainConfig:
    """`paper` at the rule's batch (learning rate scaled linearly), fp32, the rule's crop scale, and
    epochs for the rule's steps over shots x num_classes images: at least `min_epochs`, at most the
    paper's epochs."""
    steps_per_epoch = math.ceil(shots * num_classes / rule.batch_size)
    epochs = min(paper.epochs, max(rule.min_epochs, round(rule.steps / steps_per_epoch)))
    return dataclasses.replace(paper, epochs=epochs, batch_size=rule.batch_size,
                               lr=paper.lr * rule.batch_size / paper.batch_size, precision="fp32",
                               crop_scale=rule.crop_scale)


def round_half_up(value: float) -> int:
    return math.floor(value + 0.5)


def scaled_options(options: dict[str, Any], shape: ModelShape, paper_epochs: int | None,
                   epochs: int | None) -> dict[str, Any]:
    """The paper's method options rescaled from ViT-B/16 to a model of `shape` (and GPA to `epochs`):

    depth J -> max(1, round(J · L / 12)) per tower of L blocks; GalLoP's k -> max(1, round(k · P / 196));
    PromptSRC's L1 terms (gradient ∝ 1 / sqrt(D), against the cross-entropy's ∝ s) -> w · (s / 100) ·
    sqrt(D / 512); DiSa's λ (cosine: gradient independent of s and D) -> λ · s / 100; GPA's μ, σ -> their
    fraction of the paper's epochs, of the run's epochs. Depths and k round half up, loss weights to
    3 decimals. Options not named here (and those of a model of ViT-B/16's shape) are unchanged.
    """
    scaled = dict(options)
    for key, blocks in (("text_depth", shape.text_blocks), ("vision_depth", shape.vision_blocks)):
        if key in scaled:
            scaled[key] = max(1, round_half_up(scaled[key] * blocks / VIT_B16.text_blocks))
    if "topk" in scaled:
        scaled["topk"] = tuple(max(1, round_half_up(k * shape.patches / VIT_B16.patches)) for k in scaled["topk"])
    logits = shape.logit_scale / VIT_B16.logit_scale
    for key in ("sr_text_weight", "sr_image_weight"):
        if key in scaled:
            scaled[key] = round(scaled[key] * logits * math.sqrt(shape.width / VIT_B16.width), 3)
    if "dir_weight" in scaled:
        scaled["dir_weight"] = round(scaled["dir_weight"] * logits, 3)
    if paper_epochs and epochs:
        for key in ("gpa_mean", "gpa_std"):
            if key in scaled:
                scaled[key] = scaled[key] * epochs / paper_epochs
    return scaled


def fitted_to_model(options: dict[str, Any], shape: ModelShape) -> tuple[dict[str, Any], dict[str, Any]]:
    """`options` as a model of `shape` runs them: prompt depths at most the tower's blocks, GalLoP's k at
    most its patches (the methods clip them so) -> (those options, {option: value asked for} of the
    options that changed)."""
    fitted = dict(options)
    for key, blocks in (("text_depth", shape.text_blocks), ("vision_depth", shape.vision_blocks)):
        if key in fitted:
            fitted[key] = min(fitted[key], blocks)
    if "topk" in fitted:
        fitted["topk"] = tuple(min(k, shape.patches) for k in fitted["topk"])
    clipped = {key: options[key] for key in options if _plain(fitted[key]) != _plain(options[key])}
    return fitted, clipped


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def recipe_checkpoint(recorded: dict[str, Any]) -> str | None:
    """Which learned tensors the run of a recorded recipe (`Recipe.as_dict()`, or a loaded source's
    record) is scored with: "last epoch", "GPA aggregate of epochs 1-N", or None when it trains nothing."""
    if not recorded.get("train"):
        return None
    return evaluated_checkpoint(recorded["method"], recorded["options"], recorded["train"]["epochs"])


def run_recipe(method: str, protocol: str, dataset: str, shots: int, num_classes: int, *, rule: Rule,
               trainable: bool, device: torch.device, shape: ModelShape | None = None, epochs: int | None = None,
               precision: str | None = None, options: dict[str, Any] | None = None,
               rule_options: dict[str, Any] | None = None) -> Recipe:
    """The settings of one run, decided once: the table's recipe under `rule` (the synth rule scales it
    to the model's `shape`, with `rule_options` over its budget), `epochs` (quick checks; a notebook's
    fast mode), the precision for `device` (`precision`, else the recipe's on CUDA and fp32 on the CPU)
    and the user's method `options` over the recipe's, fitted to the model's `shape` (`fitted_to_model`:
    the depth that runs is the depth recorded). `as_dict()` of the result is what the run records."""
    table = recipe(method, protocol, dataset, shots, rule, num_classes, trainable, shape, epochs, rule_options)
    config = table.train
    if config is not None:
        config = dataclasses.replace(config, precision=resolve_precision(precision, config.precision, device))
    merged, clipped = {**table.options, **(options or {})}, {}
    if shape is not None:
        merged, clipped = fitted_to_model(merged, shape)
    return dataclasses.replace(table, train=config, options=merged, rule_options=dict(rule_options or {}),
                               clipped=clipped)
