"""The app factory: `build_app(models)` lays the page out (`app.layout`) and wires its events
(`app.wiring`); the views (`app.views`) turn the handlers' results into widget values.

Tests pass a tiny model and their own prompts. Each user has one `gr.State` holding their
`Session`; the shared `AppModels` are only read (under its lock).
"""

from __future__ import annotations

import gradio as gr

from app import render
from app.compute import COMPUTE
from app.handlers import landing_sample, load_sample
from app.inputs import read_sample, sample_caption, sample_classes, sample_keys, thumbnail_caption
from app.layout import build_layout
from app.models import AppModels
from app.ood import default_threshold
from app.wiring import wire

OOD_THRESHOLD = 1.15  # the OOD threshold (× chance level) the view opens with when there is no reference


def build_app(models: AppModels) -> gr.Blocks:
    """The app over already loaded models (nothing is trained or downloaded here). It opens on
    `landing_sample` with its suite's classes, encoded once here and shared by every new user."""
    landing = landing_sample(models)
    keys = list(dict.fromkeys([landing, *sample_keys()]))
    first = load_sample(models, landing, ", ".join(sample_classes(landing))).session
    samples = [(render.upscale(read_sample(key, models.bundle.image_size).pixels, models.grid),
                thumbnail_caption(key)) for key in keys]
    threshold = default_threshold(first, "GL-MCM", 1.0) or OOD_THRESHOLD
    COMPUTE.run(lambda: models.context_words)  # a constant of the prompts: before the first page asks for it
    with gr.Blocks(title="VLP Lab") as demo:
        page = build_layout(models, first, samples, [(sample_caption(key), key) for key in keys], threshold)
        wire(models, demo, page, keys)
    return demo
