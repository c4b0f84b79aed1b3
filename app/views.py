"""Views: a handler's result turned into widget values (pictures as files, Markdown, tables, labels).

Each `*_outputs` function takes the session and the view's control values and returns its widgets'
values in the order the layout lists them. Pictures that only a key determines (a class's saliency
map, a region map at one k) are drawn once per session and sent as the same file afterwards.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Callable

import gradio as gr
import numpy as np
import pandas as pd
from PIL import Image
from gradio.utils import get_upload_folder

from app import charts, render
from app.attribution import attribution_view
from app.handlers import (
    PREDICTED,
    TRUE_CLASS,
    Session,
    class_notes,
    default_query,
    disa_view,
    gallop_view,
    predictions_view,
)
from app.learned import SIDES, learned_view
from app.models import METHOD_TITLES, AppModels
from app.ood import default_threshold, ood_view
from app.summaries import (
    attribution_note,
    context_words_table,
    disa_summary,
    gallop_summary,
    learned_summary,
    ood_verdict,
    pct,
    predictions_summary,
)

DISA_TABLE_ROWS = 8
NOTES_HEADER = "class is"  # the probability tables' last column: true class, base / novel


def require(session: Session | None) -> Session:
    """The session, or an error the page shows when there is none yet."""
    if session is None:
        raise gr.Error("Pick a sample or upload an image first.")
    return session


def class_options(models: AppModels, session: Session) -> tuple[list[tuple[str, str]], str]:
    """A class picker's (label, value) choices for the session, and the one it starts on: the true
    class (where the list has it), the predicted class, then every class with its base / novel note."""
    true = [] if session.true_index is None else [(f"(true class: {session.label})", TRUE_CLASS)]
    notes = [models.class_part(name) for name in session.classes]
    return ([*true, (PREDICTED, PREDICTED), *[(f"{name} · {note}", name) for name, note in zip(session.classes, notes)]],
            default_query(session))


def class_choices(models: AppModels, session: Session) -> gr.Dropdown:
    """A class dropdown reset to the session's classes (`class_options`)."""
    choices, value = class_options(models, session)
    return gr.Dropdown(choices=choices, value=value)


def encoded(picture: np.ndarray, lossless: bool = False) -> str:
    """A picture uint8 (H, W, 3) as a WebP file in gradio's upload folder, named by its content ->
    its path, which gradio serves as it is. libwebp's fastest method (0), for a file a few % larger
    than at gradio's default method (docs/performance.md). lossless: for flat colours and text
    (charts), where it is also smaller. A picture drawn before (a slider back at an earlier value)
    is already there and is not written again."""
    buffer = io.BytesIO()
    Image.fromarray(picture).save(buffer, format="WEBP", method=0, lossless=lossless)
    data = buffer.getvalue()
    path = Path(get_upload_folder()) / hashlib.sha256(data).hexdigest() / "picture.webp"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return str(path)


def _picture(session: Session, key: tuple, draw: Callable[[], np.ndarray], lossless: bool = False) -> str:
    """The file of one of the session's pictures that only `key` determines: drawn and encoded on
    its first use, then the same file (gradio neither encodes it again nor the browser fetches it)."""
    if key not in session.pictures:
        session.pictures[key] = encoded(draw(), lossless)
    return session.pictures[key]


def map_picture(session: Session, values: np.ndarray, grid: int, label: str, span: tuple[float, float] | None = None,
                cmap: str = render.HEAT_CMAP, selected: np.ndarray | None = None) -> np.ndarray:
    """A patch map (P,) over the session's image with its colour bar, the boxed `selected`
    patches and the object's outline -> uint8 (H, W, 3)."""
    span = span or render.value_range(values)
    picture = render.heatmap(session.pixels, values, grid, cmap=cmap, span=span)
    if selected is not None:
        picture = render.outline_patches(picture, selected, grid)
    return render.with_colour_bar(render.outline_object(picture, session.mask), span, cmap, label)


def log_saliency(saliency: np.ndarray) -> np.ndarray:
    """log of a saliency map (P,) (= cos / τ + a constant: it ranks the patches as the map does),
    with 0 read as float32's smallest positive number."""
    return np.log(np.maximum(saliency, np.finfo(np.float32).tiny))


def saliency_picture(session: Session, view: dict) -> np.ndarray:
    """DiSa's saliency map of `disa_view`'s class, on a log scale, with its colour bar."""
    return map_picture(session, log_saliency(view["saliency"]), view["grid"], "log saliency")


