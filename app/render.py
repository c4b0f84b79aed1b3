"""Pictures of maps for the app, drawn with NumPy, PIL and matplotlib colormaps (no figures: fast
enough for sliders); the charts are in `app.charts`.

Every picture is the model's input image scaled up to a patch-aligned display size, with patch
maps (P,) drawn on its √P × √P grid (row-major) and pixel maps resized to it; a colour bar beside
a map says what its colours mean.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from matplotlib import colormaps, font_manager
from PIL import Image, ImageDraw, ImageFont

DISPLAY = 256  # approximate display side in pixels
HEAT_CMAP = "inferno"
SELECTED = (0, 230, 255)  # outline of selected patches (top-k, salient)
OBJECT = (60, 255, 60)  # outline of the ground-truth object
HATCH = ((25, 25, 25), (235, 235, 235))  # masked patches: dark, crossed by a light diagonal
HATCH_WIDTH = 2  # pixels of the diagonal
DIVERGING_CMAP = "RdBu_r"  # difference maps: blue below 0, red above
BAR_STRIPE = 12  # width of a colour bar's ramp, pixels
BAR_WIDTH = 76  # the colour bar with its values


def display_side(grid: int) -> int:
    """Display side: a multiple of the patch grid close to DISPLAY."""
    return grid * max(1, round(DISPLAY / grid))


def upscale(pixels: np.ndarray, grid: int) -> np.ndarray:
    """uint8 (S, S, 3) -> (H, H, 3) at the display side (bicubic)."""
    side = display_side(grid)
    return np.asarray(Image.fromarray(pixels).resize((side, side), Image.Resampling.BICUBIC))


def _resize_map(values: np.ndarray, side: int, nearest: bool) -> np.ndarray:
    """A float (h, w) map -> (side, side): nearest keeps patch cells sharp, bilinear smooths pixels."""
    resample = Image.Resampling.NEAREST if nearest else Image.Resampling.BILINEAR
    return np.asarray(Image.fromarray(values.astype(np.float32), mode="F").resize((side, side), resample))


def value_range(values: np.ndarray) -> tuple[float, float]:
    """(min, max) of a map, the range its colours span by default."""
    return float(values.min()), float(values.max())


def symmetric_range(*maps: np.ndarray) -> tuple[float, float]:
    """(-m, m) with m the largest |value| of the maps (1e-12 at least): a diverging map's range, 0 in the middle."""
    largest = max(float(np.abs(values).max()) for values in maps)
    return -max(largest, 1e-12), max(largest, 1e-12)


def colorize(values: np.ndarray, cmap: str = HEAT_CMAP, span: tuple[float, float] | None = None) -> np.ndarray:
    """Colours of a float map (h, w) over `span` (default: its own min and max) -> uint8 (h, w, 3);
    values outside the span take its end colours; a constant map is dark."""
    low, high = span or value_range(values)
    unit = np.clip((values - low) / (high - low), 0, 1) if high > low else np.zeros_like(values)
    return (colormaps[cmap](unit)[..., :3] * 255).round().astype(np.uint8)


def heatmap(pixels: np.ndarray, values: np.ndarray, grid: int, alpha: float = 0.6, cmap: str = HEAT_CMAP,
            span: tuple[float, float] | None = None) -> np.ndarray:
    """The image with a heat map blended over it -> uint8 (H, H, 3).

    values: (P,) patch scores (drawn as sharp cells) or a (h, w) pixel map (resized smoothly),
    coloured over `span` (default: the map's own min and max).
    """
    side = display_side(grid)
    if values.ndim == 1:  # one colour per cell, repeated over its pixels (as a nearest resize would)
        cell = side // grid
        heat = colorize(values.reshape(grid, grid), cmap, span).repeat(cell, axis=0).repeat(cell, axis=1)
    else:
        heat = colorize(_resize_map(values, side, nearest=False), cmap, span)
    return (alpha * heat.astype(np.float32) + (1 - alpha) * upscale(pixels, grid)).round().astype(np.uint8)


def with_colour_bar(picture: np.ndarray, span: tuple[float, float], cmap: str = HEAT_CMAP,
                    label: str = "") -> np.ndarray:
    """The picture with a colour bar on its right: the colours of `span` (high at the top) with
    its ends and middle written beside it, and `label` under the values -> uint8 (H, W + BAR_WIDTH, 3)."""
    return np.concatenate([picture, _colour_bar(picture.shape[0], *span, cmap, label)], axis=1)


@lru_cache(maxsize=256)
def _colour_bar(height: int, low: float, high: float, cmap: str, label: str) -> np.ndarray:
    """A colour bar BAR_WIDTH wide -> uint8 (height, BAR_WIDTH, 3); drawn once per span (a map
    redrawn at another k keeps its span)."""
    canvas = Image.new("RGB", (BAR_WIDTH, height), (255, 255, 255))
    top, bottom = 8, height - (22 if label else 8)
    canvas.paste(Image.fromarray(_bar(cmap, bottom - top)), (6, top))
    draw, small = ImageDraw.Draw(canvas), font(11)
    for y, value in ((top, high), ((top + bottom) / 2, (low + high) / 2), (bottom, low)):
        draw.text((6 + BAR_STRIPE + 4, y), f"{value:.3g}", fill=(0, 0, 0), font=small, anchor="lm")
    if label:
        draw.text((BAR_WIDTH / 2, height - 4), label, fill=(0, 0, 0), font=small, anchor="md")
    return np.asarray(canvas)


