"""CoOp-format real datasets: the 11 benchmark datasets, ImageNet's domain shifts and OOD folders.

Every dataset is read in the folder layout users already have from CoOp's DATASETS.md
(docs/methods.md lists it), under a data root given with `--data-root`. One class, `CoOpDataset`,
serves them all, driven by the table `DATASETS`; the `kind` of a table row says how its classes
and splits are read.

Conventions (the same as CoOp's unless noted):
- Labels: the integer label of the split file (`split_zhou_*.json`); the line order of
  `variants.txt` (FGVCAircraft); the sorted-wnid order of `classnames.txt` (ImageNet, -V2, -Sketch:
  folder k of -V2 is the k-th wnid). ImageNet-A and -R are scored over their own classes: labels
  0..199 in sorted order of the wnid folders present, and `imagenet_labels` maps them back.
- Class names: the file's names with "_" replaced by " ", which is what CoOp's prompt learners
  (and zero-shot CLIP) do to every class name before tokenising; `Datum.classname` is the same.
- Splits: ImageNet has no val split (an empty list; CoOp reuses the test set as "val", and the
  protocol selects no model). Domain-shift and OOD sets have only a test split.
- OOD folders hold unlabelled images (directly or in subfolders): `classnames` is empty and
  every item has label -1 and class name "". They are opened with `get_ood_set`, never by
  `get_dataset`, so "sun" can only mean SUN397 there (the OOD set is "SUN").
- `CoOpDataset.check` refuses a dataset whose files do not make it (an empty split, a class count
  other than the table's, listed images that do not exist) before anything is trained on it.
- A `Datum.key` is the image path relative to the dataset's image folder, "/"-separated.
- Images inside a folder are listed in sorted path order, so item order (and with it few-shot
  sampling) is the same on every machine; CoOp lists them in file-system order.
"""

from __future__ import annotations

import difflib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Literal

import numpy as np
from PIL import Image

from vlp_core.data.base import SPLITS, Datum
from vlp_core.data.datasets import Reader, register_reader

Kind = Literal[
    "split_zhou", "fgvc", "imagenet", "imagenet_by_index", "imagenet_by_wnid", "imagenet_subset",
    "image_folder",
]
Group = Literal["benchmark", "imagenet_shift", "ood"]

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm"})
OOD_LABEL = -1


@dataclass(frozen=True)
class DatasetSpec:
    """One row of the dataset table: where a dataset lives under the data root and how to read it.

    `image_dir` is relative to `folder` ("" = the folder itself); `split_file` names the split
    file of a "split_zhou" dataset; `num_classes` is the full dataset's class count (0 for OOD).
    """

    name: str
    folder: str
    image_dir: str
    kind: Kind
    num_classes: int
    split_file: str = ""

    @property
    def group(self) -> Group:
        """Benchmark dataset, ImageNet domain shift, or OOD image folder."""
        if self.kind == "image_folder":
            return "ood"
        if self.kind.startswith("imagenet_"):
            return "imagenet_shift"
        return "benchmark"

    def layout(self) -> str:
        """The expected folder tree, a few lines for error messages."""
        images = f"{self.image_dir}/" if self.image_dir else ""
        return _LAYOUTS[self.kind].format(
            folder=self.folder, images=images, split_file=self.split_file, n=self.num_classes
        )


_CLASSNAMES_TXT = "classnames.txt  (\"<wnid> <class name>\" per line; or imagenet/classnames.txt)"
_LAYOUTS: dict[Kind, str] = {
    "split_zhou": (
        "{folder}/\n  {images}...  ({n} classes; image paths as in the split file)\n"
        "  {split_file}  {{\"train\": [[relpath, label, classname], ...], \"val\": [...], \"test\": [...]}}"
    ),
    "fgvc": (
        "{folder}/\n  {images}<image id>.jpg\n  variants.txt  (one class name per line; label = line index)\n"
        "  images_variant_{{train,val,test}}.txt  (\"<image id> <class name>\" per line)"
    ),
    "imagenet": (
        "{folder}/\n  classnames.txt  (\"<wnid> <class name>\" per line, {n} lines)\n"
        "  {images}train/<wnid>/*.JPEG\n  {images}val/<wnid>/*.JPEG  (the test set)"
    ),
    "imagenet_by_index": (
        "{folder}/\n  {images}<0..999>/*.jpeg  (folder k = k-th wnid in sorted order)\n  " + _CLASSNAMES_TXT
    ),
    "imagenet_by_wnid": "{folder}/\n  {images}<wnid>/*.JPEG  ({n} classes)\n  " + _CLASSNAMES_TXT,
    "imagenet_subset": "{folder}/\n  {images}<wnid>/*.jpg  ({n} classes)\n  " + _CLASSNAMES_TXT,
    "image_folder": "{folder}/\n  *.jpg  (images directly or in any subfolders; unlabelled)",
}