def masked_picture(session: Session, view: dict) -> np.ndarray:
    """The image with `disa_view`'s masked patches dark and crossed (`hatch_patches`), the object outlined."""
    grid = view["grid"]
    return render.outline_object(render.hatch_patches(render.upscale(session.pixels, grid), view["masked"], grid),
                                 session.mask)


def region_pictures(session: Session, view: dict) -> list[np.ndarray]:
    """`gallop_view`'s region map of each local prompt with its top-k patches boxed."""
    return [map_picture(session, scores, view["grid"], "cosine", selected=selected)
            for scores, selected in zip(view["maps"], view["selected"])]


def histogram_picture(view: dict) -> np.ndarray:
    """`ood_view`'s histogram of the suite's ID and OOD scores, with the threshold and the image's score."""
    reference = view["reference"]
    return charts.histogram(reference["id"], reference["ood"], view["cutoff"], view["scores"][view["score"]])


def roc_picture(view: dict) -> np.ndarray:
    """`ood_view`'s ROC curve with the threshold's operating point and FPR95's."""
    reference = view["reference"]
    _, tpr95, fpr95 = reference["fpr95"]
    return charts.roc_chart(*reference["roc"], (reference["ood_kept"], reference["id_kept"]), (fpr95, tpr95),
                            reference["auroc"])


def attribution_picture(models: AppModels, session: Session, view: dict) -> np.ndarray:
    """`attribution_view`'s map over the image, with its colour bar and the object outlined."""
    values = view["map"].reshape(-1) if view["kind"] == "gradcam" else view["map"]
    span = render.value_range(values)
    picture = render.outline_object(render.heatmap(session.pixels, values, models.grid), session.mask)
    return render.with_colour_bar(picture, span, label="attribution")


def disa_outputs(models: AppModels, session: Session | None, class_choice: str | None, ratio: float,
                 pool: float, seed: float | None) -> tuple:
    """(saliency picture, masked picture, summary Markdown, probability table)."""
    session = require(session)
    view = disa_view(models, session, class_choice, ratio, pool, seed)
    picture = _picture(session, ("saliency", view["class_index"]), lambda: saliency_picture(session, view))
    return picture, *_mask_outputs(models, session, view)


def disa_mask_outputs(models: AppModels, session: Session | None, class_choice: str | None, ratio: float,
                      pool: float, seed: float | None) -> tuple:
    """(masked picture, summary Markdown, probability table): what a move of ρ, γ or the seed
    changes (the saliency picture depends on the class only)."""
    session = require(session)
    return _mask_outputs(models, session, disa_view(models, session, class_choice, ratio, pool, seed))


def _mask_outputs(models: AppModels, session: Session, view: dict) -> tuple:
    probs = view["probabilities"]
    order = np.argsort(-probs["prompted_full"], kind="stable")[:DISA_TABLE_ROWS]
    table = pd.DataFrame({"class": [session.classes[i] for i in order],
                          **{key.replace("_", " "): [pct(probs[key][i]) for i in order] for key in probs},
                          NOTES_HEADER: class_notes(models, session, order)})
    return encoded(masked_picture(session, view)), disa_summary(view, session), table


def gallop_outputs(session: Session | None, class_choice: str | None, same_k: bool, k_all: float,
                   *ks: float) -> tuple:
    """(region-map gallery, global / local / combined predictions, summary Markdown)."""
    session = require(session)
    view = gallop_view(session, class_choice, gallop_ks(same_k, k_all, ks))
    items = []
    for n, k in enumerate(view["ks"]):
        picture = _picture(session, ("region", view["class_index"], n, k), lambda n=n: map_picture(
            session, view["maps"][n], view["grid"], "cosine", selected=view["selected"][n]))
        items.append((picture, f"prompt {n + 1} · k = {k}"))
    heads = [{name: float(p) for name, p in zip(session.classes, view["probabilities"][head])}
             for head in ("global", "local", "combined")]
    return items, *heads, gallop_summary(view, session)


def gallop_ks(same_k: bool, k_all: float, ks) -> int | list[int]:
    """The top-k setting of the GalLoP view's sliders: the shared k when *Same k* is ticked, else one per prompt."""
    return int(k_all) if same_k else [int(k) for k in ks]


