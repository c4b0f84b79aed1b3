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

from app import render
from app.attribution import attribution_view
from app.handlers import PREDICTED, Session, disa_view, gallop_view, ood_view, predictions_view
from app.models import METHOD_TITLES, AppModels
from app.summaries import attribution_note, disa_summary, gallop_summary, ood_verdict, pct

DISA_TABLE_ROWS = 8


def require(session: Session | None) -> Session:
    """The session, or an error the page shows when there is none yet."""
    if session is None:
        raise gr.Error("Pick a sample or upload an image first.")
    return session


def class_choices(session: Session) -> gr.Dropdown:
    """A class dropdown reset to the session's classes, showing the prediction."""
    return gr.Dropdown(choices=[PREDICTED, *session.classes], value=PREDICTED)


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


def _picture(session: Session, key: tuple, draw: Callable[[], np.ndarray]) -> str:
    """The file of one of the session's pictures that only `key` determines: drawn and encoded on
    its first use, then the same file (gradio neither encodes it again nor the browser fetches it)."""
    if key not in session.pictures:
        session.pictures[key] = encoded(draw())
    return session.pictures[key]


def disa_outputs(models: AppModels, session: Session | None, class_choice: str | None, ratio: float,
                 pool: float, seed: float | None) -> tuple:
    """(saliency picture, masked picture, summary Markdown, probability table)."""
    session = require(session)
    view = disa_view(models, session, class_choice, ratio, pool, seed)
    saliency = view["saliency"]
    log_saliency = np.log(np.maximum(saliency, np.finfo(np.float32).tiny))  # = cos / τ + const
    picture = _picture(session, ("saliency", view["class_index"]), lambda: render.outline_object(
        render.heatmap(session.pixels, log_saliency, view["grid"]), session.mask))
    return picture, *_mask_outputs(session, view)


def disa_mask_outputs(models: AppModels, session: Session | None, class_choice: str | None, ratio: float,
                      pool: float, seed: float | None) -> tuple:
    """(masked picture, summary Markdown, probability table): what a move of ρ, γ or the seed
    changes (the saliency picture depends on the class only)."""
    session = require(session)
    return _mask_outputs(session, disa_view(models, session, class_choice, ratio, pool, seed))


def _mask_outputs(session: Session, view: dict) -> tuple:
    grid = view["grid"]
    masked = encoded(render.outline_object(
        render.fill_patches(render.upscale(session.pixels, grid), view["masked"], grid), session.mask))
    probs = view["probabilities"]
    order = np.argsort(-probs["prompted_full"], kind="stable")[:DISA_TABLE_ROWS]
    table = pd.DataFrame({"class": [session.classes[i] for i in order],
                          **{key.replace("_", " "): [pct(probs[key][i]) for i in order] for key in probs}})
    return masked, disa_summary(view, session), table


def gallop_outputs(session: Session | None, class_choice: str | None, same_k: bool, k_all: float,
                   *ks: float) -> tuple:
    """(region-map gallery, global / local / combined predictions, summary Markdown)."""
    session = require(session)
    view = gallop_view(session, class_choice, int(k_all) if same_k else [int(k) for k in ks])
    grid, items = view["grid"], []
    for n, (scores, selected, k) in enumerate(zip(view["maps"], view["selected"], view["ks"])):
        picture = _picture(session, ("region", view["class_index"], n, k), lambda: render.outline_object(
            render.outline_patches(render.heatmap(session.pixels, scores, grid), selected, grid), session.mask))
        items.append((picture, f"prompt {n + 1} · k = {k}"))
    heads = [{name: float(p) for name, p in zip(session.classes, view["probabilities"][head])}
             for head in ("global", "local", "combined")]
    return items, *heads, gallop_summary(view, session)


def ood_outputs(session: Session | None, score: str, temperature: float, threshold: float) -> tuple:
    """(Markdown with the three ID-ness scores and the verdict, histogram picture or None)."""
    view = ood_view(require(session), score, temperature, threshold)
    reference, picture = view["reference"], None
    if reference is not None:
        value = view["scores"][view["score"]]
        picture = encoded(render.histogram(reference["id"], reference["ood"], view["cutoff"], value), lossless=True)
    return ood_verdict(view, threshold), picture


def prediction_outputs(models: AppModels, session: Session | None, top_k: float) -> tuple:
    """(one label per method, the side-by-side table)."""
    view = predictions_view(models, require(session), int(top_k))
    rows = [[row[0], *[pct(p) for p in row[1:]]] for row in view["rows"]]
    return *view["top"].values(), pd.DataFrame(rows, columns=view["headers"])


def prediction_labels(models: AppModels, session: Session | None, top_k: float) -> tuple:
    """One label per method: what the top-k slider changes (the table does not depend on it)."""
    return tuple(predictions_view(models, require(session), int(top_k))["top"].values())


def attribution_outputs(models: AppModels, session: Session | None, method_title: str,
                        class_choice: str | None, kind: str, steps: float) -> tuple:
    """(attribution picture, Markdown)."""
    session = require(session)
    method = {title: name for name, title in METHOD_TITLES.items()}.get(method_title, method_title)
    view = attribution_view(models, session, method, class_choice, kind, int(steps))
    values = view["map"].reshape(-1) if view["kind"] == "gradcam" else view["map"]
    picture = render.outline_object(render.heatmap(session.pixels, values, models.grid), session.mask)
    return picture, attribution_note(view, method, kind, session)