@lru_cache(maxsize=8)
def font(size: int = 11) -> ImageFont.FreeTypeFont:
    """DejaVu Sans (matplotlib ships it) at `size` pixels: it has the symbols the pictures write
    (−, Δ, ●, ○)."""
    return ImageFont.truetype(font_manager.findfont("DejaVu Sans"), size)


@lru_cache(maxsize=16)
def _bar(cmap: str, height: int) -> np.ndarray:
    """A vertical colour ramp of `cmap`, high at the top -> uint8 (height, BAR_STRIPE, 3) (drawn once per size)."""
    ramp = np.linspace(1, 0, height)[:, None].repeat(BAR_STRIPE, axis=1)
    return (colormaps[cmap](ramp)[..., :3] * 255).round().astype(np.uint8)


def _cell_mask(selected: np.ndarray, grid: int, side: int) -> np.ndarray:
    """bool (P,) patch selection -> bool (side, side) pixel mask."""
    cell = side // grid
    return np.kron(selected.reshape(grid, grid), np.ones((cell, cell), dtype=bool)).astype(bool)


def _edges(mask: np.ndarray, width: int) -> np.ndarray:
    """Pixels of a bool mask within `width` of its border (inside) -> bool, same shape."""
    inner = mask.copy()
    for _ in range(width):
        shrunk = inner.copy()
        shrunk[1:] &= inner[:-1]
        shrunk[:-1] &= inner[1:]
        shrunk[:, 1:] &= inner[:, :-1]
        shrunk[:, :-1] &= inner[:, 1:]
        shrunk[[0, -1]] = False
        shrunk[:, [0, -1]] = False
        inner = shrunk
    return mask & ~inner


def outline_patches(image: np.ndarray, selected: np.ndarray, grid: int, color=SELECTED,
                    width: int = 2) -> np.ndarray:
    """Draw the border of every selected patch (bool (P,)) on a display image -> a copy."""
    side = image.shape[0]
    cell = side // grid
    cells = np.zeros((side, side), dtype=bool)
    for index in np.flatnonzero(selected):
        row, col = divmod(int(index), grid)
        box = np.zeros((cell, cell), dtype=bool)
        box[:width], box[-width:], box[:, :width], box[:, -width:] = True, True, True, True
        cells[row * cell:(row + 1) * cell, col * cell:(col + 1) * cell] |= box
    out = image.copy()
    out[cells] = color
    return out


def hatch_patches(image: np.ndarray, indices: np.ndarray, grid: int) -> np.ndarray:
    """Cover the given patches (indices (M,)) dark, each crossed by one light diagonal (HATCH):
    they show on any image, grey ones included, and compress about as well as a plain fill -> a copy."""
    selected = np.zeros(grid * grid, dtype=bool)
    selected[indices] = True
    cells = _cell_mask(selected, grid, image.shape[0])
    out = image.copy()
    out[cells] = _hatch(image.shape[0], grid)[cells]
    return out


@lru_cache(maxsize=4)
def _hatch(side: int, grid: int) -> np.ndarray:
    """Every patch cell dark with a light diagonal HATCH_WIDTH pixels wide (top left to bottom
    right) -> uint8 (side, side, 3)."""
    rows, cols = np.indices((side, side)) % (side // grid)
    on_line = (cols - rows >= 0) & (cols - rows < HATCH_WIDTH)
    return np.array(HATCH, dtype=np.uint8)[on_line.astype(int)]


def outline_object(image: np.ndarray, mask: np.ndarray | None, color=OBJECT, width: int = 2) -> np.ndarray:
    """Outline the ground-truth object (bool (S, S), or None: nothing) on a display image -> a copy."""
    if mask is None:
        return image
    big = _resize_map(mask.astype(np.float32), image.shape[0], nearest=True) > 0.5
    out = image.copy()
    out[_edges(big, width)] = color
    return out


def compose(panels: list[tuple[str, np.ndarray]], columns: int, title: str = "") -> np.ndarray:
    """Pictures side by side, `columns` a row, each under its caption, with `title` on top, on
    white -> uint8 (H, W, 3)."""
    cell_width = max(picture.shape[1] for _, picture in panels) + 12
    cell_height = max(picture.shape[0] for _, picture in panels) + 24
    head = 26 if title else 4
    rows = -(-len(panels) // columns)
    canvas = Image.new("RGB", (columns * cell_width + 8, head + rows * cell_height), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    if title:
        draw.text((8, 6), title, fill=(0, 0, 0), font=font(14))
    for n, (caption, picture) in enumerate(panels):
        left, top = 8 + (n % columns) * cell_width, head + (n // columns) * cell_height
        draw.text((left, top + 2), caption, fill=(0, 0, 0), font=font(11))
        canvas.paste(Image.fromarray(picture), (left, top + 18))
    return np.asarray(canvas)
