"""`drawn_shapes`: plain PIL drawings of the shape classes, made outside SynthWorld's renderer.

A check that a model trained on SynthWorld learned shapes rather than its renderer: flat colours
(or black) on a white or grey canvas, hard edges, no shading, shadow, texture or clutter, drawn at
300 px with PIL's own primitives, at sizes from a fifth to nine tenths of the canvas. The class
list is SynthWorld's `SHAPES`; every image is a pure function of (split, index, seed).
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

from vlp_core.data.base import SPLITS, Datum
from vlp_core.data.datasets import Reader, register_reader
from vlp_core.data.synthworld.attributes import SHAPES
from vlp_core.data.synthworld.scenes import item_rng

CANVAS = 300
BACKGROUNDS = ((255, 255, 255), (235, 235, 235), (200, 200, 200), (150, 150, 150))
INKS = ((0, 0, 0), (200, 30, 30), (30, 60, 200), (30, 140, 50), (230, 150, 20), (120, 40, 160))


def _polygon(n: int, radius: float, start_deg: float = 90.0, inner: float | None = None) -> list[tuple[float, float]]:
    """Vertices (x right, y up) of a regular n-gon, or of an n-pointed star with `inner` radius."""
    points = []
    steps = 2 * n if inner is not None else n
    for k in range(steps):
        angle = math.radians(start_deg + 360.0 * k / steps)
        r = inner if inner is not None and k % 2 else radius
        points.append((r * math.cos(angle), r * math.sin(angle)))
    return points


def _outline(shape: str) -> list[list[tuple[float, float]]]:
    """Filled polygons (unit radius, x right, y up) whose union draws `shape`; ring and crescent
    are drawn separately (they need holes)."""
    if shape == "square":
        return [[(-0.7, -0.7), (0.7, -0.7), (0.7, 0.7), (-0.7, 0.7)]]
    if shape == "triangle":
        return [_polygon(3, 1.0)]
    if shape == "star":
        return [_polygon(5, 1.0, inner=0.4)]
    if shape == "hexagon":
        return [_polygon(6, 0.95, start_deg=0.0)]
    if shape == "diamond":
        return [[(0.0, 1.0), (0.6, 0.0), (0.0, -1.0), (-0.6, 0.0)]]
    if shape == "cross":
        return [[(-0.9, -0.28), (0.9, -0.28), (0.9, 0.28), (-0.9, 0.28)],
                [(-0.28, -0.9), (0.28, -0.9), (0.28, 0.9), (-0.28, 0.9)]]
    if shape == "arrow":
        return [[(-0.95, -0.2), (0.15, -0.2), (0.15, 0.2), (-0.95, 0.2)], [(0.05, -0.65), (0.95, 0.0), (0.05, 0.65)]]
    if shape == "heart":
        lobes = [[(cx + 0.45 * math.cos(a), 0.3 + 0.45 * math.sin(a)) for a in np.linspace(0, 2 * math.pi, 40)]
                 for cx in (-0.4, 0.4)]
        return lobes + [[(-0.82, 0.15), (0.82, 0.15), (0.0, -0.95)]]
    if shape == "circle":
        return [_polygon(64, 0.85)]
    if shape == "ellipse":
        return [[(0.95 * math.cos(a), 0.55 * math.sin(a)) for a in np.linspace(0, 2 * math.pi, 64)]]
    raise ValueError(f"no outline for {shape!r}")


class DrawnShapes:
    """A `ClassificationData` of PIL drawings; split sizes are per class. No masks."""

    name = "drawn_shapes"

    def __init__(self, seed: int = 0, n_train: int = 20, n_val: int = 5, n_test: int = 25):
        self.seed = seed
        self.per_class = {"train": n_train, "val": n_val, "test": n_test}

    @property
    def classnames(self) -> list[str]:
        return list(SHAPES)

    def split(self, name: str) -> list[Datum]:
        """Items of split `name`: label of item i is i % C, key f"{name}/{i}"."""
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}, expected one of {SPLITS}")
        n = len(SHAPES)
        return [Datum(f"{name}/{i}", i % n, SHAPES[i % n], "drawn") for i in range(self.per_class[name] * n)]

    def load_image(self, datum: Datum) -> Image.Image:
        split, index = datum.key.split("/")
        return draw_shape(SHAPES[datum.label], item_rng(self.seed, self.name, split, int(index)))

    def load_mask(self, datum: Datum) -> None:
        return None


def draw_shape(shape: str, rng: np.random.Generator, canvas: int = CANVAS) -> Image.Image:
    """One drawing of `shape`: random size (radius 0.1-0.45 of the canvas), position, ink,
    background and a tilt of at most 20 degrees, as a `canvas`-pixel RGB image."""
    background = BACKGROUNDS[int(rng.integers(len(BACKGROUNDS)))]
    ink = INKS[int(rng.integers(len(INKS)))]
    radius = rng.uniform(0.1, 0.45) * canvas
    cx, cy = (rng.uniform(radius, canvas - radius) for _ in range(2))
    tilt = math.radians(rng.uniform(-20, 20))
    image = Image.new("RGB", (canvas, canvas), background)
    draw = ImageDraw.Draw(image)

    def to_pixels(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
        c, s = math.cos(tilt), math.sin(tilt)
        return [(cx + radius * (c * x - s * y), cy - radius * (s * x + c * y)) for x, y in points]

    if shape == "ring":
        draw.ellipse([cx - 0.85 * radius, cy - 0.85 * radius, cx + 0.85 * radius, cy + 0.85 * radius],
                     outline=ink, width=max(2, int(0.4 * radius)))
    elif shape == "crescent":
        draw.ellipse([cx - 0.85 * radius, cy - 0.85 * radius, cx + 0.85 * radius, cy + 0.85 * radius], fill=ink)
        bite = 0.4 * radius
        draw.ellipse([cx + bite - 0.7 * radius, cy - 0.7 * radius, cx + bite + 0.7 * radius, cy + 0.7 * radius],
                     fill=background)
    else:
        for polygon in _outline(shape):
            draw.polygon(to_pixels(polygon), fill=ink)
    return image


register_reader(Reader("drawn", order=10, reads=lambda name, root: root is None and name == DrawnShapes.name,
                       open=lambda name, root, image_size, splits, ood: DrawnShapes(),
                       what=f"{DrawnShapes.name} (PIL drawings, without a data root)"))
