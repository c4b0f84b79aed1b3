"""What users hand the app, checked and normalised: class lists, uploaded files, samples (SynthWorld's and,
with `--data PATH`, the test images of the user's own dataset).

Every problem a user can cause becomes an `InputError` with a message meant for them, or a notice
when the input was usable after a fix (deduplicated names, a resized or converted image).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from vlp_core.data.synthworld import SUITES, get_suite, list_suites

MAX_PIXELS = 50_000_000  # larger images are refused before they are decoded
MAX_CLASSES = 1000
MAX_NAME_CHARS = 60
SAMPLE_INDICES = (3, 8)  # test items shown per suite; style suites share the scenes of `shapes`
SAMPLE_SPLIT = "test"
UPLOAD = "upload: "  # how an uploaded image's source starts
OOD_CLASSES_FROM = "shapes"  # the class list `ood` samples are out of distribution for
OWN_SAMPLES_PER_CLASS = 2  # test images of a user's dataset shown per class in the gallery
OWN_SAMPLES_MAX = 24
OWN_DATA: dict = {}  # name -> the user's dataset (`vlp_core.data.folder.FolderData`), see `add_own_data`


class InputError(ValueError):
    """An input the app cannot use; the message says why and what to do instead."""


@dataclass
class ClassList:
    """Cleaned class names and what was changed to get them."""

    names: list[str]
    notices: list[str] = field(default_factory=list)


@dataclass
class ImageInput:
    """An RGB image at the model's input size, its true label and object mask when known, and
    where it came from."""

    pixels: np.ndarray  # uint8 (S, S, 3)
    mask: np.ndarray | None  # bool (S, S), every object the label names (SynthWorld samples only)
    source: str
    notices: list[str] = field(default_factory=list)
    label: str | None = None  # the true class name (SynthWorld samples only)
    sample: str | None = None  # the SynthWorld sample's key "suite/split/index"


def parse_classes(text: str | None, tokenizer, max_tokens: int) -> ClassList:
    """Class names from text separated by commas or new lines.

    Empty entries are skipped, duplicates (ignoring case and spacing) dropped, names cut to
    `MAX_NAME_CHARS` characters and `max_tokens` tokens, and the list to `MAX_CLASSES` names.
    Raises InputError when no name is left.
    """
    raw = [" ".join(part.split()) for part in re.split(r"[,\n]", text or "")]
    raw = [name for name in raw if name]
    if not raw:
        raise InputError("The class list is empty: type class names separated by commas or new lines.")
    notices: list[str] = []
    names, seen, duplicates = [], set(), []
    for name in raw:
        if name.casefold() in seen:
            duplicates.append(name)
            continue
        seen.add(name.casefold())
        names.append(name)
    if duplicates:
        notices.append(f"Dropped {len(duplicates)} duplicate name(s): {', '.join(duplicates[:10])}.")
    if len(names) > MAX_CLASSES:
        notices.append(f"Kept the first {MAX_CLASSES} of {len(names)} classes.")
        names = names[:MAX_CLASSES]
    if len(names) == 1:
        notices.append(f"With one class every method gives '{names[0]}' 100 %: add the classes it should be "
                       f"told apart from.")
    shortened = [_shorten(name, tokenizer, max_tokens) for name in names]
    cut = [f"'{old}' -> '{new}'" for old, new in zip(names, shortened) if old != new]
    if cut:
        notices.append(f"Shortened {len(cut)} over-long name(s) to fit the text encoder: {'; '.join(cut[:5])}.")
    return ClassList(_renumber_collisions(shortened), notices)


def _shorten(name: str, tokenizer, max_tokens: int) -> str:
    """`name` cut to MAX_NAME_CHARS characters, then word by word until it has <= max_tokens tokens."""
    name = name[:MAX_NAME_CHARS].strip()
    while token_count(name, tokenizer) > max_tokens:
        words = name.split()
        name = " ".join(words[:-1]) if len(words) > 1 else name[: max(1, len(name) // 2)]
    return name


def _renumber_collisions(names: list[str]) -> list[str]:
    """Names made distinct again after shortening by appending " (2)", " (3)", ..."""
    counts: dict[str, int] = {}
    unique = []
    for name in names:
        counts[name.casefold()] = counts.get(name.casefold(), 0) + 1
        unique.append(name if counts[name.casefold()] == 1 else f"{name} ({counts[name.casefold()]})")
    return unique


def token_count(text: str, tokenizer) -> int:
    """Tokens of `text` between the start and end tokens (the end token has the largest id)."""
    ids = tokenizer([text])[0]
    return int(ids.argmax()) - 1


def read_image(path: str | Path | None, size: int) -> ImageInput:
    """An uploaded file as an RGB image of side `size` (shorter side resized, centre cropped).

    Grayscale, palette, RGBA (composited on white), 16-bit and float images are converted with a
    notice; non-images, corrupt files and images above MAX_PIXELS raise InputError.
    """
    if path is None or not Path(path).is_file():
        raise InputError("No file was received: choose an image file to upload.")
    name = Path(path).name
    try:
        image = Image.open(path)
    except UnidentifiedImageError:
        raise InputError(f"{name} is not an image this app can read (PNG, JPEG, WebP, BMP, GIF, TIFF).") from None
    except Image.DecompressionBombError:
        raise InputError(f"{name} has far more than {MAX_PIXELS / 1e6:.0f} megapixels. Downscale it first.") from None
    with image:
        width, height = image.size
        if width * height > MAX_PIXELS:
            raise InputError(f"{name} is {width}x{height} = {width * height / 1e6:.0f} megapixels; the "
                             f"limit is {MAX_PIXELS / 1e6:.0f}. Downscale it first.")
        notices = [f"Used the first frame of {image.n_frames}."] if getattr(image, "n_frames", 1) > 1 else []
        try:
            image.load()
            rgb = _to_rgb(ImageOps.exif_transpose(image), notices)
        except (OSError, SyntaxError, ValueError) as error:
            raise InputError(f"{name} looks corrupt or truncated and could not be decoded ({error}).") from None
    pixels = fit_to_size(rgb, size)
    if (width, height) != (size, size):
        notices.append(f"Resized from {width}x{height} to the model's {size}x{size} input (centre crop).")
    return ImageInput(pixels, None, f"{UPLOAD}{name}", notices)


def _to_rgb(image: Image.Image, notices: list[str]) -> np.ndarray:
    """uint8 (H, W, 3) from any PIL mode, noting each conversion in `notices`."""
    mode = image.mode
    if mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        values = np.asarray(image, dtype=np.float32)
        high = 65535.0 if mode != "F" and values.max() > 255 else max(float(values.max()), 1.0)
        gray = np.clip(values / high * 255.0, 0, 255).round().astype(np.uint8)
        notices.append(f"Scaled the {'floating-point' if mode == 'F' else '16-bit'} image to 8 bits.")
        return np.repeat(gray[..., None], 3, axis=-1)
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in image.info):
        notices.append("Composited the transparent image on a white background.")
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(white, rgba).convert("RGB"))
    if mode in ("L", "1"):
        notices.append("Converted the grayscale image to RGB.")
    return np.asarray(image.convert("RGB"))


def fit_to_size(pixels: np.ndarray, size: int) -> np.ndarray:
    """uint8 (H, W, 3) -> (size, size, 3): the centred square of side min(H, W), resized (bicubic).

    The same picture as resizing the shorter side and centre cropping (the test transform), but the
    crop comes first, so extreme aspect ratios never blow up in memory.
    """
    height, width = pixels.shape[:2]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    square = Image.fromarray(np.ascontiguousarray(pixels[top:top + side, left:left + side]))
    return np.asarray(square.resize((size, size), Image.Resampling.BICUBIC))


def add_own_data(data) -> None:
    """Show the test images of a user's dataset (`open_dataset(PATH)`) as samples, first in the gallery,
    labelled in its own class names. Raises InputError when its name is a SynthWorld suite's."""
    if data.name in SUITES:
        raise InputError(f"the dataset {data.source} is named {data.name!r}, like a SynthWorld suite: rename its "
                         "folder (or split file) to tell them apart")
    OWN_DATA[data.name] = data


