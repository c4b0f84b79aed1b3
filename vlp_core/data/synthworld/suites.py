"""Task suites: classification datasets over SynthWorld behind `ClassificationData`.

A suite is a class list plus a sampler that turns a label into a random scene. Item `index` of a
split has label `index % C` (balanced, and any prefix is near balanced), a scene drawn from the
generator of its address (suite, split, index, seed), and key f"{split}/{index}". Nothing is
stored: images are rendered when loaded.

Suites:
- `shapes`: the main object's shape (12 classes).
- `colour_shapes`: "<colour> <shape>" (32 classes); the base half (first 16 labels) are
  combinations seen in pretraining, the novel half exactly the held-out ones.
- `patterns`: "<pattern> <shape>" (24 classes), medium and large objects so patterns show.
- `scenes`: which two shapes are in the picture, "<shape> and a <shape>" (21 classes); the
  label needs both objects, not only the main one, so its object mask covers both.
- `shapes@<style>` for each non-photo style: the scenes of `shapes`, item for item, in another
  style (a domain shift: same labels and specs, different pixels).
- `styles`: the rendering style, "photo", "sketch", "noisy photo", "pixelated image", "painting"
  (5 classes): a label about the whole picture, not the object.
- `ood`: main objects of the OOD shapes (4 classes), for OOD detection against `shapes`.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations
from typing import Callable

import numpy as np
from PIL import Image

from vlp_core.data.base import SPLITS, Datum
from vlp_core.data.datasets import Reader, register_reader
from vlp_core.data.synthworld.attributes import (
    DEFAULT_DIFFICULTY,
    HELD_OUT_COMBOS,
    OOD_SHAPES,
    PATTERNS,
    SEEN_COMBOS,
    SHAPES,
    STYLES,
    Difficulty,
    article,
)
from vlp_core.data.synthworld.captions import STYLE_NOUNS
from vlp_core.data.synthworld.render import SceneSpec, render_objects
from vlp_core.data.synthworld.scenes import item_rng, sample_pair_scene, sample_scene

Sampler = Callable[[int, np.random.Generator, Difficulty], SceneSpec]

# Seen combinations first, so CoOp's base half (the first ceil(C/2) sorted labels) is exactly
# them and the novel half exactly the held-out ones.
COLOUR_SHAPE_COMBOS: tuple[tuple[str, str], ...] = SEEN_COMBOS + HELD_OUT_COMBOS
PATTERN_SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "heart", "hexagon")
PATTERN_CLASSES: tuple[tuple[str, str], ...] = tuple(
    (pattern, shape) for pattern in PATTERNS for shape in PATTERN_SHAPES
)
SCENE_SHAPES: tuple[str, ...] = (
    "circle", "square", "triangle", "star", "heart", "cross", "crescent"
)
SCENE_PAIRS: tuple[tuple[str, str], ...] = tuple(combinations(SCENE_SHAPES, 2))
# Labels of the `styles` suite, in STYLES order.
STYLE_CLASSES: tuple[str, ...] = ("photo", "sketch", "noisy", "pixelated", "painted")


@dataclass(frozen=True)
class SuiteDefinition:
    """A suite's classes, how a label becomes a scene, and the style it is rendered in.

    `stream` names whose item addresses the scenes come from (default: the suite's own name);
    style domains share their source suite's stream, so their scenes are the same.
    `labels_object`: the label names objects, so their mask is the labelled region (not so for
    `styles`, whose label is the whole picture's). `labelled_objects`: how many objects the label
    names, the main object first, then the scene's first distractors (`scenes`: both shapes);
    the object mask of an item covers every one of them.
    """

    classnames: tuple[str, ...]
    sample: Sampler
    style: str | None = "photo"  # None: the sampler's own style per scene (the label may be the style)
    stream: str | None = None
    labels_object: bool = True
    labelled_objects: int = 1


def _shapes(label: int, rng: np.random.Generator, difficulty: Difficulty) -> SceneSpec:
    return sample_scene(rng, difficulty, shape=SHAPES[label])


def _colour_shapes(label: int, rng: np.random.Generator, difficulty: Difficulty) -> SceneSpec:
    colour, shape = COLOUR_SHAPE_COMBOS[label]
    return sample_scene(rng, difficulty, shape=shape, colour=colour)


def _patterns(label: int, rng: np.random.Generator, difficulty: Difficulty) -> SceneSpec:
    pattern, shape = PATTERN_CLASSES[label]
    return sample_scene(
        rng, difficulty, shape=shape, pattern=pattern, sizes=("medium", "large")
    )


def _scenes(label: int, rng: np.random.Generator, difficulty: Difficulty) -> SceneSpec:
    return sample_pair_scene(rng, difficulty, shapes=SCENE_PAIRS[label])


def _styles(label: int, rng: np.random.Generator, difficulty: Difficulty) -> SceneSpec:
    return sample_scene(rng, difficulty, style=STYLE_CLASSES[label])


def _ood(label: int, rng: np.random.Generator, difficulty: Difficulty) -> SceneSpec:
    return sample_scene(rng, difficulty, shape=OOD_SHAPES[label])


SUITES: dict[str, SuiteDefinition] = {
    "shapes": SuiteDefinition(SHAPES, _shapes),
    "colour_shapes": SuiteDefinition(
        tuple(f"{colour} {shape}" for colour, shape in COLOUR_SHAPE_COMBOS), _colour_shapes
    ),
    "patterns": SuiteDefinition(
        tuple(f"{pattern} {shape}" for pattern, shape in PATTERN_CLASSES), _patterns
    ),
    "scenes": SuiteDefinition(
        tuple(f"{a} and {article(b)} {b}" for a, b in SCENE_PAIRS), _scenes, labelled_objects=2
    ),
    "styles": SuiteDefinition(tuple(STYLE_NOUNS[style] for style in STYLE_CLASSES), _styles, style=None,
                              labels_object=False),
    **{
        f"shapes@{style}": SuiteDefinition(SHAPES, _shapes, style=style, stream="shapes")
        for style in STYLES
        if style != "photo"
    },
    "ood": SuiteDefinition(OOD_SHAPES, _ood),
}


# Every suite whose label is a class of its own (not the OOD set): what `vlp diagnose` measures.
CLASSIFICATION_SUITES: tuple[str, ...] = tuple(name for name in SUITES if name != "ood")


class SynthSuite:
    """One SynthWorld suite as a `ClassificationData`; split sizes are per class."""

    def __init__(
        self,
        name: str,
        definition: SuiteDefinition,
        seed: int = 0,
        image_size: int = 64,
        n_train: int = 40,
        n_val: int = 10,
        n_test: int = 25,
        difficulty: Difficulty = DEFAULT_DIFFICULTY,
    ) -> None:
        self.name = name
        self.definition = definition
        self.seed = seed
        self.image_size = image_size
        self.difficulty = difficulty
        self.per_class = {"train": n_train, "val": n_val, "test": n_test}
        self._splits: dict[str, list[Datum]] = {}

    @property
    def classnames(self) -> list[str]:
        """Readable class names, indexed by label."""
        return list(self.definition.classnames)

    @property
    def domain(self) -> str:
        """The rendering style of every image of the suite ("mixed" where the label is the style)."""
        return self.definition.style or "mixed"

    def split(self, name: str) -> list[Datum]:
        """Items of split `name`: label of item i is i % C, key f"{name}/{i}"."""
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}, expected one of {SPLITS}")
        if name not in self._splits:
            n_classes = len(self.definition.classnames)
            self._splits[name] = [
                self._datum(name, index, index % n_classes)
                for index in range(self.per_class[name] * n_classes)
            ]
        return self._splits[name]

    def _datum(self, split: str, index: int, label: int) -> Datum:
        classname = self.definition.classnames[label]
        return Datum(key=f"{split}/{index}", label=label, classname=classname, domain=self.domain)

    def scene(self, split: str, index: int) -> SceneSpec:
        """The scene of item `index` of `split`, a pure function of (suite, split, index, seed)."""
        stream = self.definition.stream or self.name
        rng = item_rng(self.seed, stream, split, index)
        label = index % len(self.definition.classnames)
        spec = self.definition.sample(label, rng, self.difficulty)
        return spec if self.definition.style is None else spec.with_style(self.definition.style)

    def render_item(self, split: str, index: int) -> tuple[np.ndarray, np.ndarray, SceneSpec]:
        """Image uint8 (S, S, 3), the labelled objects' mask bool (S, S) and scene of one item.

        The mask holds the visible pixels of every object the label names (`labelled_objects`:
        the main object, and for `scenes` the other shape too).
        """
        spec = self.scene(split, index)
        image, objects = render_objects(spec, self.image_size)
        mask = (objects >= 0) & (objects < self.definition.labelled_objects)  # BACKGROUND is -1
        return image, mask, spec

    def render_batch(self, preprocess: Callable[[Image.Image], "torch.Tensor"], split: str = "test",
                     n: int = 200) -> tuple["torch.Tensor", "torch.Tensor", np.ndarray]:
        """The first n items of a split through `preprocess` (a CLIP's test transform): images
        (n, 3, S', S'), labels (n,), the labelled objects' masks bool (n, S, S) (`render_item`)."""
        import torch

        images, masks = [], []
        items = self.split(split)[:n]
        for item in items:
            image, mask, _ = self.render_item(*_address(item))
            images.append(preprocess(Image.fromarray(image)))
            masks.append(mask)
        return torch.stack(images), torch.tensor([item.label for item in items]), np.stack(masks)

    def load_image(self, datum: Datum) -> Image.Image:
        """The datum's image as an RGB PIL image of side `image_size`."""
        image, _, _ = self.render_item(*_address(datum))
        return Image.fromarray(image)  # uint8 (S, S, 3): RGB

    def load_mask(self, datum: Datum) -> np.ndarray | None:
        """The bool (S, S) mask of every object the label names (`render_item`); None where the
        label is not about objects (`styles`)."""
        if not self.definition.labels_object:
            return None
        _, mask, _ = self.render_item(*_address(datum))
        return mask


def _address(datum: Datum) -> tuple[str, int]:
    """(split, index) from a key f"{split}/{index}"."""
    split, index = datum.key.split("/")
    return split, int(index)


def list_suites() -> list[str]:
    """Names of all suites, in definition order."""
    return list(SUITES)


def get_suite(
    name: str,
    seed: int = 0,
    image_size: int = 64,
    n_train: int = 40,
    n_val: int = 10,
    n_test: int = 25,
    difficulty: Difficulty = DEFAULT_DIFFICULTY,
) -> SynthSuite:
    """Suite `name` (see `list_suites`); split sizes are per class."""
    if name not in SUITES:
        raise KeyError(f"unknown SynthWorld suite {name!r}; known: {', '.join(SUITES)}")
    return SynthSuite(name, SUITES[name], seed, image_size, n_train, n_val, n_test, difficulty)


register_reader(Reader("synthworld", order=90, reads=lambda name, root: root is None,
                       open=lambda name, root, image_size, splits, ood: get_suite(name, image_size=image_size),
                       what="the SynthWorld suites without a data root (" + ", ".join(SUITES) + ")"))
