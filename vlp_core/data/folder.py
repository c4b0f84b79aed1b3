"""A user's own images: a folder of class folders, or a CoOp-format split file, named by its path.

`--data PATH` (and `open_dataset(PATH)`) reads, before every other reader:
- **a folder of class folders** (torchvision's ImageFolder layout): `PATH/<class>/<image>`, one folder per
  class, labels in sorted folder order. A class is named by its folder, underscores read as spaces, or by
  an optional `PATH/classnames.txt` ("<folder> <class name>" per line, every class folder listed). The
  first use splits every class's images into train / val / test (`FRACTIONS` of each class, the test and
  val counts rounded and at least one each, train the rest; shuffled with `SPLIT_SEED`) and writes the
  split as `PATH/split_zhou.json`, CoOp's split file format with the seed and fractions recorded in it;
  every later use reads that file back (and says so), so runs share one split. Delete it to split again.
  Class names always follow the folders (or classnames.txt) as they are: renaming a class keeps its
  split and its few-shot draws.
- **a CoOp-format split file** `PATH.json`: `{"train": [[relpath, label, classname], ...], "val": [...],
  "test": [...]}` ("val" may be left out). Image paths are relative to the JSON's folder, or else to the
  one folder beside the JSON that holds them all (CoOp's `images/`, `jpg/`, `2750/`, ...). The dataset is
  named after the file (`split_zhou_OxfordPets.json` -> OxfordPets) or, for `split_zhou.json`, its folder.

Few-shot draws are kept beside the data, in `split_fewshot/` of the folder (of the JSON's folder), as for
CoOp's datasets. Anything that would make a run meaningless is refused with one message naming the path
and the fix, before anything trains: an empty folder, a single class, images outside the class folders,
folders inside a class folder, files that are not images or cannot be read, two folders that name the same
class, a class too small to split, listed images that do not exist, and (when a few-shot draw is asked
for) a class with fewer training images than the shots.
"""

from __future__ import annotations

import json
import logging
import os
import random
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from vlp_core.data.base import SPLITS, Datum
from vlp_core.data.coop import IMAGE_SUFFIXES, indent, load_rgb, names_by_label, readable
from vlp_core.data.datasets import Reader, register_reader
from vlp_core.files import write_text_atomically

SPLIT_FILE = "split_zhou.json"  # the split written into a folder of class folders
CLASSNAMES_FILE = "classnames.txt"
FEW_SHOT_FOLDER = "split_fewshot"  # where make_task keeps the few-shot draws (not a class)
SYSTEM_FILES = frozenset({"Thumbs.db", "desktop.ini"})  # left in folders by file browsers: skipped
SPLIT_SEED = 1
FRACTIONS = {"train": 0.5, "val": 0.2, "test": 0.3}  # CoOp's read_and_split_data defaults
SHOWN = 5  # paths named in a message, with the count of the others
log = logging.getLogger("vlp")


class FolderDataError(ValueError):
    """A user's image folder or split file cannot be used as it is; the message names the path and the fix."""