def has_own_data() -> bool:
    """Whether a user's dataset is shown (`add_own_data`)."""
    return bool(OWN_DATA)


def sample_keys() -> list[str]:
    """Keys "dataset/split/index" of the gallery: a user's dataset's test images first (the first
    OWN_SAMPLES_PER_CLASS of each class, at most OWN_SAMPLES_MAX), then SAMPLE_INDICES of every
    SynthWorld suite (all styles, OOD)."""
    own = [f"{name}/{SAMPLE_SPLIT}/{index}" for name, data in OWN_DATA.items() for index in _own_indices(data)]
    return own + [f"{suite}/{SAMPLE_SPLIT}/{index}" for suite in list_suites() for index in SAMPLE_INDICES]


def _own_indices(data) -> list[int]:
    """Indices into the test split of a user's dataset: the first OWN_SAMPLES_PER_CLASS of each class."""
    taken: dict[int, int] = {}
    indices = []
    for index, datum in enumerate(data.split(SAMPLE_SPLIT)):
        if taken.get(datum.label, 0) < OWN_SAMPLES_PER_CLASS and len(indices) < OWN_SAMPLES_MAX:
            taken[datum.label] = taken.get(datum.label, 0) + 1
            indices.append(index)
    return indices


def read_sample(key: str, size: int) -> ImageInput:
    """A sample at the model's input size with its true label: a user's test image (centre-cropped,
    no mask), or a SynthWorld item rendered with the mask of the objects the label names (None where
    the suite's label is not about objects, e.g. `styles`)."""
    name, split, index = _parts(key)
    if name in OWN_DATA:
        data = OWN_DATA[name]
        datum = data.split(split)[index]
        pixels = fit_to_size(np.asarray(data.load_image(datum)), size)
        return ImageInput(pixels, None, f"your data {sample_caption(key)}", label=sample_label(key), sample=key)
    try:
        suite = get_suite(name, image_size=size)
        pixels, mask, _ = suite.render_item(split, index)
    except (ValueError, KeyError) as error:
        raise InputError(f"Unknown SynthWorld sample {key!r}: use suite/split/index, e.g. shapes/test/3 "
                         f"({error}).") from None
    return ImageInput(pixels, mask if suite.definition.labels_object else None, f"SynthWorld {sample_caption(key)}",
                      label=sample_label(key), sample=key)


