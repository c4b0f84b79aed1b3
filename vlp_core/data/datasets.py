"""The one dataset factory: `open_dataset` asks each registered reader, in order, whether it reads a
dataset name (under an optional data root), and opens it with the first that does.

Readers: the drawn shapes and the SynthWorld suites without a data root, the CoOp-format benchmark
datasets, ImageNet shifts and OOD sets under one. Each kind of dataset is one module of this package
that calls `register_reader`; the package's modules are all imported before the first dataset is opened,
so a new reader is one new module (and its tests): nothing else lists it.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal

from vlp_core.data.base import ClassificationData, ClassOrder, in_class_order

Source = Literal["synthworld", "coop"]
Opener = Callable[[str, "Path | None", int, tuple[str, ...], bool], ClassificationData]


@dataclass(frozen=True)
class Reader:
    """A kind of dataset: `reads(name, root)` says whether it reads dataset `name` (root: the data root
    or None), `open(name, root, image_size, splits, ood)` opens it, checked for `splits`."""

    name: str
    order: int  # readers are asked in this order; the first that reads a name opens it
    reads: Callable[[str, "Path | None"], bool]
    open: Opener
    what: str  # the names it reads, in words, for the error that no reader takes a name


_READERS: dict[str, Reader] = {}


def register_reader(reader: Reader) -> Reader:
    """Add a reader (its name must be new)."""
    if reader.name in _READERS and _READERS[reader.name] is not reader:
        raise ValueError(f"two dataset readers are named {reader.name!r}")
    _READERS[reader.name] = reader
    return reader


def readers() -> list[Reader]:
    """Every reader, in order, after importing every module of the data package."""
    package = importlib.import_module("vlp_core.data")
    for module in pkgutil.walk_packages(package.__path__, f"{package.__name__}."):
        importlib.import_module(module.name)
    return sorted(_READERS.values(), key=lambda reader: reader.order)


def data_source(root: str | Path | None) -> Source:
    """Where datasets come from: SynthWorld (rendered, no files) without a data root, else the CoOp-format
    folders under `root`."""
    return "synthworld" if root is None else "coop"


def open_dataset(name: str, root: str | Path | None = None, *, image_size: int = 64,
                 splits: tuple[str, ...] = ("train", "test"), ood: bool = False,
                 class_order: ClassOrder = "label") -> ClassificationData:
    """Dataset `name` opened by the first reader that reads it, checked for `splits`, in `class_order`.

    Without `root`: a SynthWorld suite rendered at `image_size` px (or `drawn_shapes`). With `root`: a
    CoOp-format dataset (`ood`: an OOD set, which has only a test split) whose files are checked before
    anything trains; a missing one is named with the layout expected.
    """
    root = Path(root) if root is not None else None
    for reader in readers():
        if reader.reads(name, root):
            return in_class_order(reader.open(name, root, image_size, splits, ood), class_order)
    raise ValueError(f"no reader takes the dataset {name!r}" + (f" under {root}" if root else "") + "; they read "
                     + "; ".join(reader.what for reader in readers()))
