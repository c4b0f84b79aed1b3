"""The OOD view's charts, drawn with PIL (no figures: fast enough for a slider): the score
histograms of the suite's ID and OOD images with the threshold, and their ROC curve with the
operating point of the threshold and of FPR95. Both have ticked axes.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

from app.render import font

ID_COLOUR = (70, 130, 220)  # in-distribution scores
OOD_COLOUR = (240, 150, 40)  # OOD scores
MARK_COLOUR = (220, 30, 30)  # the image's own score, the threshold's operating point
HISTOGRAM_SIZE = (460, 210)  # width, height in pixels
ROC_SIZE = (250, 210)
HISTOGRAM_BINS = 30
BLACK, GREY = (0, 0, 0), (150, 150, 150)


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """About `count` round values (steps of 1, 2 or 5 times a power of ten) within [low, high]."""
    if high <= low:
        return [low]
    raw = (high - low) / count
    power = 10 ** math.floor(math.log10(raw))
    step = next(power * m for m in (1, 2, 5, 10) if power * m >= raw)
    first = math.ceil(low / step - 1e-9) * step
    return [round(first + i * step, 12) for i in range(int((high - first) / step + 1e-9) + 1)]


class _Axes:
    """A plot area on a PIL canvas: data (x, y) to pixels, and ticked axes."""

    def __init__(self, draw: ImageDraw.ImageDraw, box: tuple[int, int, int, int],
                 x_span: tuple[float, float], y_span: tuple[float, float]):
        self.draw, self.box, self.x_span, self.y_span = draw, box, x_span, y_span
        self.small = font(11)

    def x(self, value: float) -> float:
        left, _, right, _ = self.box
        low, high = self.x_span
        return left + (value - low) / (high - low) * (right - left)

    def y(self, value: float) -> float:
        _, top, _, bottom = self.box
        low, high = self.y_span
        return bottom - (value - low) / (high - low) * (bottom - top)

    def frame(self, x_ticks: list[float], y_ticks: list[float], x_format, y_format) -> None:
        """The two axes with their ticks and tick labels."""
        left, top, right, bottom = self.box
        self.draw.line([left, bottom, right, bottom], fill=BLACK)
        self.draw.line([left, top, left, bottom], fill=BLACK)
        for value in x_ticks:
            x = self.x(value)
            self.draw.line([x, bottom, x, bottom + 4], fill=BLACK)
            self.draw.text((x, bottom + 5), x_format(value), fill=BLACK, font=self.small, anchor="ma")
        for value in y_ticks:
            y = self.y(value)
            self.draw.line([left - 4, y, left, y], fill=BLACK)
            self.draw.text((left - 6, y), y_format(value), fill=BLACK, font=self.small, anchor="rm")

    def dashed_vertical(self, value: float, colour=BLACK) -> None:
        _, top, _, bottom = self.box
        x = self.x(value)
        for y in range(top, bottom, 6):
            self.draw.line([x, y, x, min(y + 3, bottom)], fill=colour, width=2)

    def dot(self, x: float, y: float, colour, radius: int = 4) -> None:
        """A filled disk at data point (x, y)."""
        cx, cy = self.x(x), self.y(y)
        self.draw.ellipse([cx - radius, cy - radius, cx + radius, cy + radius], fill=colour, outline=BLACK)

    def ring(self, x: float, y: float, colour, radius: int = 7) -> None:
        """A circle around data point (x, y), visible around a dot at the same point."""
        cx, cy = self.x(x), self.y(y)
        self.draw.ellipse([cx - radius, cy - radius, cx + radius, cy + radius], outline=colour, width=2)


def _percent(value: float) -> str:
    return f"{100 * value:.0f} %"


def _legend(draw: ImageDraw.ImageDraw, y: int, entries: list[tuple[str, tuple]]) -> None:
    """Coloured texts in a row from the left edge."""
    small, x = font(11), 8
    for text, colour in entries:
        draw.text((x, y), text, fill=colour, font=small)
        x += round(draw.textlength(text, font=small)) + 12


def histogram(id_values: np.ndarray, ood_values: np.ndarray, cutoff: float, value: float) -> np.ndarray:
    """Two overlaid histograms (ID blue, OOD orange, each as shares of its images) with the
    threshold (black, dashed) and the image's score (red) -> uint8 (H, W, 3); score ticks below,
    share ticks on the left, a legend at the bottom."""
    width, height = HISTOGRAM_SIZE
    low = min(id_values.min(), ood_values.min(), cutoff, value)
    high = max(id_values.max(), ood_values.max(), cutoff, value)
    high = high if high > low else low + 1.0
    edges = np.linspace(low, high, HISTOGRAM_BINS + 1)
    shares = [np.histogram(values, edges)[0] / len(values) for values in (id_values, ood_values)]
    tallest = max(float(share.max()) for share in shares)
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    axes = _Axes(ImageDraw.Draw(canvas), (44, 8, width - 12, height - 46), (low, high), (0.0, tallest))
    layer = Image.new("RGBA", (width, height), (0, 0, 0, 0))
    bars = ImageDraw.Draw(layer)
    for colour, share in zip((ID_COLOUR, OOD_COLOUR), shares):
        for left, right, part in zip(edges[:-1], edges[1:], share):
            if part > 0:
                bars.rectangle([axes.x(left), axes.y(part), axes.x(right) - 1, axes.y(0)], fill=(*colour, 140))
    canvas.paste(layer, (0, 0), layer)
    axes.draw = draw = ImageDraw.Draw(canvas)
    axes.frame(nice_ticks(low, high, 5), nice_ticks(0.0, tallest, 3), lambda v: f"{v:.3g}", _percent)
    axes.dashed_vertical(cutoff)
    draw.line([axes.x(value), axes.box[1], axes.x(value), axes.box[3]], fill=MARK_COLOUR, width=3)
    _legend(draw, height - 18, [("ID", ID_COLOUR), ("OOD", OOD_COLOUR), (f"this image {value:.3g}", MARK_COLOUR),
                                (f"threshold {cutoff:.3g} (dashed)", BLACK)])
    return np.asarray(canvas)


def roc_chart(fpr: np.ndarray, tpr: np.ndarray, point: tuple[float, float], fpr95: tuple[float, float],
              auroc: float) -> np.ndarray:
    """The ROC curve (FPR (T,) and TPR (T,) ascending, from `roc_curve`; drawn from (0, 0)) with
    chance's diagonal, the threshold's operating point (FPR, TPR) in red and FPR95's (FPR, TPR)
    in black -> uint8 (H, W, 3)."""
    width, height = ROC_SIZE
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    axes = _Axes(draw, (44, 8, width - 12, height - 46), (0.0, 1.0), (0.0, 1.0))
    ticks = [0.0, 0.25, 0.5, 0.75, 1.0]
    axes.frame(ticks, ticks, _percent, _percent)
    draw.line([axes.x(0), axes.y(0), axes.x(1), axes.y(1)], fill=GREY, width=1)
    curve = [(axes.x(0.0), axes.y(0.0))] + [(axes.x(f), axes.y(t)) for f, t in zip(fpr, tpr)]
    draw.line(curve, fill=ID_COLOUR, width=2)
    axes.ring(*fpr95, BLACK)
    axes.dot(*point, MARK_COLOUR)
    small = font(11)
    draw.text((width - 14, axes.y(0.08)), f"AUROC {100 * auroc:.1f} %", fill=BLACK, font=small, anchor="rm")
    draw.text(((axes.box[0] + axes.box[2]) / 2, height - 32), "FPR (OOD kept)", fill=BLACK, font=small, anchor="ma")
    _legend(draw, height - 18, [("● this threshold", MARK_COLOUR), (f"○ 95 % TPR: FPR {100 * fpr95[0]:.0f} %", BLACK)])
    return np.asarray(canvas)


def prediction_bars(top: dict[str, dict[str, float]], titles: dict[str, str], columns: int = 3) -> np.ndarray:
    """Each method's top classes as horizontal bars of their probability, one block per method
    (titled by `titles`, e.g. with the right / wrong mark), `columns` blocks a row -> uint8 (H, W, 3)."""
    block_width, row_height = 250, 18
    rows = max(len(classes) for classes in top.values())
    block_height = 24 + rows * row_height + 10
    lines = -(-len(top) // columns)
    canvas = Image.new("RGB", (columns * block_width, lines * block_height), (255, 255, 255))
    draw, small = ImageDraw.Draw(canvas), font(11)
    for n, (method, classes) in enumerate(top.items()):
        left, top_y = (n % columns) * block_width + 8, (n // columns) * block_height + 4
        draw.text((left, top_y), titles[method], fill=BLACK, font=font(12))
        for row, (name, probability) in enumerate(classes.items()):
            y = top_y + 22 + row * row_height
            draw.rectangle([left + 90, y + 2, left + 90 + round(probability * 110), y + row_height - 4], fill=ID_COLOUR)
            draw.text((left, y + row_height / 2 - 1), name[:14], fill=BLACK, font=small, anchor="lm")
            draw.text((left + 204, y + row_height / 2 - 1), f"{100 * probability:.0f} %", fill=BLACK, font=small,
                      anchor="lm")
    return np.asarray(canvas)
