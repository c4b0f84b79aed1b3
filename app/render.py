"""Pictures for the app, drawn with NumPy and matplotlib colormaps (no figures: fast enough for sliders).

Every picture is the model's input image scaled up to a patch-aligned display size, with patch
maps (P,) drawn on its √P × √P grid (row-major) and pixel maps resized to it.
"""

from __future__ import annotations

import numpy as np
from matplotlib import colormaps
from PIL import Image, ImageDraw, ImageFont

DISPLAY = 256  # approximate display side in pixels
HEAT_CMAP = "inferno"
SELECTED = (0, 230, 255)  # outline of selected patches (top-k, salient)
OBJECT = (60, 255, 60)  # outline of the ground-truth object
MASKED = (128, 128, 128)  # fill of masked patches


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


def colorize(values: np.ndarray, cmap: str = HEAT_CMAP) -> np.ndarray:
    """Min-max normalised colours of a float map (h, w) -> uint8 (h, w, 3); a constant map is dark."""
    low, high = float(values.min()), float(values.max())
    unit = (values - low) / (high - low) if high > low else np.zeros_like(values)
    return (colormaps[cmap](unit)[..., :3] * 255).round().astype(np.uint8)


def heatmap(pixels: np.ndarray, values: np.ndarray, grid: int, alpha: float = 0.6) -> np.ndarray:
    """The image with a heat map blended over it -> uint8 (H, H, 3).

    values: (P,) patch scores (drawn as sharp cells) or a (h, w) pixel map (resized smoothly).
    """
    side = display_side(grid)
    if values.ndim == 1:  # one colour per cell, repeated over its pixels (as a nearest resize would)
        cell = side // grid
        heat = colorize(values.reshape(grid, grid)).repeat(cell, axis=0).repeat(cell, axis=1)
    else:
        heat = colorize(_resize_map(values, side, nearest=False))
    return (alpha * heat.astype(np.float32) + (1 - alpha) * upscale(pixels, grid)).round().astype(np.uint8)


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


def fill_patches(image: np.ndarray, indices: np.ndarray, grid: int, color=MASKED) -> np.ndarray:
    """Paint the given patches (indices (M,)) in one colour on a display image -> a copy."""
    selected = np.zeros(grid * grid, dtype=bool)
    selected[indices] = True
    out = image.copy()
    out[_cell_mask(selected, grid, image.shape[0])] = color
    return out


def outline_object(image: np.ndarray, mask: np.ndarray | None, color=OBJECT, width: int = 2) -> np.ndarray:
    """Outline the ground-truth object (bool (S, S), or None: nothing) on a display image -> a copy."""
    if mask is None:
        return image
    big = _resize_map(mask.astype(np.float32), image.shape[0], nearest=True) > 0.5
    out = image.copy()
    out[_edges(big, width)] = color
    return out


ID_COLOUR = (70, 130, 220)  # histogram of in-distribution scores
OOD_COLOUR = (240, 150, 40)  # histogram of OOD scores
MARK_COLOUR = (220, 30, 30)  # the image's own score
HISTOGRAM_SIZE = (440, 190)  # width, height in pixels
HISTOGRAM_BINS = 30


def histogram(id_values: np.ndarray, ood_values: np.ndarray, cutoff: float, value: float) -> np.ndarray:
    """Two overlaid histograms (ID blue, OOD orange, each as shares of its images) with the
    threshold (black, dashed) and one value (red) marked -> uint8 (H, W, 3). The axis is labelled
    at both ends; a legend line below gives the threshold and the value."""
    width, height = HISTOGRAM_SIZE
    margin, axis = 12, height - 42  # left/right margin, y of the x axis
    low = min(id_values.min(), ood_values.min(), cutoff, value)
    high = max(id_values.max(), ood_values.max(), cutoff, value)
    high = high if high > low else low + 1.0
    edges = np.linspace(low, high, HISTOGRAM_BINS + 1)
    shares = [np.histogram(values, edges)[0] / len(values) for values in (id_values, ood_values)]
    tallest = max(share.max() for share in shares)

    def x_of(v: float) -> int:
        return round(margin + (v - low) / (high - low) * (width - 2 * margin))

    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    layer = Image.new("RGBA", (width, height), (0, 0, 0, 0))
    bars = ImageDraw.Draw(layer)
    for colour, share in zip((ID_COLOUR, OOD_COLOUR), shares):
        for left, right, part in zip(edges[:-1], edges[1:], share):
            if part > 0:
                top = axis - round(part / tallest * (axis - 6))
                bars.rectangle([x_of(left), top, x_of(right) - 1, axis], fill=(*colour, 140))
    canvas.paste(layer, (0, 0), layer)
    draw = ImageDraw.Draw(canvas)
    draw.line([margin, axis, width - margin, axis], fill=(0, 0, 0))
    for y in range(4, axis, 6):
        draw.line([x_of(cutoff), y, x_of(cutoff), y + 3], fill=(0, 0, 0), width=2)
    draw.line([x_of(value), 4, x_of(value), axis], fill=MARK_COLOUR, width=3)
    font = ImageFont.load_default(12)
    draw.text((x_of(low), axis + 3), f"{low:.3g}", fill=(0, 0, 0), font=font, anchor="la")
    draw.text((x_of(high), axis + 3), f"{high:.3g}", fill=(0, 0, 0), font=font, anchor="ra")
    legend = [("ID", ID_COLOUR), ("OOD", OOD_COLOUR), (f"this image {value:.3g}", MARK_COLOUR),
              (f"threshold {cutoff:.3g} (dashed)", (0, 0, 0))]
    x = margin
    for text, colour in legend:
        draw.text((x, height - 16), text, fill=colour, font=font)
        x += round(draw.textlength(text, font=font)) + 14
    return np.asarray(canvas)
