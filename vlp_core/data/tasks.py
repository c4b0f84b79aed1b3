"""A run's data, prepared once: the few-shot draw, its base / novel halves and the relabelled items.

`make_task` draws the K-shot training split of a dataset once (CoOp's protocol, or GalLoP's options),
splits the classes into CoOp's base and novel halves (sorted labels of the draw: the first ceil(n/2)
are base) and relabels the items of the part trained on. Everything above data/ takes a `Task` and
never relabels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Sequence

from vlp_core.choices import check_choice
from vlp_core.data.base import ClassificationData, ClassOrder, ClassSubset, Datum, relabel
from vlp_core.data.fewshot import base_novel_labels
from vlp_core.data.fewshot_cache import Sampling, few_shot_path, few_shot_split

Part = Literal["all", "base", "novel"]
PARTS: tuple[Part, ...] = ("all", "base", "novel")


@dataclass(frozen=True)
class FewShotOptions:
    """How the K-shot training set is drawn: CoOp's protocol by default, GalLoP's official options
    (a stratified K·C sample, train+val for the named datasets, classes by first appearance)."""

    sampling: Sampling = "per_class"
    trainval: tuple[str, ...] = ()  # datasets whose training pool is train + val (GalLoP: FGVCAircraft)
    class_order: ClassOrder = "label"


@dataclass(frozen=True)
class Task:
    """K shots of one part of a dataset's classes, drawn with one seed.

    `train` holds the K-shot items of `part`, labels 0..n-1 in the order of `labels(part)`;
    `test(p)` the test items of part p relabelled the same way, with `class_names(p)` their names.
    """

    data: ClassificationData
    shots: int
    seed: int
    part: Part
    base: tuple[int, ...]  # dataset labels of the base half
    novel: tuple[int, ...]  # ... and of the novel half
    train: tuple[Datum, ...]

    @property
    def name(self) -> str:
        return self.data.name

    def labels(self, part: Part | None = None) -> list[int]:
        """Dataset labels of `part` (default: the part trained on), in label order."""
        part = part or self.part
        check_choice("classes", part, PARTS)
        return {"all": list(range(len(self.data.classnames))), "base": list(self.base),
                "novel": list(self.novel)}[part]

    def class_names(self, part: Part | None = None) -> list[str]:
        """Class names of `part` (default: the part trained on), indexed by the relabelled labels."""
        return [self.data.classnames[label] for label in self.labels(part)]

    def test(self, part: Part | None = None) -> list[Datum]:
        """The test items of `part` (default: the part trained on), relabelled 0..n-1."""
        part = part or self.part
        items = self.data.split("test")
        return items if part == "all" else relabel(items, self.labels(part))


def make_task(data: ClassificationData, shots: int, seed: int, part: Part = "all",
              options: FewShotOptions = FewShotOptions(), keep_draw: bool = True) -> Task:
    """The K-shot task of `part` of `data`'s classes with `seed`. A real dataset persists the draw
    beside its files as CoOp's `split_fewshot/shot_K-seed_S.json` and reads it back later
    (`keep_draw=False`: a draw not kept yet is made without writing it, as a dry run does)."""
    check_choice("classes", part, PARTS)
    folder = getattr(data, "folder", None)
    if folder is not None and not keep_draw:
        folder = folder if few_shot_path(folder, shots, seed, options.sampling, data.name in options.trainval,
                                         options.class_order).is_file() else None
    drawn, _ = few_shot_split(data, shots, seed, folder, options.sampling, data.name in options.trainval,
                              options.class_order)
    base, novel = base_novel_labels(drawn)
    train = drawn if part == "all" else relabel(drawn, base if part == "base" else novel)
    return Task(data, shots, seed, part, tuple(base), tuple(novel), tuple(train))


def held_out_classes(data: ClassificationData, kept: Sequence[int]) -> tuple[ClassSubset, ClassSubset]:
    """An OOD split inside one dataset: its classes `kept` (labels) as the in-distribution dataset
    ("<name>-id", to make a `Task` of and train on), the other classes as the OOD set ("<name>-ood")."""
    others = [label for label in range(len(data.classnames)) if label not in set(kept)]
    return ClassSubset(data, kept, f"{data.name}-id"), ClassSubset(data, others, f"{data.name}-ood")