def _zhou(name: str, folder: str, image_dir: str, split_name: str, n: int) -> DatasetSpec:
    """A dataset read from CoOp's `split_zhou_<split_name>.json`."""
    return DatasetSpec(name, folder, image_dir, "split_zhou", n, f"split_zhou_{split_name}.json")


DATASETS: tuple[DatasetSpec, ...] = (
    DatasetSpec("ImageNet", "imagenet", "images", "imagenet", 1000),
    _zhou("Caltech101", "caltech-101", "101_ObjectCategories", "Caltech101", 100),
    _zhou("OxfordPets", "oxford_pets", "images", "OxfordPets", 37),
    _zhou("StanfordCars", "stanford_cars", "", "StanfordCars", 196),
    _zhou("Flowers102", "oxford_flowers", "jpg", "OxfordFlowers", 102),
    _zhou("Food101", "food-101", "images", "Food101", 101),
    DatasetSpec("FGVCAircraft", "fgvc_aircraft", "images", "fgvc", 100),
    _zhou("SUN397", "sun397", "SUN397", "SUN397", 397),
    _zhou("DTD", "dtd", "images", "DescribableTextures", 47),
    _zhou("EuroSAT", "eurosat", "2750", "EuroSAT", 10),
    _zhou("UCF101", "ucf101", "UCF-101-midframes", "UCF101", 101),
    DatasetSpec(
        "ImageNet-V2", "imagenetv2", "imagenetv2-matched-frequency-format-val", "imagenet_by_index", 1000
    ),
    DatasetSpec("ImageNet-Sketch", "imagenet-sketch", "images", "imagenet_by_wnid", 1000),
    DatasetSpec("ImageNet-A", "imagenet-adversarial", "imagenet-a", "imagenet_subset", 200),
    DatasetSpec("ImageNet-R", "imagenet-rendition", "imagenet-r", "imagenet_subset", 200),
    DatasetSpec("iNaturalist", "iNaturalist", "", "image_folder", 0),
    DatasetSpec("SUN", "SUN", "", "image_folder", 0),
    DatasetSpec("Places", "Places", "", "image_folder", 0),
    DatasetSpec("Textures", "dtd/images", "", "image_folder", 0),
)


class DatasetNotFoundError(FileNotFoundError):
    """A dataset folder, class list or split file is missing; the message says what and where."""

    def __init__(self, path: Path, spec: DatasetSpec, root: Path):
        super().__init__(
            f"{spec.name}: expected {path}, which does not exist.\n"
            f"Expected layout under the data root {root}:\n{indent(spec.layout())}\n"
            "Point --data-root at the folder that holds the dataset folders."
        )
        self.path = path


class ImageReadError(OSError):
    """An image file could not be opened or decoded; the message names the file."""


class DatasetContentError(ValueError):
    """A dataset's folders are there but do not hold the dataset; the message lists what is wrong."""


MISSING_SHOWN = 5  # missing files named in a `DatasetContentError`


@dataclass(frozen=True)
class _Contents:
    """What a reader finds: class names, a function from split name to items, and (for ImageNet
    class sets) each label's ImageNet label."""

    classnames: list[str]
    read_split: Callable[[str], list[Datum]]
    imagenet_labels: list[int] | None = None


