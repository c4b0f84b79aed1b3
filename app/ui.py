"""The app factory: `build_app(models)` lays the page out (`app.layout`) and wires its events
(`app.wiring`); the views (`app.views`) turn the handlers' results into widget values.

Tests pass a tiny model and their own prompts. Each user has one `gr.State` holding their
`Session`; the shared `AppModels` are only read (under its lock).
"""

from __future__ import annotations

import gradio as gr

from app import render
from app.handlers import Session, landing_sample, load_sample, threshold_keeping
from app.inputs import read_sample, sample_classes, sample_keys, thumbnail_caption
from app.layout import build_layout
from app.models import AppModels
from app.wiring import wire

KEPT_ID_SHARE = 0.95  # the default OOD threshold keeps this share of the default suite's ID images
OOD_THRESHOLD = 1.15  # default threshold (× chance level) when there is no reference to set it from


def build_app(models: AppModels) -> gr.Blocks:
    """The app over already loaded models (nothing is trained or downloaded here). It opens on
    `landing_sample` with its suite's classes, encoded once here and shared by every new user."""
    landing = landing_sample(models)
    keys = list(dict.fromkeys([landing, *sample_keys()]))
    first = load_sample(models, landing, ", ".join(sample_classes(landing))).session
    samples = [(render.upscale(read_sample(key, models.bundle.image_size).pixels, models.grid),
                thumbnail_caption(key)) for key in keys]
    with gr.Blocks(title="VLP Lab") as demo:
        page = build_layout(models, first, samples, keys, _default_threshold(first))
        wire(models, demo, page, keys)
    return demo


def _default_threshold(session: Session) -> float:
    """The OOD threshold (× chance level) the view opens with: the one that keeps KEPT_ID_SHARE of
    the landing suite's ID test images under GL-MCM at T = 1 (OOD_THRESHOLD without a reference)."""
    if session.reference is None or session.reference.id_sims is None:
        return OOD_THRESHOLD
    return min(max(threshold_keeping(session.reference, "GL-MCM", 1.0, KEPT_ID_SHARE, len(session.classes)), 1), 4)
