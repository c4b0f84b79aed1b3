"""Captions of scenes for contrastive pretraining, in the words of the class names and beyond.

Captions describe a scene the way web alt-text does, not the way a label does: each attribute of
the main object (size, colour, pattern, shape) is named only some of the time, sometimes with a
synonym ("oval" for ellipse, "plus sign" for cross), and the style, the background and a neighbouring
object are mentioned now and then. Words follow a long tail, as on the web: of each kind (shape,
colour, pattern, style) a few words are named often and the rest seldom (`WORD_RANKS`, the `*_tail`
rates), so the text side learns common class words well and rare ones poorly, while the image side
still encodes everything it sees: zero-shot transfer works, and stays below what a few labelled
examples of the frozen image features allow (CLIP's headroom). Captions can also call a thing by a
look-alike's name (an ellipse a circle, orange yellow, a painting a photo; off by default: measured,
it lowered OOD separability without creating headroom, see the model card). In two-object scenes the
other object is usually named ("a circle and a square"). Pattern and background words are left out
of sketches, which show neither. A caption never pairs a colour and a shape that are held out of
pretraining. How often each part appears is `CAPTION_RATES`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from vlp_core.data.synthworld.attributes import ALL_SHAPES, COLOURS, HELD_OUT_COMBOS, PATTERNS, STYLES, article
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
# What a hasty describer may call a thing instead: shapes of a similar outline, neighbouring hues,
# similar patterns; every style but "photo" may be called a photo.
SHAPE_LOOK_ALIKES: dict[str, tuple[str, ...]] = {
    "circle": ("ellipse", "ring"), "ellipse": ("circle",), "square": ("diamond",), "diamond": ("square",),
    "triangle": ("arrow",), "arrow": ("triangle",), "star": ("flower", "cross"), "cross": ("star",),
    "hexagon": ("circle", "pentagon"), "crescent": ("semicircle", "ring"), "ring": ("circle",),
    "pentagon": ("hexagon",), "trapezoid": ("triangle",), "semicircle": ("crescent",), "flower": ("star",),
}
COLOUR_LOOK_ALIKES: dict[str, tuple[str, ...]] = {
    "red": ("orange", "pink"), "orange": ("red", "yellow"), "yellow": ("orange",), "green": ("cyan",),
    "cyan": ("green", "blue"), "blue": ("cyan", "purple"), "purple": ("blue", "pink"), "pink": ("purple", "red"),
}
PATTERN_LOOK_ALIKES: dict[str, tuple[str, ...]] = {"dotted": ("checkered",), "checkered": ("dotted", "striped"),
                                                  "striped": ("checkered",)}



def _frequency_ranks(names: tuple[str, ...], seed: int) -> dict[str, int]:
    """How common each word is in the caption corpus: rank 0 the most common, in a fixed random order
    (not the class order, so base and novel halves of a suite mix common and rare words)."""
    order = np.random.default_rng(seed).permutation(len(names))
    return {names[int(index)]: rank for rank, index in enumerate(order)}


# Web text names some things far more often than others (a long tail): the word of rank r appears
# `tail ** r` times as often as the most common one of its kind (see the `*_tail` rates).
WORD_RANKS: dict[str, dict[str, int]] = {
    "shape": _frequency_ranks(ALL_SHAPES, 11), "colour": _frequency_ranks(tuple(COLOURS), 12),
    "pattern": _frequency_ranks(PATTERNS, 13), "style": _frequency_ranks(STYLES, 14),
}


def _named(kind: str, word: str, rate: float, tail: float, rng: np.random.Generator) -> bool:
    """Whether a caption names `word` (of `kind`), at `rate x tail ** rank(word)`."""
    return rng.random() < rate * tail ** WORD_RANKS[kind].get(word, 0)


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
    shape_look_alike: float = 0.0  # a look-alike's name instead, when the shape is named
    colour: float = 0.75
    colour_synonym: float = 0.1
    colour_look_alike: float = 0.0
    pattern_look_alike: float = 0.0
    style_as_photo: float = 0.3  # a non-photo style called a photo, when the style is named
    size: float = 0.3
    pattern: float = 0.4  # as an adjective ("striped") or a phrase ("with stripes"), half each
    style: float = 0.5  # "a sketch of ..."
    background: float = 0.3
    neighbour: float = 0.35  # the largest distractor of a cluttered scene
    pair: float = 0.85  # the second object of a two-object scene
    shape_tail: float = 0.65  # long tail: the r-th most common word is named tail ** r as often
    colour_tail: float = 0.55
    pattern_tail: float = 0.35
    style_tail: float = 0.25


CAPTION_RATES = CaptionRates()
_AN_BEFORE_VOWEL = re.compile(r"\ba (?=[aeiou])")


def _word(name: str, synonyms: dict[str, tuple[str, ...]], rate: float, rng: np.random.Generator) -> str:
    """`name`, or with probability `rate` one of its synonyms (or look-alikes)."""
    options = synonyms.get(name, ())
    if options and rng.random() < rate:
        return options[int(rng.integers(len(options)))]
    return name


def _described(obj: ObjectSpec, rates: CaptionRates, rng: np.random.Generator) -> tuple[str, str, str]:
    """The (colour, shape, pattern) names a describer gives `obj`: right, or a look-alike's, never
    a held-out (colour, shape) combination."""
    colour = _word(obj.colour, COLOUR_LOOK_ALIKES, rates.colour_look_alike, rng)
    shape = _word(obj.shape, SHAPE_LOOK_ALIKES, rates.shape_look_alike, rng)
    pattern = _word(obj.pattern, PATTERN_LOOK_ALIKES, rates.pattern_look_alike, rng)
    if (colour, shape) in HELD_OUT_COMBOS:
        colour, shape = obj.colour, obj.shape
    return colour, shape, pattern


def _noun_phrase(obj: ObjectSpec, size: str | None, sketch: bool, rates: CaptionRates,
                 rng: np.random.Generator) -> str:
    """"a large red striped star", "an oval", "a blue shape with dots", ... (article included)."""
    colour, shape, pattern = _described(obj, rates, rng)
    words = []
    if size is not None and rng.random() < rates.size:
        words.append(size)
    if _named("colour", obj.colour, rates.colour, rates.colour_tail, rng):
        words.append(_word(colour, COLOUR_SYNONYMS, rates.colour_synonym, rng))
    pattern_phrase = ""
    if not sketch and _named("pattern", obj.pattern, rates.pattern, rates.pattern_tail, rng):
        if rng.random() < 0.5:
            words.append(pattern)
        else:
            pattern_phrase = " " + _PATTERN_PHRASES[pattern]
    if _named("shape", obj.shape, rates.shape, rates.shape_tail, rng):
        words.append(_word(shape, SHAPE_SYNONYMS, rates.shape_synonym, rng))
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
    if _named("style", spec.style, rates.style, rates.style_tail, rng):
        style = "photo" if rng.random() < rates.style_as_photo else spec.style
        text = f"a {STYLE_NOUNS[style]} of {text}"
    return _AN_BEFORE_VOWEL.sub("an ", text)