class CoOpDataset:
    """A real dataset in CoOp's layout as a `ClassificationData` (see the module docstring).

    Class lists are read on construction (a missing folder or file raises
    `DatasetNotFoundError` at once); the image lists of a split when it is first asked for.
    `folder` is the dataset's own folder, where CoOp keeps its few-shot files.
    """

    def __init__(self, spec: DatasetSpec, root: str | Path):
        self.spec = spec
        self.name = spec.name
        self.root = Path(root)
        self.folder = self.root / spec.folder
        self.image_root = self.folder / spec.image_dir
        _require(self, self.folder)
        contents = _READERS[spec.kind](self)
        self._classnames = contents.classnames
        self._read_split = contents.read_split
        self.imagenet_labels = contents.imagenet_labels
        self._splits: dict[str, list[Datum]] = {}

    @property
    def classnames(self) -> list[str]:
        """Readable class names, indexed by label."""
        return list(self._classnames)

    def split(self, name: str) -> list[Datum]:
        """The items of split `name` (one of `SPLITS`)."""
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}, expected one of {SPLITS}")
        if name not in self._splits:
            self._splits[name] = self._read_split(name)
        return self._splits[name]

    def load_image(self, datum: Datum) -> Image.Image:
        """The datum's image as an RGB PIL image; `ImageReadError` names an unreadable file."""
        return load_rgb(self.image_root / datum.key)

    def load_mask(self, datum: Datum) -> np.ndarray | None:
        """Real datasets have no object masks."""
        return None

    def check(self, splits: Iterable[str] = ("train", "test")) -> None:
        """Raise `DatasetContentError` naming every problem of `splits`: a split without images, a
        class list whose size is not the table's, classes without training images, and listed image
        files (split files, FGVC lists) that do not exist (the first few and the count)."""
        problems = []
        if self.spec.num_classes and len(self.classnames) != self.spec.num_classes:
            problems.append(f"{len(self.classnames)} classes found where {self.name} has {self.spec.num_classes}")
        for split in splits:
            items = self.split(split)
            if not items:
                problems.append(f"no images in the {split} split under {self.image_root}")
                continue
            if split == "train":
                empty = sorted(set(range(len(self.classnames))) - {d.label for d in items})
                if empty:
                    names = ", ".join(self.classnames[i] for i in empty[:MISSING_SHOWN])
                    problems.append(f"{len(empty)} classes have no training images (e.g. {names})")
            if self.spec.kind in ("split_zhou", "fgvc"):
                missing = [str(self.image_root / d.key) for d in items if not (self.image_root / d.key).is_file()]
                if missing:
                    problems.append(f"{len(missing)} of the {len(items)} listed {split} images do not exist, e.g.\n"
                                    + indent("\n".join(missing[:MISSING_SHOWN])))
        if problems:
            raise DatasetContentError(
                f"{self.name} under {self.folder} is not usable:\n" + indent("\n".join(problems))
                + f"\nExpected layout under the data root {self.root}:\n{indent(self.spec.layout())}")


def _require(data: CoOpDataset, path: Path) -> Path:
    """`path` itself, or `DatasetNotFoundError` naming it and `data`'s layout."""
    if not path.exists():
        raise DatasetNotFoundError(path, data.spec, data.root)
    return path


def load_rgb(path: Path) -> Image.Image:
    """Open and fully decode an image file as RGB (grayscale, RGBA, palette, CMYK all converted)."""
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (OSError, SyntaxError, ValueError) as err:
        raise ImageReadError(f"cannot read image {path}: {err}") from err


def indent(text: str) -> str:
    return "\n".join("  " + line for line in text.splitlines())


def _lines(path: Path) -> list[str]:
    """The non-empty lines of a text file, stripped."""
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def readable(classname: str) -> str:
    """The class name CoOp's prompt learners tokenise: underscores become spaces."""
    return classname.replace("_", " ")


def _only_test(items: list[Datum]) -> Callable[[str], list[Datum]]:
    """A split reader for test-only sets: `items` for "test", nothing for train and val."""
    return lambda split: items if split == "test" else []


def image_files(directory: Path, recursive: bool = False) -> list[Path]:
    """Image files in `directory` (and its subfolders if `recursive`), hidden entries skipped,
    in sorted path order. One `scandir` per folder: ImageNet's train split is 1.28M files."""
    found: list[Path] = []
    with os.scandir(directory) as entries:
        for entry in entries:
            if entry.name.startswith("."):
                continue
            if recursive and entry.is_dir():
                found += image_files(Path(entry.path), recursive)
            elif entry.is_file() and os.path.splitext(entry.name)[1].lower() in IMAGE_SUFFIXES:
                found.append(Path(entry.path))
    return sorted(found)


