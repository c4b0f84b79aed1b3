"""The image-caption stream for contrastive pretraining of a small CLIP.

Example `i` of the stream under `seed` is fixed by its address alone, so a batch is any slice
[start, start + count) and workers can split the stream without coordination. Scenes use every
shape (the OOD shapes too) and every style; no object anywhere in a scene has a held-out
(colour, shape) pair, so those pairs stay unseen until evaluation.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from vlp_core.data.synthworld.attributes import (
    ALL_SHAPES,
    COLOUR_NAMES,
    DEFAULT_DIFFICULTY,
    HELD_OUT_COMBOS,
    PATTERNS,
    SIMPLE_DIFFICULTY,
    SIZES,
    Difficulty,
)
from vlp_core.data.synthworld.captions import caption
from vlp_core.data.synthworld.render import SceneSpec, render
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
    if group.random() < PAIR_SCENE_PROB:
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
    return spec, caption(spec, rng)


def pretraining_batch(
    start: int,
    count: int,
    seed: int,
    size: int = 64,
    held_out: Sequence[Combo] = HELD_OUT_COMBOS,
) -> tuple[np.ndarray, list[str]]:
    """Examples [start, start + count): uint8 images (count, size, size, 3) and their captions."""
    images = np.empty((count, size, size, 3), np.uint8)
    captions = []
    for i in range(count):
        spec, text = pretraining_example(start + i, seed, held_out)
        images[i] = render(spec, size)[0]
        captions.append(text)
    return images, captions