class FolderData:
    """A `ClassificationData` of a user's images (a folder of class folders or a CoOp split file).

    `folder` holds the split file and the few-shot draws; `image_root` is where the keys (relative
    paths, "/"-separated) point; `source` is what the data was opened from (the folder or the JSON).
    """

    def __init__(self, name: str, source: Path, folder: Path, image_root: Path, splits: dict[str, list[Datum]]):
        self.name, self.source, self.folder, self.image_root = name, source, folder, image_root
        self._splits = splits
        self._classnames = names_by_label((d for items in splits.values() for d in items), source)

    @property
    def classnames(self) -> list[str]:
        """Readable class names, indexed by label."""
        return list(self._classnames)

    def split(self, name: str) -> list[Datum]:
        """The items of split `name` (one of `SPLITS`)."""
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}, expected one of {SPLITS}")
        return self._splits[name]

    def load_image(self, datum: Datum) -> Image.Image:
        """The datum's image as an RGB PIL image; `ImageReadError` names an unreadable file."""
        return load_rgb(self.image_root / datum.key)

    def load_mask(self, datum: Datum) -> np.ndarray | None:
        """A user's images have no object masks."""
        return None

    def require_shots(self, shots: int) -> None:
        """Refuse a few-shot draw of `shots` per class from a class with fewer training images (a draw
        would silently take fewer), naming the class, its count and what to do."""
        counts = [0] * len(self._classnames)
        for item in self._splits["train"]:
            counts[item.label] += 1
        short = [label for label, count in enumerate(counts) if count < shots]
        if not short:
            return
        label = min(short, key=counts.__getitem__)
        others = {1: "", 2: " (and 1 more class)"}.get(len(short), f" (and {len(short) - 1} more classes)")
        raise FolderDataError(
            f"class {self._classnames[label]!r}{others} has {counts[label]} training images, fewer than the {shots} "
            f"shots asked: {self._more_images_hint(label, shots)}, or ask for --shots {counts[label]} or fewer")

    def _more_images_hint(self, label: int, shots: int) -> str:
        """How to give class `label` `shots` training images."""
        if self.source.suffix == ".json":
            return f"list more training images of it in {self.source}"
        key = next(d.key for d in self._splits["train"] if d.label == label)
        needed = next(n for n in range(shots, 4 * shots + 4) if split_counts(n)["train"] >= shots)
        return (f"the split of {self.source} keeps about half of each class for training, so put at least "
                f"{needed} images in {self.image_root / Path(key).parent} and delete {self.folder / SPLIT_FILE} to "
                f"split again")


# ------------------------------------------------------------------------- a folder of class folders


@dataclass(frozen=True)
class ClassFolder:
    """One class folder: its name, the class it names, and its image files (sorted, relative to the
    dataset folder, "/"-separated)."""

    folder: str
    classname: str
    images: tuple[str, ...]


def split_counts(n: int) -> dict[str, int]:
    """How the n images of one class are split: test and val round(n · fraction) (halves up), at least 1
    each, train the rest -> {"train", "val", "test"} counts."""
    test, val = (max(1, int(n * FRACTIONS[split] + 0.5)) for split in ("test", "val"))
    return {"train": n - test - val, "val": val, "test": test}


def read_class_folders(folder: Path) -> list[ClassFolder]:
    """The class folders of `folder` in label (sorted folder) order, checked: `FolderDataError` names every
    kind of problem found (with the first few paths and the count of each)."""
    top = _entries(folder)
    folders = [e.name for e in top if e.is_dir() and e.name != FEW_SHOT_FOLDER]
    loose = [e.name for e in top if e.is_file() and _is_image(e.name)]
    if not folders:
        raise FolderDataError(
            f"{folder} holds no class folders" + (f" (images directly in it: {_listed(loose)})" if loose else "")
            + f": put each class's images in a folder named after the class ({folder / 'cat'}/1.jpg, "
              f"{folder / 'dog'}/1.jpg, ...), or pass a CoOp split file (--data path/to/split.json)")
    names = _class_names(folder, folders)
    classes, nested, not_images = [], [], []
    for name in folders:
        inside = _entries(folder / name)
        nested += [f"{name}/{e.name}/" for e in inside if e.is_dir()]
        not_images += [f"{name}/{e.name}" for e in inside if e.is_file() and not _is_image(e.name)]
        classes.append(ClassFolder(name, names[name], tuple(f"{name}/{e.name}" for e in inside
                                                            if e.is_file() and _is_image(e.name))))
    if nested and not any(c.images for c in classes):
        raise FolderDataError(_one_level_down(folder, folders))
    problems = _layout_problems(folder, classes, loose, nested, not_images) + _duplicate_names(classes)
    if problems:
        raise FolderDataError(f"{folder} cannot be used as a folder of class folders:\n"
                              + indent("\n".join(f"- {p}" for p in problems)))
    return classes


