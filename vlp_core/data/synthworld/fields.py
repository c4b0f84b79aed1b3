"""Precomputed per-size arrays the renderer reuses: coordinate grids and texture banks.

Banks are twice the image side in each direction; the renderer takes an image-sized window at a
per-scene offset, so each scene gets a different-looking texture without generating one. Banks
come from a fixed seed, so they are constants and rendering stays a pure function of the spec.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

_BANK_SEED = 20240601


@dataclass(frozen=True)
class Fields:
    """Everything precomputed for one image side `size` (S below)."""

    size: int
    centres: np.ndarray  # (S,) pixel-centre coordinates 0.5 .. S-0.5
    gx: np.ndarray  # (S, S) x coordinate scaled to [-1, 1], left to right
    gy: np.ndarray  # (S, S) y coordinate scaled to [-1, 1], top to bottom
    textures: dict[str, np.ndarray]  # background kind -> (2S, 2S) field in [0, 1]
    noise: np.ndarray  # (2S, 2S, 3) standard normal pixel noise
    brush: np.ndarray  # (2S, 2S) brightness streaks around 1.0 for the painted style
    jitter: np.ndarray  # (2S, 2S, 2) integer pixel displacements (dy, dx) for brush strokes

    def window(self, bank: np.ndarray, shift: tuple[float, float]) -> np.ndarray:
        """The (S, S, ...) window of a (2S, 2S, ...) bank at fractional offset (x, y)."""
        ox, oy = int(shift[0] * self.size), int(shift[1] * self.size)
        return bank[oy : oy + self.size, ox : ox + self.size]


def _value_noise(rng: np.random.Generator, n: int, cells_y: int, cells_x: int) -> np.ndarray:
    """(n, n) bilinearly interpolated random lattice with the given cell counts, in [0, 1]."""
    lattice = rng.random((cells_y + 1, cells_x + 1))
    ty = np.arange(n) * cells_y / n
    tx = np.arange(n) * cells_x / n
    iy, ix = ty.astype(int), tx.astype(int)
    fy, fx = (ty - iy)[:, None], (tx - ix)[None, :]
    fy, fx = fy * fy * (3 - 2 * fy), fx * fx * (3 - 2 * fx)  # smoothstep: no visible lattice
    top = lattice[iy][:, ix] * (1 - fx) + lattice[iy][:, ix + 1] * fx
    bottom = lattice[iy + 1][:, ix] * (1 - fx) + lattice[iy + 1][:, ix + 1] * fx
    return top * (1 - fy) + bottom * fy


def _normalise(field: np.ndarray) -> np.ndarray:
    low, high = field.min(), field.max()
    return ((field - low) / (high - low)).astype(np.float32)


def _textures(rng: np.random.Generator, size: int) -> dict[str, np.ndarray]:
    n = 2 * size
    y, x = np.mgrid[0:n, 0:n] / size  # in image sides
    fractal = sum(_value_noise(rng, n, c, c) / c for c in (6, 12, 24))
    wavy = 0.5 + 0.5 * np.sin(2 * np.pi * (5 * y + 0.6 * np.sin(2 * np.pi * 2 * x)))
    cells = 6  # grid cells per image side; lines about 2 px wide
    cell_offset = np.maximum(np.abs((x * cells) % 1 - 0.5), np.abs((y * cells) % 1 - 0.5))
    grid = np.clip(1.5 - (0.5 - cell_offset) * size / cells, 0, 1)
    speckled = np.clip((_value_noise(rng, n, 40, 40) - 0.68) * 8, 0, 1)
    return {
        "noise": _normalise(fractal),
        "wavy": _normalise(wavy),
        "grid": _normalise(grid),
        "speckled": _normalise(speckled),
    }


@lru_cache(maxsize=8)
def fields(size: int) -> Fields:
    """The precomputed arrays for images of side `size` (built once per size)."""
    rng = np.random.default_rng(_BANK_SEED)
    n = 2 * size
    centres = (np.arange(size) + 0.5).astype(np.float32)
    scaled = centres / size * 2 - 1
    gy, gx = np.meshgrid(scaled, scaled, indexing="ij")
    streaks = _value_noise(rng, n, 48, 6)
    jitter = np.stack([_value_noise(rng, n, 30, 30), _value_noise(rng, n, 30, 30)], axis=-1)
    return Fields(
        size=size,
        centres=centres,
        gx=gx,
        gy=gy,
        textures=_textures(rng, size),
        noise=rng.standard_normal((n, n, 3)).astype(np.float32),
        brush=(0.88 + 0.24 * streaks).astype(np.float32),
        jitter=np.rint((jitter - 0.5) * 5).astype(np.intp),
    )