def _class_folder_items(image_root: Path, classes: Iterable[tuple[str, int, str]]) -> list[Datum]:
    """Items of class folders: each (folder, label, classname) labels the images directly in
    `image_root / folder`; a folder that does not exist contributes nothing."""
    items = []
    for folder, label, classname in classes:
        directory = image_root / folder
        if directory.is_dir():
            items += [
                Datum(path.relative_to(image_root).as_posix(), label, classname)
                for path in image_files(directory)
            ]
    return items


def _read_split_zhou(data: CoOpDataset) -> _Contents:
    """A `split_zhou_*.json` file: items as [relpath, label, classname]; classes from the labels."""
    path = _require(data, data.folder / data.spec.split_file)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        splits = {
            split: [Datum(relpath, int(label), readable(name)) for relpath, label, name in raw[split]]
            for split in SPLITS
        }
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{path} is not a CoOp split file ({err!r})") from err
    names = names_by_label((d for items in splits.values() for d in items), path)
    return _Contents(names, splits.__getitem__)


def names_by_label(items: Iterable[Datum], source: Path) -> list[str]:
    """Class names indexed by label; every label 0..max must occur, each with one name."""
    names: dict[int, str] = {}
    for d in items:
        if names.setdefault(d.label, d.classname) != d.classname:
            raise ValueError(f"{source}: label {d.label} is both {names[d.label]!r} and {d.classname!r}")
    if set(names) != set(range(len(names))):
        raise ValueError(f"{source}: labels must be 0..{len(names) - 1}, found {sorted(names)}")
    return [names[label] for label in range(len(names))]


def _read_fgvc(data: CoOpDataset) -> _Contents:
    """FGVCAircraft: labels by line order of variants.txt; split files "<id> <variant>" per line."""
    variants_file = _require(data, data.folder / "variants.txt")
    variants = _lines(variants_file)
    label_of = {variant: label for label, variant in enumerate(variants)}

    def read_split(split: str) -> list[Datum]:
        path = _require(data, data.folder / f"images_variant_{split}.txt")
        items = []
        for line in _lines(path):
            image_id, _, variant = line.partition(" ")
            if variant not in label_of:
                raise ValueError(f"{path}: {variant!r} is not in {variants_file}")
            items.append(Datum(f"{image_id}.jpg", label_of[variant], readable(variant)))
        return items

    return _Contents([readable(v) for v in variants], read_split)


def _imagenet_classes(data: CoOpDataset) -> dict[str, str]:
    """wnid -> readable name in sorted-wnid (label) order, from the dataset's own classnames.txt
    or else ImageNet's."""
    candidates = [data.folder / "classnames.txt", data.root / "imagenet" / "classnames.txt"]
    path = next((p for p in candidates if p.is_file()), None)
    if path is None:
        raise DatasetNotFoundError(candidates[0], data.spec, data.root)
    names = {wnid: readable(name) for wnid, _, name in (line.partition(" ") for line in _lines(path))}
    return {wnid: names[wnid] for wnid in sorted(names)}


def _read_imagenet(data: CoOpDataset) -> _Contents:
    """ImageNet: images/train/<wnid>/ is train, images/val/<wnid>/ the test set, no val split."""
    classes = _imagenet_classes(data)
    folder_of = {"train": "train", "test": "val"}

    def read_split(split: str) -> list[Datum]:
        if split == "val":
            return []
        split_dir = folder_of[split]
        _require(data, data.image_root / split_dir)
        entries = (
            (f"{split_dir}/{wnid}", label, name) for label, (wnid, name) in enumerate(classes.items())
        )
        return _class_folder_items(data.image_root, entries)

    return _Contents(list(classes.values()), read_split, list(range(len(classes))))


def _read_imagenet_by_index(data: CoOpDataset) -> _Contents:
    """ImageNet-V2: folder <k> holds images of the k-th ImageNet class."""
    names = list(_imagenet_classes(data).values())
    _require(data, data.image_root)
    items = _class_folder_items(data.image_root, ((str(k), k, name) for k, name in enumerate(names)))
    return _Contents(names, _only_test(items), list(range(len(names))))


