"""SynthWorld: a procedurally rendered image world with captions and object masks.

Images are pure functions of (suite, split, index, seed), rendered with NumPy on the fly.
See `suites` for the classification suites, `pretraining` for the caption stream, `render` for
the scene specification and renderer, and `attributes` for the vocabulary and difficulty knobs.
"""

from vlp_core.data.synthworld.attributes import (
    ALL_SHAPES,
    BACKGROUNDS,
    COLOURS,
    DEFAULT_DIFFICULTY,
    HELD_OUT_COMBOS,
    OOD_SHAPES,
    PATTERNS,
    SHAPES,
    SIZES,
    STYLES,
    Difficulty,
)
from vlp_core.data.synthworld.captions import caption
from vlp_core.data.synthworld.pretraining import pretraining_batch, pretraining_example
from vlp_core.data.synthworld.render import BACKGROUND, ObjectSpec, SceneSpec, render, render_objects
from vlp_core.data.synthworld.scenes import item_rng, sample_pair_scene, sample_scene
from vlp_core.data.synthworld.suites import CLASSIFICATION_SUITES, SUITES, SynthSuite, get_suite, list_suites

__all__ = [
    "BACKGROUND",
    "ALL_SHAPES",
    "BACKGROUNDS",
    "CLASSIFICATION_SUITES",
    "COLOURS",
    "DEFAULT_DIFFICULTY",
    "HELD_OUT_COMBOS",
    "OOD_SHAPES",
    "PATTERNS",
    "SHAPES",
    "SIZES",
    "STYLES",
    "SUITES",
    "Difficulty",
    "ObjectSpec",
    "SceneSpec",
    "SynthSuite",
    "caption",
    "get_suite",
    "item_rng",
    "list_suites",
    "pretraining_batch",
    "pretraining_example",
    "render",
    "render_objects",
    "sample_pair_scene",
    "sample_scene",
]