def _entries(folder: Path) -> list[os.DirEntry]:
    """The entries of `folder` in name order, hidden ones and the system's thumbnail files left out."""
    return sorted((e for e in os.scandir(folder) if not e.name.startswith(".") and e.name not in SYSTEM_FILES),
                  key=lambda e: e.name)


def _layout_problems(folder: Path, classes: list[ClassFolder], loose: list[str], nested: list[str],
                     not_images: list[str]) -> list[str]:
    """What is wrong with the folder's layout, each with its fix: a single class, images outside the class
    folders, folders inside them, files that are not images, classes too small to split."""
    problems = []
    if len(classes) == 1:
        problems.append(f"it holds one class folder ({classes[0].folder}/): a classifier needs at least two; add a "
                        f"folder for each other class beside it")
    if loose:
        problems.append(f"images outside the class folders: {_listed(loose)}; move each into the folder of its class")
    if nested:
        problems.append(f"folders inside class folders, which hold images only: {_listed(nested)}; move their "
                        f"images up into their class folder, or out of {folder}" + _split_file_hint(folder))
    if not_images:
        problems.append(f"files that are not images ({' '.join(sorted(IMAGE_SUFFIXES))}): {_listed(not_images)}; "
                        f"move them out of the class folders")
    small = [f"{c.folder}/ ({len(c.images)})" for c in classes if len(c.images) < 3]
    if small:
        problems.append(f"classes with fewer than 3 images, one each for train, val and test: {_listed(small)}; "
                        f"add images")
    return problems


