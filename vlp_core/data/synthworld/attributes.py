"""The vocabulary of SynthWorld: attribute names (used verbatim in captions and class names),
their colours and sizes, the held-out combinations, and the difficulty knobs.

Everything here is plain data. Names are readable English so a text encoder can match a class
name such as "red star" against captions such as "a photo of a large red striped star".
"""

from __future__ import annotations

from dataclasses import dataclass

RGB = tuple[int, int, int]

# The classification shapes of the suites.
SHAPES: tuple[str, ...] = (
    "circle",
    "square",
    "triangle",
    "star",
    "heart",
    "cross",
    "hexagon",
    "diamond",
    "crescent",
    "ring",
    "arrow",
    "ellipse",
)

# Extra shapes that no classification suite uses as a class: the held-out object classes for
# OOD detection. They may appear in pretraining, so the text encoder knows their names.
OOD_SHAPES: tuple[str, ...] = ("pentagon", "trapezoid", "semicircle", "flower")

ALL_SHAPES: tuple[str, ...] = SHAPES + OOD_SHAPES

COLOURS: dict[str, RGB] = {
    "red": (220, 40, 40),
    "orange": (245, 140, 30),
    "yellow": (240, 220, 40),
    "green": (50, 170, 60),
    "cyan": (40, 200, 210),
    "blue": (40, 80, 220),
    "purple": (140, 60, 190),
    "pink": (245, 130, 190),
}
COLOUR_NAMES: tuple[str, ...] = tuple(COLOURS)

PATTERNS: tuple[str, ...] = ("solid", "striped", "dotted", "checkered")

SIZES: tuple[str, ...] = ("small", "medium", "large")

# Background kinds. "plain" is one colour, "gradient" a linear blend of two, the others blend
# two colours through a fixed texture field.
BACKGROUNDS: tuple[str, ...] = ("plain", "gradient", "noise", "wavy", "grid", "speckled")

# Rendering styles: domain shifts that change pixels but not labels. "photo" is the default.
STYLES: tuple[str, ...] = ("photo", "sketch", "noisy", "pixelated", "painted")

# (colour, shape) pairs never drawn in pretraining: every colour appears twice and every shape at
# least once, so each word is still seen in other combinations.
HELD_OUT_COMBOS: tuple[tuple[str, str], ...] = (
    ("red", "star"),
    ("red", "ring"),
    ("orange", "circle"),
    ("orange", "cross"),
    ("yellow", "heart"),
    ("yellow", "diamond"),
    ("green", "triangle"),
    ("green", "ellipse"),
    ("cyan", "square"),
    ("cyan", "crescent"),
    ("blue", "hexagon"),
    ("blue", "arrow"),
    ("purple", "circle"),
    ("purple", "triangle"),
    ("pink", "square"),
    ("pink", "star"),
)

# (colour, shape) pairs seen in pretraining that form the base half of `colour_shapes`: every
# colour twice, every shape at least once, none of them held out.
SEEN_COMBOS: tuple[tuple[str, str], ...] = (
    ("red", "circle"),
    ("red", "heart"),
    ("orange", "square"),
    ("orange", "star"),
    ("yellow", "triangle"),
    ("yellow", "ring"),
    ("green", "cross"),
    ("green", "hexagon"),
    ("cyan", "diamond"),
    ("cyan", "arrow"),
    ("blue", "crescent"),
    ("blue", "square"),
    ("purple", "ellipse"),
    ("purple", "cross"),
    ("pink", "circle"),
    ("pink", "triangle"),
)


@dataclass(frozen=True)
class Difficulty:
    """Every knob that makes SynthWorld images harder, in one place.

    Radii are fractions of the image side; colour values are 0..255 units.
    """

    # Main object radius range per size word.
    size_radius: tuple[tuple[float, float], ...] = ((0.13, 0.18), (0.2, 0.26), (0.28, 0.36))
    # Probability that a scene has any distractors, and how many (inclusive range) if it has.
    distractor_prob: float = 0.75
    distractor_count: tuple[int, int] = (1, 3)
    # Distractor radius as a fraction of the main object's radius.
    distractor_scale: tuple[float, float] = (0.4, 0.75)
    # Two-object scenes ("a circle and a square"): main radius range, and the other's radius
    # as a fraction of the main one's. Medium-sized, so that both shapes can be told at 64 px (with
    # small ones, (0.13, 0.2) and (0.7, 0.9), a 16-shot probe of synth-clip's features read the pair
    # at 18 %, with these at 41 %, before it was trained on them).
    pair_radius: tuple[float, float] = (0.2, 0.26)
    pair_scale: tuple[float, float] = (0.8, 1.0)
    # Per-image colour jitter of object colours (uniform +-, per channel).
    colour_jitter: int = 18
    # Minimum RGB distance between the main object's colour and the background colours.
    background_contrast: float = 110.0
    # Sampling weights of BACKGROUNDS, in that order.
    background_weights: tuple[float, ...] = (0.25, 0.2, 0.15, 0.15, 0.1, 0.15)
    # Pixel noise standard deviation of the "noisy" style.
    noise_sigma: float = 55.0
    # Block side in pixels of the "pixelated" style at 64x64 (scaled with the image size).
    pixel_block: int = 3
    # Maximum rotation of every object in degrees (180 = any orientation). Objects stand roughly
    # upright, as in photos; at 180 a square and a diamond would be the same shape.
    max_rotation: float = 30.0

    def radius_range(self, size: str) -> tuple[float, float]:
        """(min, max) radius of a main object of size word `size`."""
        return self.size_radius[SIZES.index(size)]


DEFAULT_DIFFICULTY = Difficulty()

# The easy scenes that make up part of the pretraining stream: no distractors, plain or gradient
# backgrounds. A small model learns shapes from them within a CPU budget and carries them over to
# the cluttered scenes of the suites (see MODEL_CARD.md of synth-clip).
SIMPLE_DIFFICULTY = Difficulty(distractor_prob=0.0, background_weights=(0.5, 0.5, 0.0, 0.0, 0.0, 0.0))


def article(word: str) -> str:
    """The indefinite article for `word`: "an" before a vowel, else "a"."""
    return "an" if word[:1] in "aeiou" else "a"
