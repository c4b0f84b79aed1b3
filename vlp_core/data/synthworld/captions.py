"""Captions of scenes for contrastive pretraining, in the same words as the class names.

Every caption names the main object's colour and shape ("red star"); templates add its size,
pattern, background, the style and one neighbouring object. Pattern and background words are
left out of sketches, which show neither.
"""

from __future__ import annotations

import re

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

# Fields: {style} {size} {colour} {shape} {pattern} (adjective) {pattern_phrase}
# {background} (a phrase) {other} (a neighbour with its article).
_TEMPLATES: tuple[str, ...] = (
    "a {style} of a {size} {colour} {pattern} {shape}",
    "a {colour} {shape} {pattern_phrase} on {background}",
    "a {size} {colour} {shape}",
    "a {style} of a {colour} {shape}",
    "there is a {colour} {pattern} {shape} on {background}",
    "a {size} {colour} {pattern} {shape} in a {style}",
)
_NEIGHBOUR_TEMPLATES: tuple[str, ...] = (
    "a {style} of a {size} {colour} {shape} next to {other}",
    "a {colour} {shape} and {other}",
    "a {colour} {pattern} {shape} next to {other} on {background}",
)


_AN_BEFORE_VOWEL = re.compile(r"\ba (?=[aeiou])")


def _named(obj: ObjectSpec) -> str:
    """"a green square", "an orange ring"."""
    return f"{article(obj.colour)} {obj.colour} {obj.shape}"


def _neighbour(spec: SceneSpec) -> ObjectSpec | None:
    """The largest distractor, the one a caption mentions."""
    return max(spec.distractors, key=lambda o: o.radius, default=None)


def caption(spec: SceneSpec, rng: np.random.Generator) -> str:
    """A one-line English description of `spec`, the template drawn from `rng`."""
    neighbour = _neighbour(spec)
    templates = _TEMPLATES + (_NEIGHBOUR_TEMPLATES if neighbour is not None else ())
    template = templates[int(rng.integers(len(templates)))]
    sketch = spec.style == "sketch"
    background = "white paper" if sketch else f"a {_BACKGROUND_WORDS[spec.background]} background"
    text = template.format(
        style=STYLE_NOUNS[spec.style],
        size=spec.size,
        colour=spec.main.colour,
        shape=spec.main.shape,
        pattern="" if sketch else spec.main.pattern,
        pattern_phrase="" if sketch else _PATTERN_PHRASES[spec.main.pattern],
        background=background,
        other=_named(neighbour) if neighbour is not None else "",
    )
    return _AN_BEFORE_VOWEL.sub("an ", " ".join(text.split()))
