"""Signed-distance functions of the shapes.

Each function maps object-local coordinates `u, v` (float32 arrays of one broadcast shape
(h, w); unit = object radius, v pointing up, every shape inside the unit disk) to a signed
distance of the same shape: negative inside, positive outside, zero on the outline. Distances
are exact or close to exact near the outline, which is all anti-aliasing and outlines need.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

Sdf = Callable[[np.ndarray, np.ndarray], np.ndarray]

_SQRT2 = math.sqrt(2.0)
_COS30, _SIN30 = math.cos(math.pi / 6), 0.5


def _unit(x: float, y: float) -> tuple[float, float]:
    n = math.hypot(x, y)
    return x / n, y / n


def circle(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return np.hypot(u, v) - 0.82


def ellipse(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    a, b = 0.95, 0.55
    return (np.hypot(u / a, v / b) - 1.0) * b


def square(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return np.maximum(np.abs(u), np.abs(v)) - 0.68


def diamond(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """A rhombus, taller than wide, so a rotated square never looks like it."""
    a, b = 0.58, 0.97
    return (np.abs(u) * b + np.abs(v) * a - a * b) / math.hypot(a, b)


def triangle(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Equilateral, circumradius 0.95, one vertex up."""
    return np.maximum(-v, np.abs(u) * _COS30 + v * _SIN30) - 0.475


def hexagon(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Regular, circumradius 0.9, vertices on the u axis."""
    au, av = np.abs(u), np.abs(v)
    return np.maximum(au * _COS30 + av * _SIN30, av) - 0.9 * _COS30


_PENTAGON_NORMALS = [(math.cos(a), math.sin(a)) for a in np.radians([54.0, -18.0, -90.0])]


def pentagon(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Regular, circumradius 0.92, one vertex up (mirror-folded on u)."""
    au = np.abs(u)
    (ax, ay), (bx, by), (cx, cy) = _PENTAGON_NORMALS
    d = np.maximum(au * ax + v * ay, au * bx + v * by)
    return np.maximum(d, au * cx + v * cy) - 0.92 * math.cos(math.pi / 5)


_STAR_SECTOR = 2 * math.pi / 5
_STAR_OUTER, _STAR_INNER = 1.0, 0.42
_STAR_NORMAL = _unit(
    _STAR_OUTER - _STAR_INNER * math.cos(_STAR_SECTOR / 2), _STAR_INNER * math.sin(_STAR_SECTOR / 2)
)


def star(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Five points, one up: fold the angle into half a spike, then one edge half-plane."""
    angle = np.arctan2(u, v)
    folded = np.abs(np.mod(angle + _STAR_SECTOR / 2, _STAR_SECTOR) - _STAR_SECTOR / 2)
    rho = np.hypot(u, v)
    x, y = rho * np.sin(folded), rho * np.cos(folded)
    nx, ny = _STAR_NORMAL
    return x * nx + (y - _STAR_OUTER) * ny


def heart(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """A square on its corner with two circles on its upper sides (scaled to the unit disk)."""
    s = 1.0 / 0.93
    au, sv = np.abs(u) * s, v * s - 0.117
    lobe = np.hypot(au - 0.4, sv - 0.2) - 0.4 * _SQRT2
    point = (au + np.abs(sv + 0.2)) / _SQRT2 - 0.8 / _SQRT2
    return np.minimum(lobe, point) / s


def cross(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """A plus sign of two bars."""
    au, av = np.abs(u), np.abs(v)
    arm, half_width = 0.85, 0.27
    horizontal = np.maximum(au - arm, av - half_width)
    vertical = np.maximum(au - half_width, av - arm)
    return np.minimum(horizontal, vertical)


def crescent(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    outer = np.hypot(u + 0.08, v) - 0.85
    bite = np.hypot(u - 0.32, v) - 0.68
    return np.maximum(outer, -bite)


def ring(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return np.abs(np.hypot(u, v) - 0.63) - 0.22


_ARROW_EDGE = _unit(0.6, 0.85)


def arrow(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Points along +u: a shaft box and a triangular head."""
    av = np.abs(v)
    shaft = np.maximum(np.maximum(-0.9 - u, u - 0.15), av - 0.2)
    nx, ny = _ARROW_EDGE
    head = np.maximum(0.1 - u, (u - 0.95) * nx + av * ny)
    return np.minimum(shaft, head)


_TRAPEZOID_SIDE = _unit(1.0, 0.45)


def trapezoid(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Wide base down, narrow top up."""
    nx, ny = _TRAPEZOID_SIDE
    side = (np.abs(u) - 0.85) * nx + (v + 0.45) * ny
    return np.maximum(np.abs(v) - 0.45, side)


def semicircle(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """A half disc, flat side down, centred on its bounding box."""
    w = v + 0.3
    return np.maximum(np.hypot(u, w) - 0.95, -w)


def flower(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Five round petals: a polar curve, its radial gap scaled to approximate a distance."""
    angle = np.arctan2(u, v)
    petal = 0.66 + 0.3 * np.cos(5 * angle)
    return (np.hypot(u, v) - petal) * 0.6


SDF: dict[str, Sdf] = {
    "circle": circle,
    "square": square,
    "triangle": triangle,
    "star": star,
    "heart": heart,
    "cross": cross,
    "hexagon": hexagon,
    "diamond": diamond,
    "crescent": crescent,
    "ring": ring,
    "arrow": arrow,
    "ellipse": ellipse,
    "pentagon": pentagon,
    "trapezoid": trapezoid,
    "semicircle": semicircle,
    "flower": flower,
}
