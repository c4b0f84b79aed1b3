"""Random scene specifications, drawn from a per-image generator.

Every image of SynthWorld is addressed by (stream, split, index, seed); `item_rng` turns that
address into a NumPy generator through a stable hash, so the same address gives the same scene
in every process. The samplers below take such a generator and return a `SceneSpec`; anything a
caller fixes (a label's shape or colour) is passed in, the rest is drawn.
"""

from __future__ import annotations

import hashlib
import math
from typing import Sequence

import numpy as np

from vlp_core.data.base import SPLITS
from vlp_core.data.synthworld.attributes import (
    BACKGROUNDS,
    COLOUR_NAMES,
    COLOURS,
    DEFAULT_DIFFICULTY,
    PATTERNS,
    RGB,
    SHAPES,
    SIZES,
    Difficulty,
)
from vlp_core.data.synthworld.render import ObjectSpec, SceneSpec

Combo = tuple[str, str]

# Split ids of the item address; "stream" is the pretraining stream.
_SPLIT_IDS = {name: i for i, name in enumerate((*SPLITS, "stream", "group"))}
_EDGE_MARGIN = 0.02


def stable_id(name: str) -> int:
    """A 64-bit id of `name` that is the same in every process (unlike `hash`)."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "little")


def item_rng(seed: int, stream: str, split: str, index: int) -> np.random.Generator:
    """The generator of image `index` of `split` in stream/suite `stream` under `seed`."""
    return np.random.default_rng([seed, stable_id(stream), _SPLIT_IDS[split], index])


def _pick(rng: np.random.Generator, options: Sequence[str]) -> str:
    return options[int(rng.integers(len(options)))]


def _jittered(colour: str, rng: np.random.Generator, jitter: int) -> RGB:
    base = np.array(COLOURS[colour]) + rng.integers(-jitter, jitter + 1, size=3)
    return tuple(int(c) for c in np.clip(base, 0, 255))


def _object(
    rng: np.random.Generator,
    shape: str,
    colour: str,
    pattern: str,
    radius: float,
    centre: tuple[float, float],
    difficulty: Difficulty,
) -> ObjectSpec:
    """An object with random colour jitter and rotation."""
    return ObjectSpec(
        shape=shape,
        colour=colour,
        pattern=pattern,
        rgb=_jittered(colour, rng, difficulty.colour_jitter),
        x=float(centre[0]),
        y=float(centre[1]),
        radius=float(radius),
        rotation=math.radians(rng.uniform(-difficulty.max_rotation, difficulty.max_rotation)),
    )


def _colour_and_shape(
    rng: np.random.Generator,
    excluded: Sequence[Combo],
    *,
    shape: str | None = None,
    colour: str | None = None,
    shapes: Sequence[str] = SHAPES,
) -> Combo:
    """A (colour, shape) pair that is not `excluded`: the parts not fixed are drawn (the shape
    from `shapes`), again and again until the pair is allowed."""
    if shape is not None and colour is not None and (colour, shape) in excluded:
        raise ValueError(f"({colour}, {shape}) is an excluded combination")
    while True:
        pair = (colour or _pick(rng, COLOUR_NAMES), shape or _pick(rng, shapes))
        if pair not in excluded:
            return pair


def _background_colour(rng: np.random.Generator, avoid: RGB, min_distance: float) -> RGB:
    """A muted colour or a grey, at least `min_distance` (RGB) away from `avoid`."""
    target = np.array(avoid, float)
    candidate = 255 - target  # far from `avoid`: the fallback if no draw is
    for _ in range(16):
        if rng.random() < 0.4:
            colour = np.full(3, rng.uniform(25, 235)) + rng.uniform(-8, 8, size=3)
        else:
            colour = 0.6 * rng.uniform(0, 255, size=3) + 0.4 * rng.uniform(60, 200)
        if np.linalg.norm(colour - target) >= min_distance:
            candidate = colour
            break
    return tuple(int(c) for c in np.clip(candidate, 0, 255))


def _scene(
    rng: np.random.Generator,
    main: ObjectSpec,
    size: str,
    distractors: tuple[ObjectSpec, ...],
    style: str,
    difficulty: Difficulty,
) -> SceneSpec:
    """Wrap objects into a scene with a random background, light and grain."""
    weights = np.array(difficulty.background_weights) / sum(difficulty.background_weights)
    background = BACKGROUNDS[int(rng.choice(len(BACKGROUNDS), p=weights))]
    contrast = difficulty.background_contrast
    return SceneSpec(
        main=main,
        size=size,
        background=background,
        background_rgb=(
            _background_colour(rng, main.rgb, contrast),
            _background_colour(rng, main.rgb, contrast),
        ),
        background_angle=float(rng.uniform(0, 2 * math.pi)),
        background_shift=(float(rng.random()), float(rng.random())),
        distractors=distractors,
        light_angle=float(rng.uniform(0, 2 * math.pi)),
        grain=(float(rng.random()), float(rng.random())),
        style=style,
        noise_sigma=difficulty.noise_sigma,
        pixel_block=difficulty.pixel_block,
    )


def _distractors(
    rng: np.random.Generator,
    main_radius: float,
    shapes: Sequence[str],
    excluded: Sequence[Combo],
    difficulty: Difficulty,
) -> tuple[ObjectSpec, ...]:
    """0..N smaller random objects anywhere, possibly cut by the image edge."""
    if rng.random() >= difficulty.distractor_prob:
        return ()
    low, high = difficulty.distractor_count
    objects = []
    for _ in range(int(rng.integers(low, high + 1))):
        colour, shape = _colour_and_shape(rng, excluded, shapes=shapes)
        radius = main_radius * rng.uniform(*difficulty.distractor_scale)
        centre = rng.uniform(0, 1, size=2)
        pattern = _pick(rng, PATTERNS)
        objects.append(_object(rng, shape, colour, pattern, radius, centre, difficulty))
    return tuple(objects)


def sample_scene(
    rng: np.random.Generator,
    difficulty: Difficulty = DEFAULT_DIFFICULTY,
    *,
    shape: str | None = None,
    colour: str | None = None,
    pattern: str | None = None,
    size: str | None = None,
    style: str = "photo",
    shapes: Sequence[str] = SHAPES,
    sizes: Sequence[str] = SIZES,
    distractor_shapes: Sequence[str] = SHAPES,
    excluded: Sequence[Combo] = (),
) -> SceneSpec:
    """A cluttered scene around one main object lying fully inside the image.

    Fixed attributes are kept; the others are drawn (shape from `shapes`, size from `sizes`).
    No object gets a (colour, shape) pair in `excluded`.
    """
    colour, shape = _colour_and_shape(rng, excluded, shape=shape, colour=colour, shapes=shapes)
    pattern = pattern or _pick(rng, PATTERNS)
    size = size or _pick(rng, sizes)
    radius = rng.uniform(*difficulty.radius_range(size))
    centre = rng.uniform(radius + _EDGE_MARGIN, 1 - radius - _EDGE_MARGIN, size=2)
    main = _object(rng, shape, colour, pattern, radius, centre, difficulty)
    distractors = _distractors(rng, radius, distractor_shapes, excluded, difficulty)
    return _scene(rng, main, size, distractors, style, difficulty)


def _pair_centres(
    rng: np.random.Generator, r1: float, r2: float
) -> tuple[np.ndarray, np.ndarray]:
    """Centres (x, y) of two disjoint disks of radii r1, r2 that both fit in the image."""
    angle = rng.uniform(0, 2 * math.pi)
    gap = rng.uniform(0.02, 0.08)
    half = 0.5 * (r1 + r2 + gap) * np.array([math.cos(angle), math.sin(angle)])
    low = np.maximum(r1 + _EDGE_MARGIN + half, r2 + _EDGE_MARGIN - half)
    high = np.minimum(1 - r1 - _EDGE_MARGIN + half, 1 - r2 - _EDGE_MARGIN - half)
    middle = np.where(low < high, rng.uniform(0, 1, size=2) * (high - low) + low, 0.5)
    return middle - half, middle + half


def sample_pair_scene(
    rng: np.random.Generator,
    difficulty: Difficulty = DEFAULT_DIFFICULTY,
    *,
    shapes: tuple[str, str] | None = None,
    style: str = "photo",
    candidates: Sequence[str] = SHAPES,
    excluded: Sequence[Combo] = (),
) -> SceneSpec:
    """Two objects side by side and nothing else: the larger is the main one.

    `shapes` fixes the pair (in either order, drawn at random); otherwise two different shapes
    are drawn from `candidates`.
    """
    if shapes is None:
        first = _pick(rng, candidates)
        shapes = (first, _pick(rng, [s for s in candidates if s != first]))
    main_shape, other_shape = shapes if rng.random() < 0.5 else shapes[::-1]
    main_colour, _ = _colour_and_shape(rng, excluded, shape=main_shape)
    other_colour, _ = _colour_and_shape(rng, excluded, shape=other_shape)
    r1 = rng.uniform(*difficulty.pair_radius)
    r2 = r1 * rng.uniform(*difficulty.pair_scale)
    c1, c2 = _pair_centres(rng, r1, r2)
    size = "small" if r1 < difficulty.radius_range("medium")[0] else "medium"
    main = _object(rng, main_shape, main_colour, _pick(rng, PATTERNS), r1, c1, difficulty)
    other = _object(rng, other_shape, other_colour, _pick(rng, PATTERNS), r2, c2, difficulty)
    return _scene(rng, main, size, (other,), style, difficulty)
