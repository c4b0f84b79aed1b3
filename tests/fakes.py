"""Tiny copies of real datasets in CoOp's layout (real 8x8 image files, real split files) and small
folders of a user's own images (PIL drawings, crops of scikit-image's photographs), shared by the
dataset and engine tests."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vlp_core.data.drawn import draw_shape
from vlp_core.engine import trainer

PETS = {0: "abyssinian", 1: "american_bulldog", 2: "yorkshire_terrier"}
PETS_TRAIN = [2, 0, 2, 1, 2, 0, 2, 1, 2, 0, 2]  # 6 x label 2, 3 x label 0, 2 x label 1, out of order
PETS_VAL = [1, 0, 2, 2, 0, 1]
PETS_TEST = [2, 1, 0]
IMAGENET = {  # classnames.txt lines, not in wnid order
    "n02000000": "goldfish", "n01000000": "tench", "n04000000": "great white shark", "n03000000": "tiger cat",
}


def image(path: Path, colour=(200, 30, 30)) -> None:
    """A real 8x8 RGB image file (format from the suffix)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), colour).save(path)


def _split_entries(labels: list[int], split: str) -> list[list]:
    return [[f"{PETS[label]}/{split}_{i}.jpg", label, PETS[label]] for i, label in enumerate(labels)]


def write_pets(root: Path) -> Path:
    """root/oxford_pets/ with a split_zhou file whose classes appear out of label order -> root."""
    folder = root / "oxford_pets"
    split = {"train": _split_entries(PETS_TRAIN, "train"), "val": _split_entries(PETS_VAL, "val"),
             "test": _split_entries(PETS_TEST, "test")}
    for entries in split.values():
        for relpath, _, _ in entries:
            image(folder / "images" / relpath)
    (folder / "split_zhou_OxfordPets.json").write_text(json.dumps(split))
    return root


def write_imagenet(root: Path) -> Path:
    """root/imagenet/ (4 classes, classnames.txt unsorted) plus -V2, -Sketch and -R on some of its
    classes -> root."""
    lines = "".join(f"{wnid} {name}\n" for wnid, name in IMAGENET.items())
    (root / "imagenet").mkdir(parents=True)
    (root / "imagenet" / "classnames.txt").write_text(lines)
    for wnid in IMAGENET:
        for i in range(2):
            image(root / "imagenet" / "images" / "train" / wnid / f"{i}.JPEG", colour=(50 + 100 * i, 0, 0))
        image(root / "imagenet" / "images" / "val" / wnid / "v.JPEG")
    v2 = root / "imagenetv2"
    image(v2 / "imagenetv2-matched-frequency-format-val" / "0" / "a.jpeg")
    image(v2 / "imagenetv2-matched-frequency-format-val" / "3" / "b.jpeg")
    (v2 / "classnames.txt").write_text(lines)
    for name in ("a.jpg", "b.jpg"):
        image(root / "imagenet-sketch" / "images" / "n02000000" / name)
    image(root / "imagenet-sketch" / "images" / "n04000000" / "c.jpg")
    rendition = root / "imagenet-rendition" / "imagenet-r"
    image(rendition / "n04000000" / "x.jpg")
    image(rendition / "n02000000" / "y.jpg")
    image(rendition / "n02000000" / "z.jpg")
    (rendition / "README.txt").write_text("not a class")
    return root


def draw(path: Path, shape: str, index: int, size: int = 48) -> None:
    """A PIL drawing of `shape` (the drawn_shapes renderer), its look seeded by `index`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    draw_shape(shape, np.random.default_rng(index), canvas=size).save(path)


def write_folder(root: Path, counts: dict[str, int], shape_of=lambda name: name.split("_")[-1]) -> Path:
    """root/<class>/<i>.png for each class and count -> root (the class folder's last word is its shape)."""
    for name, count in counts.items():
        for i in range(count):
            draw(root / name / f"{i}.png", shape_of(name), i)
    return root


def photo_crops(root: Path, per_class: int, size: int = 64) -> Path:
    """root/<class>/<i>.jpg: random crops of three of scikit-image's photographs (a cat, a coffee cup, a
    rocket), one class each -> root."""
    data = pytest.importorskip("skimage.data")
    rng = np.random.default_rng(0)
    for name, photo in (("cat", data.chelsea()), ("coffee_cup", data.coffee()), ("rocket", data.rocket())):
        height, width = photo.shape[:2]
        for i in range(per_class):
            side = int(rng.integers(min(height, width) // 2, min(height, width)))
            top, left = int(rng.integers(0, height - side + 1)), int(rng.integers(0, width - side + 1))
            crop = Image.fromarray(photo[top : top + side, left : left + side]).resize((size, size))
            (root / name).mkdir(parents=True, exist_ok=True)
            crop.save(root / name / f"{i}.jpg")
    return root


def interrupt_second_epoch(monkeypatch) -> None:
    """Make training stop with KeyboardInterrupt (Ctrl-C) as its second epoch starts."""
    real = trainer._train_epoch

    def stop_in_second_epoch(method, loader, optimizer, config, epoch, *args):
        if epoch == 1:
            raise KeyboardInterrupt
        return real(method, loader, optimizer, config, epoch, *args)

    monkeypatch.setattr(trainer, "_train_epoch", stop_in_second_epoch)
