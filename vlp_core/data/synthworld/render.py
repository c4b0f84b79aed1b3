"""Scene specifications and the renderer: `render(spec, size) -> (image, mask)`, and
`render_objects(spec, size) -> (image, objects)` with a map of which object every pixel shows.

A `SceneSpec` fixes every pixel: rendering draws no random numbers (texture windows are chosen
by offsets stored in the spec). Positions and radii are fractions of the image side, so one
spec renders at any size.

Drawing order: background, distractors, the main object's shadow, the main object, then the
style's whole-image effect. The main object is drawn last, so its mask is exactly its visible
pixels; the object map records, per pixel, the object drawn last there. Each object is rasterised only inside its bounding box, from the signed distance of its
shape evaluated on precomputed pixel centres.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from vlp_core.data.synthworld.attributes import RGB
from vlp_core.data.synthworld.fields import Fields, fields
from vlp_core.data.synthworld.geometry import SDF

_PAPER = np.array([246, 244, 236], np.float32)
_WHITE = np.array([240, 240, 240], np.float32)
_SHADOW_DARKNESS = 0.45
_PAINT_LEVELS = 6


@dataclass(frozen=True)
class ObjectSpec:
    """One object. `x`, `y`: centre as fractions of the image side (y down); `radius`: radius
    of the disk the shape fits in, as a fraction of the side; `rotation`: radians,
    counter-clockwise; `rgb`: the (jittered) colour actually drawn for colour name `colour`."""

    shape: str
    colour: str
    pattern: str
    rgb: RGB
    x: float
    y: float
    radius: float
    rotation: float


@dataclass(frozen=True)
class SceneSpec:
    """A whole image: the main object, its size word, background, distractors and style.

    `background_rgb` are the two background colours (the second unused for "plain");
    `background_angle` orients gradients and textures; `background_shift` and `grain` are
    (x, y) offsets in [0, 1) into the texture and noise banks; `light_angle` is the direction
    the light comes from (radians, image coordinates). `noise_sigma` and `pixel_block` tune the
    "noisy" and "pixelated" styles.
    """

    main: ObjectSpec
    size: str
    background: str
    background_rgb: tuple[RGB, RGB]
    background_angle: float
    background_shift: tuple[float, float]
    distractors: tuple[ObjectSpec, ...]
    light_angle: float
    grain: tuple[float, float]
    noise_sigma: float
    pixel_block: int
    style: str = "photo"

    def with_style(self, style: str) -> SceneSpec:
        """The same scene in another style."""
        return replace(self, style=style)


BACKGROUND = -1  # object-map value of pixels that show no object


def render(spec: SceneSpec, size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Draw `spec`: RGB uint8 image (size, size, 3), main object's bool mask (size, size)."""
    image, objects = render_objects(spec, size)
    return image, objects == 0


