"""The pretraining stream of the bundled small CLIP: images with captions and with the world's
known factors.

Example `i` of the stream under `seed` is fixed by its address alone, so a batch is any slice
[start, start + count) and workers can split the stream without coordination. Scenes use every
shape (the OOD shapes too) and every style; no object anywhere in a scene has a held-out
(colour, shape) pair, so those pairs stay unseen until evaluation.

Besides its caption, every example carries the factors that generated it (`scene_factors`): the
main object's shape, colour, pattern and size, the style, the background, which shapes are
visible, and per ViT patch the shape and colour of the object the patch shows. The image tower
of synth-clip is trained on them (see `vlp_core/synthclip/pretrain.py`).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from vlp_core.data.synthworld.attributes import (
    ALL_SHAPES,
    BACKGROUNDS,
    COLOUR_NAMES,
    DEFAULT_DIFFICULTY,
    HELD_OUT_COMBOS,
    PATTERNS,
    SIMPLE_DIFFICULTY,
    SIZES,
    STYLES,
    Difficulty,
)
from vlp_core.data.synthworld.captions import caption
from vlp_core.data.synthworld.render import BACKGROUND, SceneSpec, render_objects
from vlp_core.data.synthworld.scenes import Combo, _pick, item_rng, sample_pair_scene, sample_scene

STREAM = "pretraining"
# Half the stream is photos, the rest spread over the other styles.
STYLE_WEIGHTS: dict[str, float] = {
    "photo": 0.5,
    "sketch": 0.125,
    "noisy": 0.125,
    "pixelated": 0.125,
    "painted": 0.125,
}
PAIR_SCENE_PROB = 0.25
SIMPLE_SCENE_PROB = 0.5  # share of groups drawn with SIMPLE_DIFFICULTY instead of `difficulty`
GROUP_SIZE = 4  # consecutive examples that share everything but the shapes (hard negatives)
_STYLE_LIST = tuple(STYLE_WEIGHTS)


def pretraining_example(
    index: int,
    seed: int,
    held_out: Sequence[Combo] = HELD_OUT_COMBOS,
    difficulty: Difficulty = DEFAULT_DIFFICULTY,
    simple_prob: float = SIMPLE_SCENE_PROB,
) -> tuple[SceneSpec, str]:
    """Scene and caption of example `index` of the stream under `seed`.

    Consecutive groups of `GROUP_SIZE` examples share the style, the scene kind, the difficulty
    (`SIMPLE_DIFFICULTY` with probability `simple_prob`, else `difficulty`) and, for single-object
    scenes, the main object's colour, pattern and size: each group is a set of hard negatives that
    a contrastive batch can only tell apart by shape (and by the clutter).
    """
    group = item_rng(seed, STREAM, "group", index // GROUP_SIZE)
    rng = item_rng(seed, STREAM, "stream", index)
    style = _STYLE_LIST[int(group.choice(len(_STYLE_LIST), p=list(STYLE_WEIGHTS.values())))]
    if group.random() < simple_prob:
        difficulty = SIMPLE_DIFFICULTY
    pair_scene = group.random() < PAIR_SCENE_PROB
    if pair_scene:
        spec = sample_pair_scene(
            rng, difficulty, style=style, candidates=ALL_SHAPES, excluded=held_out
        )
    else:
        spec = sample_scene(
            rng,
            difficulty,
            colour=_pick(group, COLOUR_NAMES),
            pattern=_pick(group, PATTERNS),
            size=_pick(group, SIZES),
            style=style,
            shapes=ALL_SHAPES,
            distractor_shapes=ALL_SHAPES,
            excluded=held_out,
        )
    return spec, caption(spec, rng, pair_scene)


IGNORE = -1  # factor value of a target that the image does not show (a sketch's pattern, a mixed patch)
# A patch shows an object when the object covers at least this share of it, the background when
# no object covers more than 1 - BACKGROUND_SHARE of it; patches in between are ignored.
OBJECT_SHARE = 0.25
BACKGROUND_SHARE = 0.75


def scene_factors(spec: SceneSpec, objects: np.ndarray, grid: int) -> dict[str, np.ndarray]:
    """The factors of one rendered scene (`objects`: its (S, S) object map from `render_objects`).

    Returns int64 scalars "shape", "colour", "pattern", "size", "style", "background" (indices into
    ALL_SHAPES, COLOUR_NAMES, PATTERNS, SIZES, STYLES, BACKGROUNDS; IGNORE for a sketch's pattern
    and background), float32 "present" (len(ALL_SHAPES),) multi-hot of the visible objects'
    shapes, and per patch of a grid x grid tiling (P = grid**2, row-major) int64 "patch_shape" and
    "patch_colour" (P,): the shape / colour index of the object the patch shows,
    len(ALL_SHAPES) / len(COLOUR_NAMES) for background, IGNORE for a mixed patch.
    """
    sketch = spec.style == "sketch"
    visible = [spec.main, *spec.distractors]
    factors = {
        "shape": ALL_SHAPES.index(spec.main.shape),
        "colour": COLOUR_NAMES.index(spec.main.colour),
        "pattern": IGNORE if sketch else PATTERNS.index(spec.main.pattern),
        "size": SIZES.index(spec.size),
        "style": STYLES.index(spec.style),
        "background": IGNORE if sketch else BACKGROUNDS.index(spec.background),
    }
    out = {name: np.int64(value) for name, value in factors.items()}
    present = np.zeros(len(ALL_SHAPES), np.float32)
    for label in np.unique(objects[objects != BACKGROUND]):
        present[ALL_SHAPES.index(visible[label].shape)] = 1.0
    out["present"] = present

    side = objects.shape[0] // grid
    cells = objects.reshape(grid, side, grid, side).transpose(0, 2, 1, 3).reshape(grid * grid, side * side)
    share = np.stack([(cells == k).mean(1) for k in range(-1, len(visible))], axis=1)  # (P, 1 + objects)
    best = share[:, 1:].argmax(1)
    shows_object = share[np.arange(len(best)), 1 + best] >= OBJECT_SHARE
    shows_background = share[:, 0] >= BACKGROUND_SHARE
    shape_ids = np.array([ALL_SHAPES.index(o.shape) for o in visible])
    colour_ids = np.array([COLOUR_NAMES.index(o.colour) for o in visible])
    for name, ids, background_id in (("patch_shape", shape_ids, len(ALL_SHAPES)),
                                      ("patch_colour", colour_ids, len(COLOUR_NAMES))):
        target = np.full(len(best), IGNORE, np.int64)
        target[shows_background] = background_id
        target[shows_object] = ids[best[shows_object]]
        out[name] = target
    return out


def pretraining_batch(
    start: int,
    count: int,
    seed: int,
    size: int = 64,
    held_out: Sequence[Combo] = HELD_OUT_COMBOS,
    grid: int | None = None,
) -> tuple[np.ndarray, list[str], dict[str, np.ndarray] | None]:
    """Examples [start, start + count): uint8 images (count, size, size, 3), their captions, and
    with a patch `grid` their stacked `scene_factors` (each with a leading count axis), else None."""
    images = np.empty((count, size, size, 3), np.uint8)
    captions, factors = [], []
    for i in range(count):
        spec, text = pretraining_example(start + i, seed, held_out)
        images[i], objects = render_objects(spec, size)
        captions.append(text)
        if grid is not None:
            factors.append(scene_factors(spec, objects, grid))
    stacked = {name: np.stack([f[name] for f in factors]) for name in factors[0]} if factors else None
    return images, captions, stacked
