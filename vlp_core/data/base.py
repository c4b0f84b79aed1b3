"""The dataset interface shared by SynthWorld suites and real (CoOp-format) datasets.

A dataset is a class list plus three splits of `Datum` records. A datum names its image by a
`key` that only its dataset knows how to load (a relative file path for real data, a render
address for SynthWorld), so sampling, splitting and relabelling work on plain records and never
touch pixels.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal, Protocol, Sequence, runtime_checkable

import numpy as np
from PIL import Image

from vlp_core.choices import check_choice

SPLITS = ("train", "val", "test")
ClassOrder = Literal["label", "first_appearance"]


@dataclass(frozen=True)
class Datum:
    """One labelled image: `key` locates it inside its dataset, `label` indexes `classname`."""

    key: str
    label: int
    classname: str
    domain: str = ""


def relabel(items: Sequence[Datum], labels: Sequence[int]) -> list[Datum]:
    """Keep the items whose label is in `labels` and renumber them 0..len(labels)-1 in that order."""
    new_index = {old: new for new, old in enumerate(labels)}
    return [replace(d, label=new_index[d.label]) for d in items if d.label in new_index]


@runtime_checkable
class ClassificationData(Protocol):
    """What every dataset offers to the engine, the notebooks and the app."""

    name: str

    @property
    def classnames(self) -> list[str]:
        """Readable class names, indexed by label."""
        ...

    def split(self, name: str) -> list[Datum]:
        """The items of split `name` (one of `SPLITS`)."""
        ...

    def load_image(self, datum: Datum) -> Image.Image:
        """The datum's image as an RGB PIL image."""
        ...

    def load_mask(self, datum: Datum) -> np.ndarray | None:
        """A boolean (H, W) ground-truth object mask, or None where the dataset has none."""
        ...

    # Optional: `folder` (where its few-shot draws are kept) and `require_shots(shots)` (refuse a draw
    # of `shots` per class from a class with fewer training images).

class ClassSubset:
    """The classes `labels` of `data` as a dataset of their own, numbered 0..n-1 in that order; its
    images and masks are `data`'s. It has no folder, so a few-shot draw of it is never persisted."""

    def __init__(self, data: ClassificationData, labels: Sequence[int], name: str):
        self.data, self.labels, self.name = data, list(labels), name

    @property
    def classnames(self) -> list[str]:
        return [self.data.classnames[label] for label in self.labels]

    def split(self, name: str) -> list[Datum]:
        return relabel(self.data.split(name), self.labels)

    def load_image(self, datum: Datum) -> Image.Image:
        return self.data.load_image(datum)

    def load_mask(self, datum: Datum) -> np.ndarray | None:
        return self.data.load_mask(datum)


class FirstAppearanceOrder(ClassSubset):
    """`data` with its classes numbered in order of first appearance in its train split (GalLoP's
    official class indices; classes absent from train follow in label order) instead of by the
    dataset's own labels. Images, masks and the `folder` of a real dataset are the wrapped data's."""

    def __init__(self, data: ClassificationData):
        seen = list(dict.fromkeys(d.label for d in data.split("train")))
        super().__init__(data, seen + [label for label in range(len(data.classnames)) if label not in seen], data.name)
        self.folder = getattr(data, "folder", None)
        self.require_shots = getattr(data, "require_shots", None)


def in_class_order(data: ClassificationData, order: ClassOrder) -> ClassificationData:
    """`data` itself ("label") or its `FirstAppearanceOrder` view ("first_appearance")."""
    check_choice("class order", order, ClassOrder)
    return data if order == "label" else FirstAppearanceOrder(data)