def render_objects(spec: SceneSpec, size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Draw `spec`: RGB uint8 image (size, size, 3) and the object map int8 (size, size).

    The map holds, per pixel, the visible object: 0 the main object, k the k-th distractor
    (1-based, `spec.distractors[k - 1]`), `BACKGROUND` (-1) none.
    """
    if spec.style == "pixelated":
        return _render_pixelated(spec, size)
    f = fields(size)
    canvas = _background(spec, f)
    light = (math.cos(spec.light_angle), math.sin(spec.light_angle))
    outline = spec.style == "sketch"
    objects = np.full((size, size), BACKGROUND, dtype=np.int8)
    for k, obj in enumerate(spec.distractors, start=1):
        _draw(canvas, obj, f, light, outline=outline, objects=objects, label=k)
    _draw(canvas, spec.main, f, light, outline=outline, objects=objects, label=0)
    if spec.style == "noisy":
        canvas += spec.noise_sigma * f.window(f.noise, spec.grain)
    elif spec.style == "painted":
        canvas = _paint(canvas, spec, f)
    np.clip(canvas, 0, 255, out=canvas)
    return canvas.astype(np.uint8), objects


def _render_pixelated(spec: SceneSpec, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Render a photo at about 64/pixel_block pixels a side, then enlarge it in blocks."""
    small = max(4, min(size, round(64 / spec.pixel_block)))
    image, objects = render_objects(spec.with_style("photo"), small)
    index = np.arange(size) * small // size
    return image[index][:, index], objects[index][:, index]


def _background(spec: SceneSpec, f: Fields) -> np.ndarray:
    """The (S, S, 3) float32 background, 0..255."""
    if spec.style == "sketch":
        paper = 1.0 - 0.08 * f.window(f.textures["noise"], spec.background_shift)
        return paper[..., None] * _PAPER
    first, second = (np.array(c, np.float32) for c in spec.background_rgb)
    if spec.background == "plain":
        canvas = np.empty((f.size, f.size, 3), np.float32)
        canvas[:] = first
        return canvas
    if spec.background == "gradient":
        c, s = math.cos(spec.background_angle), math.sin(spec.background_angle)
        t = 0.5 + 0.5 * (c * f.gx + s * f.gy)
    else:
        t = f.window(f.textures[spec.background], spec.background_shift)
        if math.cos(spec.background_angle) < 0:
            t = t.T
    return first + t[..., None] * (second - first)


def _draw(
    canvas: np.ndarray,
    obj: ObjectSpec,
    f: Fields,
    light: tuple[float, float],
    *,
    outline: bool,
    objects: np.ndarray,
    label: int,
) -> None:
    """Composite `obj` onto `canvas` (S, S, 3) in place, filled and shaded or as an outline, and
    write `label` into the object map `objects` (S, S) where it covers the pixel.

    The main object (`label` 0) casts a shadow (filled) or hides what lies under it with paper
    (outline).
    """
    size = f.size
    r = obj.radius * size
    cx, cy = obj.x * size, obj.y * size
    x0, x1 = max(0, int(cx - r) - 1), min(size, int(cx + r) + 2)
    y0, y1 = max(0, int(cy - r) - 1), min(size, int(cy + r) + 2)
    if x0 >= x1 or y0 >= y1:
        return
    dx = ((f.centres[x0:x1] - cx) / r)[None, :]  # (1, w), radius units
    dy = ((f.centres[y0:y1] - cy) / r)[:, None]  # (h, 1)
    c, s = math.cos(obj.rotation), math.sin(obj.rotation)
    u, v = c * dx - s * dy, -s * dx - c * dy  # rotated, v up
    distance = SDF[obj.shape](u, v) * r  # (h, w) signed distance in pixels
    region = canvas[y0:y1, x0:x1]
    objects[y0:y1, x0:x1][distance < 0] = label
    main = label == 0
    rgb = np.array(obj.rgb, np.float32)
    if outline:
        _draw_outline(region, distance, rgb, fill=main)
        return
    alpha = np.clip(0.5 - distance, 0, 1)
    if main:
        _cast_shadow(canvas, alpha, (y0, x0), light, r)
    colour = _surface(obj, u, v, r, rgb)
    shade = (1 + 0.28 * (dx * light[0] + dy * light[1])) * (
        0.7 + 0.3 * np.clip(-distance / (0.25 * r + 1), 0, 1)
    )
    region += alpha[..., None] * (colour * shade[..., None] - region)


def _draw_outline(region: np.ndarray, distance: np.ndarray, rgb: np.ndarray, fill: bool) -> None:
    """Sketch style: an ink line along the outline; `fill` paints the inside with paper first."""
    if fill:
        region += np.clip(0.5 - distance, 0, 1)[..., None] * (_PAPER - region)
    stroke = np.clip(1.3 - np.abs(distance), 0, 1)
    region += stroke[..., None] * (0.8 * rgb - region)


def _cast_shadow(
    canvas: np.ndarray,
    alpha: np.ndarray,
    origin: tuple[int, int],
    light: tuple[float, float],
    r: float,
) -> None:
    """Darken the canvas under `alpha` (h, w), shifted away from the light by ~r/8 pixels."""
    offset = max(1.0, 0.12 * r)
    shift_y, shift_x = round(-light[1] * offset), round(-light[0] * offset)
    h, w = alpha.shape
    size = canvas.shape[0]
    top, left = origin[0] + shift_y, origin[1] + shift_x
    y0, y1 = max(0, top), min(size, top + h)
    x0, x1 = max(0, left), min(size, left + w)
    if y0 >= y1 or x0 >= x1:
        return
    cover = alpha[y0 - top : y1 - top, x0 - left : x1 - left]
    canvas[y0:y1, x0:x1] *= (1 - _SHADOW_DARKNESS * cover)[..., None]


def _surface(
    obj: ObjectSpec, u: np.ndarray, v: np.ndarray, r: float, rgb: np.ndarray
) -> np.ndarray:
    """The object's unshaded colour: (3,) for solid, (h, w, 3) for patterns."""
    if obj.pattern == "solid":
        return rgb
    luminance = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]
    contrast = _WHITE if luminance < 140 else 0.3 * rgb
    weight = _pattern(obj.pattern, u, v, r)
    return rgb + weight[..., None] * (contrast - rgb)


def _pattern(pattern: str, u: np.ndarray, v: np.ndarray, r: float) -> np.ndarray:
    """Anti-aliased pattern weight in [0, 1], (h, w): 1 where the contrast colour shows.

    The period is in pixels (5..10, growing with the object), so patterns stay visible on
    small objects. Distances below are in periods, times `period` gives pixels.
    """
    period = min(10.0, max(5.0, 0.5 * r))
    scale = r / period  # radius units -> periods
    if pattern == "striped":
        return np.clip((_fold(u * scale) - 0.275) * period + 0.5, 0, 1)
    if pattern == "dotted":
        to_dot = np.hypot(0.5 - _fold(u * scale), 0.5 - _fold(v * scale))
        return np.clip((0.3 - to_dot) * period + 0.5, 0, 1)
    if pattern == "checkered":
        check = 1.2 * period  # two squares
        a = np.clip((_fold(u * r / check) - 0.25) * check + 0.5, 0, 1)
        b = np.clip((_fold(v * r / check) - 0.25) * check + 0.5, 0, 1)
        return a + b - 2 * a * b
    raise ValueError(f"unknown pattern {pattern!r}")


def _fold(t: np.ndarray) -> np.ndarray:
    """|frac(t) - 0.5|: 0.5 at integers, 0 half-way between, slope 1 (same shape as `t`)."""
    return np.abs(t - np.floor(t) - 0.5)


def _paint(canvas: np.ndarray, spec: SceneSpec, f: Fields) -> np.ndarray:
    """Painted style: brush-stroke displacement, a 3x3 blur, streaks, colour quantisation."""
    size = f.size
    jitter = f.window(f.jitter, spec.grain)  # (S, S, 2)
    rows = np.clip(np.arange(size)[:, None] + jitter[..., 0], 0, size - 1)
    cols = np.clip(np.arange(size)[None, :] + jitter[..., 1], 0, size - 1)
    moved = canvas[rows, cols]
    padded = np.pad(moved, ((1, 1), (1, 1), (0, 0)), mode="edge")
    rows_sum = padded[:-2] + padded[1:-1] + padded[2:]
    blurred = (rows_sum[:, :-2] + rows_sum[:, 1:-1] + rows_sum[:, 2:]) / 9
    blurred *= f.window(f.brush, spec.grain)[..., None]
    step = 255 / (_PAINT_LEVELS - 1)
    return np.rint(blurred / step) * step