def _read_imagenet_by_wnid(data: CoOpDataset) -> _Contents:
    """ImageNet-Sketch: folder <wnid> holds images of that class, labelled over all ImageNet classes."""
    classes = _imagenet_classes(data)
    _require(data, data.image_root)
    entries = ((wnid, label, name) for label, (wnid, name) in enumerate(classes.items()))
    items = _class_folder_items(data.image_root, entries)
    return _Contents(list(classes.values()), _only_test(items), list(range(len(classes))))


def _read_imagenet_subset(data: CoOpDataset) -> _Contents:
    """ImageNet-A / -R: the wnid folders present are the classes, labelled 0.. in sorted order;
    other entries (README.txt) are ignored."""
    classes = _imagenet_classes(data)
    imagenet_label = {wnid: label for label, wnid in enumerate(classes)}
    present = sorted(
        p.name for p in _require(data, data.image_root).iterdir() if p.is_dir() and p.name in classes
    )
    entries = ((wnid, label, classes[wnid]) for label, wnid in enumerate(present))
    items = _class_folder_items(data.image_root, entries)
    return _Contents([classes[w] for w in present], _only_test(items), [imagenet_label[w] for w in present])


def _read_image_folder(data: CoOpDataset) -> _Contents:
    """An OOD folder: every image below it is an unlabelled test item."""
    items = [
        Datum(path.relative_to(data.image_root).as_posix(), OOD_LABEL, "")
        for path in image_files(_require(data, data.image_root), recursive=True)
    ]
    return _Contents([], _only_test(items))


_READERS: dict[Kind, Callable[[CoOpDataset], _Contents]] = {
    "split_zhou": _read_split_zhou,
    "fgvc": _read_fgvc,
    "imagenet": _read_imagenet,
    "imagenet_by_index": _read_imagenet_by_index,
    "imagenet_by_wnid": _read_imagenet_by_wnid,
    "imagenet_subset": _read_imagenet_subset,
    "image_folder": _read_image_folder,
}


def _normalised(name: str) -> str:
    """Case, "-", "_" and spaces ignored: "imagenet_sketch" matches "ImageNet-Sketch"."""
    return "".join(ch for ch in name.lower() if ch not in "-_ ")


_BY_NAME: dict[str, DatasetSpec] = {
    _normalised(key): spec for spec in DATASETS for key in (spec.folder, spec.name)
}


def list_datasets(group: Group | None = None) -> list[str]:
    """Names of the known datasets in table order, optionally only those of one `group`."""
    return [spec.name for spec in DATASETS if group in (None, spec.group)]


def get_dataset(name: str, root: str | Path) -> CoOpDataset:
    """Benchmark dataset or ImageNet shift `name` (a table or folder name, case-insensitive) under
    data root `root`. OOD sets are `get_ood_set`'s."""
    spec = _BY_NAME.get(_normalised(name))
    if spec is None or spec.group == "ood":
        known = [n for n in list_datasets() if n not in list_datasets("ood")]
        guess = difflib.get_close_matches(_normalised(name), [_normalised(n) for n in known], n=1, cutoff=0.5)
        hint = f"did you mean {next(n for n in known if _normalised(n) == guess[0])}? " if guess else ""
        ood = f"{spec.name} is an OOD set (`vlp protocol ood --datasets {spec.name}`); " if spec else ""
        raise KeyError(f"unknown dataset {name!r}: {hint}{ood}known: {', '.join(known)}")
    return CoOpDataset(spec, root)


def get_ood_set(name: str, root: str | Path) -> CoOpDataset:
    """OOD set `name` under data root `root`: one of the table's (iNaturalist, SUN, Places, Textures
    at dtd/images), or any image folder `root / name` as an unlabelled test set."""
    spec = _BY_NAME.get(_normalised(name))
    if spec is None or spec.group != "ood":
        spec = DatasetSpec(name, name, "", "image_folder", 0)
    return CoOpDataset(spec, root)


def _open(name: str, root: Path | None, image_size: int, splits: tuple[str, ...], ood: bool) -> CoOpDataset:
    data = (get_ood_set if ood else get_dataset)(name, root)
    data.check(splits)
    return data


register_reader(Reader("coop", order=90, reads=lambda name, root: root is not None, open=_open,
                       what="the CoOp-format benchmark datasets, ImageNet shifts and OOD sets under a data root"))
