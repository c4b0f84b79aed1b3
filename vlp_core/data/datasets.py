"""The one dataset factory: a SynthWorld suite (or the drawn shapes) without a data root, a CoOp-format
benchmark dataset, ImageNet shift or OOD set under a data root."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from vlp_core.data.base import ClassificationData, ClassOrder, in_class_order

Source = Literal["synthworld", "coop"]


def data_source(root: str | Path | None) -> Source:
    """Where datasets come from: SynthWorld (rendered, no files) without a data root, else the CoOp-format
    folders under `root`."""
    return "synthworld" if root is None else "coop"


def open_dataset(name: str, root: str | Path | None = None, *, image_size: int = 64,
                 splits: tuple[str, ...] = ("train", "test"), ood: bool = False,
                 class_order: ClassOrder = "label") -> ClassificationData:
    """Dataset `name`, checked for `splits`, in `class_order`.

    Without `root`: a SynthWorld suite rendered at `image_size` px (or `drawn_shapes`). With `root`:
    a CoOp-format dataset (`ood`: an OOD set, which has only a test split) whose files are checked
    before anything trains; a missing one is named with the layout expected.
    """
    if data_source(root) == "synthworld":
        from vlp_core.data.drawn import DrawnShapes
        from vlp_core.data.synthworld import get_suite

        data = DrawnShapes() if name == DrawnShapes.name else get_suite(name, image_size=image_size)
    else:
        from vlp_core.data.coop import get_dataset, get_ood_set

        data = (get_ood_set if ood else get_dataset)(name, root)
        data.check(splits)
    return in_class_order(data, class_order)