def _parts(key: str) -> tuple[str, str, int]:
    """"dataset/split/index" -> (dataset, split, index); InputError for another form."""
    try:
        name, split, index = key.split("/")
        return name, split, int(index)
    except ValueError:
        raise InputError(f"Unknown sample {key!r}: use dataset/split/index, e.g. shapes/test/3.") from None


def sample_label(key: str) -> str:
    """The true class of sample "dataset/split/index": a user's image's folder class; item i of a
    SynthWorld suite has label i % C."""
    name, split, index = _parts(key)
    if name in OWN_DATA:
        data = OWN_DATA[name]
        return data.classnames[data.split(split)[index].label]
    classnames = get_suite(name).classnames
    return classnames[index % len(classnames)]


def sample_caption(key: str) -> str:
    """"dataset · split/index · true class" for a sample key."""
    name, split, index = _parts(key)
    return f"{name} · {split}/{index} · {sample_label(key)}"


def thumbnail_caption(key: str) -> str:
    """A gallery thumbnail's caption, short enough to show whole: the true class and index of a user's
    image, e.g. "tabby cat 4"; for SynthWorld, the suite (its style for a style domain) and the index,
    e.g. "sketch 3"."""
    name, _, index = _parts(key)
    if name in OWN_DATA:
        return f"{sample_label(key)} {index}"
    return f"{name.split('@')[-1].split('_')[0]} {index}"


def sample_classes(key: str) -> list[str]:
    """The class list a sample is labelled in: its dataset's, or for an `ood` sample the list it is
    out of distribution for (OOD_CLASSES_FROM's)."""
    name = key.split("/")[0]
    if name in OWN_DATA:
        return OWN_DATA[name].classnames
    if name not in SUITES:
        raise InputError(f"Unknown SynthWorld suite {name!r} in sample {key!r}.")
    return get_suite(OOD_CLASSES_FROM if name == "ood" else name).classnames
