"""Captions of scenes for contrastive pretraining, in the words of the class names and beyond.

Captions describe a scene the way web alt-text does, not the way a label does: each attribute of
the main object (size, colour, pattern, shape) is named only some of the time, sometimes with a
synonym ("oval" for ellipse, "plus sign" for cross), and the style, the background and a
neighbouring object are mentioned now and then. So the text side learns the class words as an
imperfect prior while the image side still has to encode everything it sees: zero-shot transfer
works, and stays below what the image features allow (CLIP's headroom). In two-object scenes the
other object is usually named ("a circle and a square"). Pattern and background words are left out
of sketches, which show neither. How often each part appears is `CAPTION_RATES`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from vlp_core.data.synthworld.attributes import article
from vlp_core.data.synthworld.render import ObjectSpec, SceneSpec

STYLE_NOUNS: dict[str, str] = {
    "photo": "photo",
    "sketch": "sketch",
    "noisy": "noisy photo",
    "pixelated": "pixelated image",
    "painted": "painting",
}

SHAPE_SYNONYMS: dict[str, tuple[str, ...]] = {
    "circle": ("disc", "round shape"),
    "square": ("four-sided box",),
    "triangle": ("three-sided shape",),
    "star": ("five-pointed star",),
    "heart": ("love heart",),
    "cross": ("plus sign",),
    "hexagon": ("six-sided shape",),
    "diamond": ("rhombus", "lozenge"),
    "crescent": ("crescent moon", "moon shape"),
    "ring": ("hoop", "donut shape"),
    "arrow": ("pointer",),
    "ellipse": ("oval",),
    "pentagon": ("five-sided shape",),
    "trapezoid": ("trapezium",),
    "semicircle": ("half circle",),
    "flower": ("blossom",),
}
COLOUR_SYNONYMS: dict[str, tuple[str, ...]] = {
    "red": ("scarlet",), "orange": ("amber",), "yellow": ("golden",), "green": ("emerald",),
    "cyan": ("turquoise",), "blue": ("navy",), "purple": ("violet",), "pink": ("rose",),
}
GENERIC_NOUNS: tuple[str, ...] = ("shape", "object", "thing", "figure")

_PATTERN_PHRASES: dict[str, str] = {
    "solid": "in one colour",
    "striped": "with stripes",
    "dotted": "with dots",
    "checkered": "with a checkered pattern",
}

_BACKGROUND_WORDS: dict[str, str] = {
    "plain": "plain",
    "gradient": "gradient",
    "noise": "blotchy",
    "wavy": "wavy",
    "grid": "grid",
    "speckled": "speckled",
}


@dataclass(frozen=True)
class CaptionRates:
    """How often each part of a caption appears (probabilities)."""

    shape: float = 0.85  # the shape's word (else a generic noun such as "shape")
    shape_synonym: float = 0.15  # a synonym instead of the class word, when the shape is named
    colour: float = 0.75
    colour_synonym: float = 0.1
    size: float = 0.3
    pattern: float = 0.4  # as an adjective ("striped") or a phrase ("with stripes"), half each
    style: float = 0.5  # "a sketch of ..."
    background: float = 0.3
    neighbour: float = 0.35  # the largest distractor of a cluttered scene
    pair: float = 0.85  # the second object of a two-object scene


CAPTION_RATES = CaptionRates()
_AN_BEFORE_VOWEL = re.compile(r"\ba (?=[aeiou])")


def _word(name: str, synonyms: dict[str, tuple[str, ...]], rate: float, rng: np.random.Generator) -> str:
    """`name`, or with probability `rate` one of its synonyms."""
    options = synonyms.get(name, ())
    if options and rng.random() < rate:
        return options[int(rng.integers(len(options)))]
    return name


def _noun_phrase(obj: ObjectSpec, size: str | None, sketch: bool, rates: CaptionRates,
                 rng: np.random.Generator) -> str:
    """"a large red striped star", "an oval", "a blue shape with dots", ... (article included)."""
    words = []
    if size is not None and rng.random() < rates.size:
        words.append(size)
    if rng.random() < rates.colour:
        words.append(_word(obj.colour, COLOUR_SYNONYMS, rates.colour_synonym, rng))
    pattern_phrase = ""
    if not sketch and rng.random() < rates.pattern:
        if rng.random() < 0.5:
            words.append(obj.pattern)
        else:
            pattern_phrase = " " + _PATTERN_PHRASES[obj.pattern]
    if rng.random() < rates.shape:
        words.append(_word(obj.shape, SHAPE_SYNONYMS, rates.shape_synonym, rng))
    else:
        words.append(GENERIC_NOUNS[int(rng.integers(len(GENERIC_NOUNS)))])
    return "a " + " ".join(words) + pattern_phrase


def _neighbour(spec: SceneSpec) -> ObjectSpec | None:
    """The largest distractor, the one a caption mentions."""
    return max(spec.distractors, key=lambda o: o.radius, default=None)


def caption(spec: SceneSpec, rng: np.random.Generator, pair_scene: bool = False,
            rates: CaptionRates = CAPTION_RATES) -> str:
    """A one-line English description of `spec`, its wording drawn from `rng`; `pair_scene`: the
    scene is two objects side by side (`sample_pair_scene`), so the second is usually named."""
    sketch = spec.style == "sketch"
    text = _noun_phrase(spec.main, spec.size, sketch, rates, rng)
    neighbour = _neighbour(spec)
    if neighbour is not None and rng.random() < (rates.pair if pair_scene else rates.neighbour):
        joiner = " and " if pair_scene and rng.random() < 0.7 else " next to "
        text += joiner + _noun_phrase(neighbour, None, sketch, rates, rng)
    if rng.random() < rates.background:
        text += " on white paper" if sketch else f" on a {_BACKGROUND_WORDS[spec.background]} background"
    if rng.random() < rates.style:
        text = f"a {STYLE_NOUNS[spec.style]} of {text}"
    return _AN_BEFORE_VOWEL.sub("an ", text)