def _is_image(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_SUFFIXES


def _listed(paths: list[str]) -> str:
    """The first `SHOWN` of `paths` and, if there are more, how many: "a, b, c, d, e and 2 more (7 in all)"."""
    shown = ", ".join(paths[:SHOWN])
    return f"{shown} and {len(paths) - SHOWN} more ({len(paths)} in all)" if len(paths) > SHOWN else shown


def _one_level_down(folder: Path, folders: list[str]) -> str:
    """The message for a folder whose folders hold folders and no images: a CoOp dataset's folder (its
    split file is what to pass), or the folder above the class folders."""
    split_files = sorted(folder.glob("split_zhou_*.json"))
    if split_files:
        return (f"{folder} holds a CoOp-format dataset ({split_files[0].name}), not class folders: pass its split "
                f"file, --data {split_files[0]}")
    inner = f"--data {folder / folders[0]}" if len(folders) == 1 else "the folder that holds the class folders"
    return (f"the folders in {folder} ({_listed([f'{name}/' for name in folders])}) hold folders, not images: if "
            f"those are the classes, pass {inner}")


def _split_file_hint(folder: Path) -> str:
    """A hint for a CoOp dataset folder passed as a folder of class folders."""
    split_files = sorted(p.name for p in folder.glob("split_zhou_*.json"))
    return f"; a CoOp dataset's folder is read through its split file: --data {folder / split_files[0]}" \
        if split_files else ""


def _class_names(folder: Path, folders: list[str]) -> dict[str, str]:
    """Class folder -> class name: from classnames.txt when the folder has one (it must list every class
    folder and no other), else the folder's name with underscores as spaces."""
    path = folder / CLASSNAMES_FILE
    if not path.is_file():
        return {name: readable(name) for name in folders}
    lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    listed = dict(line.partition(" ")[::2] for line in lines)
    unnamed = [name for name in folders if not listed.get(name, "").strip()]
    unknown = [name for name in listed if name not in folders]
    if unnamed or unknown:
        problems = ([f"names no class for {_listed(unnamed)}"] if unnamed else []) + \
                   ([f"lists {_listed(unknown)}, which are not class folders"] if unknown else [])
        raise FolderDataError(f"{path} {' and '.join(problems)}: it holds one line \"<folder> <class name>\" for "
                              f"every class folder of {folder} (or delete it to name classes by their folders)")
    return {name: listed[name].strip() for name in folders}


def _duplicate_names(classes: list[ClassFolder]) -> list[str]:
    """One problem per class name that two or more folders give (underscores as spaces, case and repeated
    spaces ignored: CLIP's tokenizer reads them alike)."""
    by_name: dict[str, list[str]] = {}
    for c in classes:
        by_name.setdefault(" ".join(c.classname.lower().split()), []).append(c.folder)
    return [f"the folders {', '.join(f'{f}/' for f in folders)} all name the class {name!r} (underscores read as "
            f"spaces, case ignored): rename or merge them" for name, folders in by_name.items() if len(folders) > 1]


def unreadable_images(folder: Path, classes: list[ClassFolder]) -> list[str]:
    """The images whose header PIL cannot read, as "path (reason)"."""
    broken = []
    for c in classes:
        for key in c.images:
            try:
                with Image.open(folder / key) as image:
                    image.size  # the header is parsed on open; a non-image raises here
            except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as error:
                broken.append(f"{key} ({type(error).__name__})")
    return broken


def write_split(folder: Path, classes: list[ClassFolder]) -> dict[str, list[list]]:
    """Split every class's images (`split_counts`, shuffled with `SPLIT_SEED`, classes in label order),
    write it to `folder / SPLIT_FILE` with the seed and fractions, and return the three lists."""
    broken = unreadable_images(folder, classes)
    if broken:
        raise FolderDataError(f"images under {folder} that cannot be read: {_listed(broken)}; replace or remove them")
    rng = random.Random(SPLIT_SEED)
    splits: dict[str, list[list]] = {split: [] for split in SPLITS}
    for label, c in enumerate(classes):
        images = list(c.images)
        rng.shuffle(images)
        counts = split_counts(len(images))
        start = 0
        for split in ("train", "val", "test"):
            splits[split] += [[key, label, c.classname] for key in images[start : start + counts[split]]]
            start += counts[split]
    content = {**splits, "seed": SPLIT_SEED, "fractions": FRACTIONS,
               "rule": "per class: test and val round(n x fraction), at least 1 each; train the rest"}
    try:
        write_text_atomically(folder / SPLIT_FILE, json.dumps(content, indent=1))
    except OSError as error:
        raise FolderDataError(f"cannot write the split file {folder / SPLIT_FILE} ({error.strerror}): make "
                              f"{folder} writable, or write a split file elsewhere and pass it (--data "
                              f"path/to/split.json)") from error
    return splits


def open_folder(folder: Path) -> FolderData:
    """A folder of class folders, split on first use (see the module docstring)."""
    folder = folder.resolve()
    classes = read_class_folders(folder)
    path = folder / SPLIT_FILE
    if path.is_file():
        items, _ = read_split_file(path, f"delete {path} to split {folder} again")
        data = FolderData(folder.name, folder, folder, folder, _named_now(items, classes))
        _note_added_images(data, classes)
        log.info(f"reusing the split in {path} (seed {SPLIT_SEED}; delete it to split again)")
        return data
    splits = write_split(folder, classes)
    counts = {split: len(items) for split, items in splits.items()}
    log.info(f"split {sum(counts.values())} images of {len(classes)} classes into train {counts['train']} / val "
             f"{counts['val']} / test {counts['test']} (seed {SPLIT_SEED}), written to {path}; later runs reuse it")
    return FolderData(folder.name, folder, folder, folder, _datums(splits, path))


def _named_now(items: dict[str, list[Datum]], classes: list[ClassFolder]) -> dict[str, list[Datum]]:
    """A stored split's items with the class names their folders give now (classnames.txt, or the folder
    names): the split file fixes which images go where, the folder what the classes are called."""
    names = {c.folder: c.classname for c in classes}
    return {split: [replace(d, classname=names.get(d.key.split("/")[0], d.classname)) for d in split_items]
            for split, split_items in items.items()}


def _note_added_images(data: FolderData, classes: list[ClassFolder]) -> None:
    """Warn when the folder holds images its stored split does not list (added since it was written)."""
    listed = {d.key for split in SPLITS for d in data.split(split)}
    added = [key for c in classes for key in c.images if key not in listed]
    if added:
        log.warning(f"images in {data.folder} that its split {data.folder / SPLIT_FILE} does not list, and that are "
                    f"not used: {_listed(added)}; delete the split file to split again with them")


# ------------------------------------------------------------------------------------ a split file


def open_split_file(path: Path) -> FolderData:
    """A CoOp-format split file, named after the file (`split_zhou_<name>.json`) or else its folder."""
    path = path.resolve()
    items, image_root = read_split_file(path, "move the file or fix its paths")
    name = path.stem.removeprefix("split_zhou").lstrip("_") or path.parent.name
    return FolderData(name, path, path.parent, image_root, items)


def read_split_file(path: Path, fix: str) -> tuple[dict[str, list[Datum]], Path]:
    """The items of a CoOp-format split file and the folder its paths are relative to (`_image_root`);
    `fix` ends the message that lists missing images."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        splits = {split: [list(entry) for entry in raw.get(split, [])] for split in SPLITS}
        for entries in splits.values():
            for relpath, label, classname in entries:
                if not isinstance(relpath, str) or not isinstance(classname, str) or int(label) != label:
                    raise ValueError(f"[{relpath!r}, {label!r}, {classname!r}] is not [relpath, label, classname]")
    except (ValueError, TypeError, AttributeError) as error:
        raise FolderDataError(f"{path} is not a CoOp split file ({error}): it holds {{\"train\": [[relpath, label, "
                              f"classname], ...], \"val\": [...], \"test\": [...]}}") from error
    if not splits["train"] or not splits["test"]:
        empty = " and ".join(split for split in ("train", "test") if not splits[split])
        raise FolderDataError(f"{path} lists no {empty} images: a run trains on the train split and is scored "
                              f"on the test split")
    items = _datums(splits, path)
    return items, _image_root(path, [d.key for split in SPLITS for d in items[split]], fix)


def _datums(splits: dict[str, list[list]], source: Path) -> dict[str, list[Datum]]:
    """[relpath, label, classname] lists as `Datum`s (class names with underscores as spaces)."""
    items = {split: [Datum(relpath, int(label), readable(classname)) for relpath, label, classname in entries]
             for split, entries in splits.items()}
    if len({d.label for d in items["train"]}) < 2:
        raise FolderDataError(f"{source} has fewer than two classes in its train split: a classifier needs at "
                              f"least two")
    return items


def _image_root(path: Path, keys: list[str], fix: str) -> Path:
    """The folder the listed paths are relative to: the JSON's own folder, else the one folder beside it
    that holds the first of them; `FolderDataError` lists the paths missing there, then `fix`."""
    beside = sorted(p for p in path.parent.iterdir() if p.is_dir() and not p.name.startswith("."))
    root = next((c for c in [path.parent, *beside] if (c / keys[0]).is_file()), path.parent)
    missing = [key for key in keys if not (root / key).is_file()]
    if missing:
        raise FolderDataError(
            f"{path} lists {len(missing)} images (of {len(keys)}) that do not exist under {root}, e.g.\n"
            + indent("\n".join(missing[:SHOWN]))
            + f"\nPaths are relative to the JSON's folder or to the one folder beside it that holds them (CoOp's "
              f"images/, jpg/, ...): {fix}")
    return root


def _reads(name: str, root: Path | None) -> bool:
    """An existing folder, or an existing .json file."""
    path = Path(name)
    return path.is_dir() or (path.suffix.lower() == ".json" and path.is_file())


def _open(name: str, root: Path | None, image_size: int, splits: tuple[str, ...], ood: bool) -> FolderData:
    path = Path(name)
    return open_folder(path) if path.is_dir() else open_split_file(path)


register_reader(Reader("folder", order=5, reads=_reads, open=_open,
                       what="a folder of class folders or a CoOp-format split .json, by its path"))
