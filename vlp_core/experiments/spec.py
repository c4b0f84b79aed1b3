"""What a job is: a preset (backbone, recipe rule and datasets of one paper configuration) and the
user's choices (`JobSpec`), checked before anything is loaded.

A preset names the backbone, the recipe rule and the datasets of a paper configuration (ViT-B/16 on
the CoOp benchmark) or of its SynthWorld analogue (CPU, minutes). Every training setting comes from
the recipe table (`vlp_core.engine.recipes`) under the preset's rule; the spec holds only what the
user overrides. Device, precision and workers are chosen once here and passed down.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from vlp_core.backbone import ClipBundle, load_clip
from vlp_core.data.base import ClassificationData
from vlp_core.data.datasets import open_dataset
from vlp_core.data.tasks import FewShotOptions
from vlp_core.engine.recipes import Rule, SynthRule
from vlp_core.engine.trainer import resolve_device
from vlp_core.methods.registry import method_class, method_config


@dataclass(frozen=True)
class Preset:
    """Backbone and recipe rule of one paper configuration; each protocol names its datasets per
    preset (`vlp_core.experiments.protocols`)."""

    model: str
    pretrained: str | None
    rule: Rule
    real_data: bool  # its datasets are files under a data root


COOP_DATASETS = ("ImageNet", "Caltech101", "OxfordPets", "StanfordCars", "Flowers102", "Food101",
                 "FGVCAircraft", "SUN397", "DTD", "EuroSAT", "UCF101")
SYNTH_SUITES = ("shapes", "colour_shapes", "patterns", "scenes")

PRESETS: dict[str, Preset] = {
    "synth": Preset(model="synth-clip", pretrained=None, rule="synth", real_data=False),
    "vitb16": Preset(model="ViT-B-16-quickgelu", pretrained="openai", rule="paper", real_data=True),
}


@dataclass
class JobSpec:
    """Everything that determines a job (written to config.json): what to run, and the settings the
    user overrides over the preset's recipes."""

    protocol: str = "base2novel"  # a name of `vlp_core.experiments.protocols.PROTOCOLS`
    methods: list[str] | None = None  # default: every method
    preset: str = "synth"
    datasets: list[str] | None = None  # default: the preset's
    seeds: list[int] = field(default_factory=lambda: [1, 2, 3])
    shots: list[int] = field(default_factory=lambda: [16])
    model: str | None = None  # override the preset's backbone
    pretrained: str | None = None
    data_root: str | None = None
    method_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    rule_options: dict[str, Any] = field(default_factory=dict)  # the synth rule's budget (`SynthRule`)
    epochs: int | None = None  # override the recipe's epochs (e.g. quick checks)
    device: str | None = None  # None: cuda when available, else cpu
    precision: str | None = None  # None: the recipe's (fp16) on CUDA, fp32 on the CPU
    workers: int = 0  # image-decoding processes per loader
    sampling: str = "per_class"  # per_class (CoOp) | stratified_total (GalLoP's scripts)
    trainval: list[str] = field(default_factory=list)  # datasets trained on train + val (GalLoP: FGVCAircraft)
    class_order: str = "label"  # label (CoOp) | first_appearance (GalLoP's scripts)
    fpr95_rule: str = "threshold"  # threshold | closest (GalLoP's and MCM's code)
    source_prompts: str | None = None  # dg / xd / ood: a folder with the trained sources

    @property
    def preset_entry(self) -> Preset:
        """The spec's preset; a ValueError names the known ones."""
        if self.preset not in PRESETS:
            raise ValueError(f"unknown preset {self.preset!r}; choose from {', '.join(PRESETS)}")
        return PRESETS[self.preset]

    @property
    def few_shot(self) -> FewShotOptions:
        return FewShotOptions(self.sampling, tuple(self.trainval), self.class_order)

    def check(self) -> None:
        """Refuse an unknown preset or method, a method option that its method does not have or that
        has the wrong type, and options of a method the job does not run, before anything is loaded."""
        preset = self.preset_entry
        for method in self.methods or []:
            method_class(method)
        for method, options in self.method_options.items():
            method_config(method, options)
            if self.methods is not None and method not in self.methods:
                names = " ".join(f"{method}.{option}" for option in options)
                raise ValueError(f"--set {names}: this job does not run {method} (it runs {', '.join(self.methods)}); "
                                 f"drop the option, or run {method} too")
        SynthRule.with_options(self.rule_options)
        if preset.real_data and self.data_root is None:
            raise ValueError(f"preset {self.preset!r} reads real datasets: pass --data-root /path/to/datasets")

    def clip(self, device: str | None = None) -> ClipBundle:
        """The job's CLIP on its device (or `device`): the preset's model and weights, or `model`
        with `pretrained`."""
        preset = self.preset_entry
        model, pretrained = (self.model, self.pretrained) if self.model else (preset.model,
                                                                             self.pretrained or preset.pretrained)
        return load_clip(model, pretrained, device=resolve_device(device or self.device))

    def open(self, name: str, clip: ClipBundle, splits: tuple[str, ...] = ("train", "test"),
             ood: bool = False) -> ClassificationData:
        """Dataset `name` of this job (see `open_dataset`), checked for `splits`, in the spec's class
        order, rendered at the CLIP's resolution when it is SynthWorld's."""
        return open_dataset(name, self.data_root, image_size=clip.image_size, splits=splits, ood=ood,
                            class_order=self.class_order)
