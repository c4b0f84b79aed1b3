"""The dataset interface shared by SynthWorld suites and real (CoOp-format) datasets.

A dataset is a class list plus three splits of `Datum` records. A datum names its image by a
`key` that only its dataset knows how to load (a relative file path for real data, a render
address for SynthWorld), so sampling, splitting and relabelling work on plain records and never
touch pixels.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Protocol, Sequence, runtime_checkable

import numpy as np
from PIL import Image

SPLITS = ("train", "val", "test")


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