def ood_outputs(session: Session | None, score: str, temperature: float, threshold: float) -> tuple:
    """(verdict Markdown, histogram picture, ROC picture; the pictures None without a reference):
    what a move of the threshold changes."""
    session = require(session)
    view = ood_view(session, score, temperature, threshold)
    reference = view["reference"]
    if reference is None:
        return ood_verdict(view), None, None
    # the ROC picture changes only when the threshold passes a score: the same file until then
    point = (score, temperature, reference["ood_kept"], reference["id_kept"])
    roc = _picture(session, ("roc", *point), lambda: roc_picture(view), lossless=True)
    return ood_verdict(view), encoded(histogram_picture(view), lossless=True), roc


def ood_outputs_at_default(session: Session | None, score: str, temperature: float, threshold: float) -> tuple:
    """`ood_outputs` at the default threshold of this score and temperature (95 % TPR on the
    suite's images; the given one without a reference), and that threshold for the slider."""
    at_default = default_threshold(require(session), score, temperature)
    threshold = threshold if at_default is None else at_default
    return *ood_outputs(session, score, temperature, threshold), threshold


def prediction_outputs(models: AppModels, session: Session | None, top_k: float) -> tuple:
    """(one label per method, the marks Markdown, the side-by-side table)."""
    session = require(session)
    view = predictions_view(models, session, int(top_k))
    rows = [[row[0], *[pct(p) for p in row[1:]], note] for row, note in zip(view["rows"], view["notes"])]
    table = pd.DataFrame(rows, columns=[*view["headers"], NOTES_HEADER])
    return *view["top"].values(), predictions_summary(view, session), table


def prediction_labels(models: AppModels, session: Session | None, top_k: float) -> tuple:
    """One label per method: what the top-k slider changes (the marks and table do not depend on it)."""
    return tuple(predictions_view(models, require(session), int(top_k))["top"].values())


def attribution_outputs(models: AppModels, session: Session | None, method_title: str,
                        class_choice: str | None, kind: str, steps: float) -> tuple:
    """(attribution picture, Markdown)."""
    session = require(session)
    method = method_name(method_title)
    view = attribution_view(models, session, method, class_choice, kind, int(steps))
    return attribution_picture(models, session, view), attribution_note(view, method, kind, session)


def method_name(title: str) -> str:
    """A method's name from its title (or its name)."""
    return {title: name for name, title in METHOD_TITLES.items()}.get(title, title)


def learned_outputs(models: AppModels, session: Session | None, class_choice: str | None,
                    words_method: str) -> tuple:
    """(for each Explainable method its zero-shot, learned and difference pictures, the summary
    Markdown, the nearest-words table of `words_method`)."""
    session = require(session)
    view = learned_view(models, session, class_choice)
    pictures = []
    for name, maps in view["maps"].items():
        key = ("learned", name, maps["class_index"])
        pictures += [_picture(session, (*key, part), draw)
                     for part, draw in learned_drawings(session, maps, view["grid"]).items()]
    return *pictures, learned_summary(view, session), learned_words(models, words_method)


def learned_drawings(session: Session, maps: dict, grid: int) -> dict[str, Callable[[], np.ndarray]]:
    """How to draw one method's zero-shot, learned and difference maps: the first two over one
    span (so their colours compare; saliency on a log scale), the difference on a diverging
    scale centred on 0."""
    saliency = maps["values"] == "saliency"
    sides = {side: log_saliency(maps[side]) if saliency else maps[side] for side in SIDES}
    span = (min(float(v.min()) for v in sides.values()), max(float(v.max()) for v in sides.values()))
    label = "log saliency" if saliency else "cosine"
    drawings = {side: (lambda values=values: map_picture(session, values, grid, label, span))
                for side, values in sides.items()}
    drawings["difference"] = lambda: map_picture(
        session, maps["difference"], grid, "difference", render.symmetric_range(maps["difference"]),
        render.DIVERGING_CMAP)
    return drawings


def learned_words(models: AppModels, method_title: str) -> pd.DataFrame:
    """The nearest vocabulary words of every learned context vector of one method, as a table."""
    return context_words_table(models, method_name(method_title))


def learned_words_outputs(models: AppModels, session: Session | None, class_choice: str | None,
                          method_title: str) -> pd.DataFrame:
    """The nearest-words table: what picking another method changes (the maps do not depend on it)."""
    require(session)
    return learned_words(models, method_title)
