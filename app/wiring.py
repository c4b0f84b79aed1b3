"""Wiring: which event runs which view and fills which widgets.

Every event runs on the one compute thread (`app.compute`), so a handler costs in the server what
it costs alone. Live views (sliders and pickers) answer outside gradio's queue, in one request per
step; new images, class lists and attributions go through the queue, which carries their progress
(shown beside the *Apply classes* button while the views are marked stale).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import partial
from typing import Callable

import gradio as gr
import torch

from app import render, views
from app.attribution import KINDS
from app.compute import COMPUTE
from app.export import export_view
from app.handlers import Outcome, Session, change_classes, load_sample, load_upload
from app.inputs import InputError, sample_classes
from app.layout import (
    ATTRIBUTION_HINT,
    K_ALL_LABEL,
    K_ALL_OFF,
    K_EACH_OFF,
    MARK_FRESH,
    MARK_STALE,
    STEPS_LABEL,
    STEPS_OFF,
    Layout,
)
from app.models import AppModels, switch_prompts
from app.summaries import describe_models, escape, method_label, status_text, untrained_banner

PROGRESS_EVERY = 0.25  # seconds between two progress reports while class names are encoded
APPLY, APPLYING = "Apply classes", "Encoding the classes…"


@dataclass
class View:
    """A live view: `fn(session, *controls) -> outputs` runs again whenever a control moves, or
    for a move of one of `light_controls`, `light_fn(session, *controls) -> light_outputs`, the
    outputs such a move changes (the others are neither drawn, sent nor rendered again)."""

    fn: Callable
    controls: list
    outputs: list
    api_name: str | None
    light_controls: list = field(default_factory=list)
    light_fn: Callable | None = None
    light_outputs: list = field(default_factory=list)
    light_api_name: str | None = None

    def wire(self, state: gr.State, threads: int | None = None, **options) -> None:
        """Listen to the controls' input events; each runs with `threads` torch threads."""
        inputs = [state, *self.controls]
        heavy = [control.input for control in self.controls if control not in self.light_controls]
        if heavy:
            gr.on(heavy, COMPUTE.wrap(self.fn, threads), inputs, self.outputs, api_name=self.api_name, **options)
        if self.light_controls:
            gr.on([control.input for control in self.light_controls], COMPUTE.wrap(self.light_fn, threads), inputs,
                  self.light_outputs, api_name=self.light_api_name, **options)


def view_threads() -> int:
    """torch threads for redrawing views: all but one core (at least one). A view redraws one image,
    too little work to share out, and the browser, on the same machine for most users, renders the
    page meanwhile: with every core computing, torch's threads wait for each other
    (docs/performance.md)."""
    return max(1, torch.get_num_threads() - 1)


def progress_reporter(progress: gr.Progress, every: float = PROGRESS_EVERY) -> Callable[[int, int], None]:
    """The handlers' (done, total) progress reports on a gradio progress bar, at most one per
    `every` seconds (and the last): each report is a message the page processes on its main
    thread, so a report per template (60 per class list) had a browser on the same cores take CPU
    time from the encoding it reports on."""
    last = time.perf_counter()

    def report(done: int, total: int) -> None:
        nonlocal last
        now = time.perf_counter()
        if now - last >= every or done == total:
            last = now
            progress(done / total, desc=f"Encoding the class names: template {done} of {total}")
    return report


def live_views(models: AppModels, page: Layout) -> list[View]:
    """The views that redraw when a control moves, and after every new image or class list."""
    return [
        View(partial(views.disa_outputs, models), page.disa.controls, page.disa.outputs, "disa",
             page.disa.controls[1:], partial(views.disa_mask_outputs, models), page.disa.outputs[1:], "disa_mask"),
        View(views.gallop_outputs, page.gallop.controls, page.gallop.outputs, "gallop"),
        View(views.ood_outputs_at_default, page.ood.controls, [*page.ood.outputs, page.ood.controls[2]], "ood_score",
             page.ood.controls[2:], views.ood_outputs, page.ood.outputs, "ood"),
        View(partial(views.prediction_outputs, models), page.predictions.controls, page.predictions.outputs, None,
             page.predictions.controls, partial(views.prediction_labels, models), page.method_labels, "predictions"),
        View(partial(views.learned_outputs, models), page.learned.controls, page.learned.outputs, "learned",
             page.learned.controls[1:], partial(views.learned_words_outputs, models), page.learned.outputs[-1:],
             "learned_words"),
    ]


def wire(models: AppModels, demo: gr.Blocks, page: Layout, sample_keys: list[str]) -> None:
    """Every event of `page`, built inside `demo` (and wired inside it too)."""
    shown = live_views(models, page)
    attribution = View(partial(views.attribution_outputs, models), page.attribution.controls,
                       page.attribution.outputs, "attribution")
    show = _refresh(page.state, shown, attribution)
    _wire_inputs(models, sample_keys, page, show)
    # views answer outside gradio's queue: one request instead of a join and an event stream, and
    # two status updates instead of four, each of which makes the page resync every component an
    # event ever touched (docs/performance.md)
    for view in shown:
        view.wire(page.state, view_threads(), trigger_mode="always_last", show_progress="hidden", queue=False)
    page.attribute.click(COMPUTE.wrap(attribution.fn), [page.state, *attribution.controls], attribution.outputs,
                         api_name="attribution")
    _wire_controls_that_switch_others_off(page)
    _wire_exports(models, page)
    _wire_prompts(models, page, show)
    demo.load(**show)


def _wire_exports(models: AppModels, page: Layout) -> None:
    """Each view's export button: the view's PNG and the Python that redraws it, at the controls' values."""
    def export(view: str, session: Session | None, *controls) -> gr.File:
        return gr.File(value=export_view(models, views.require(session), view, *controls), visible=True)

    for name, panel in page.panels.items():
        panel.export.click(COMPUTE.wrap(partial(export, name)), [page.state, *panel.controls], panel.files,
                           api_name=f"export_{name}")


def _wire_prompts(models: AppModels, page: Layout, show: dict) -> None:
    """*Load these prompts*: the folder's checkpoints replace the loaded ones, then the user's image
    is encoded again and every view, label and description redrawn."""
    @COMPUTE.wrap
    def on_prompts(folder: str, old: Session | None, text: str, progress=gr.Progress()) -> tuple:
        try:
            switch_prompts(models, folder)
        except InputError as error:
            outcome = Outcome(None, str(error))
        else:
            outcome = change_classes(models, old, text, progress_reporter(progress))
        labels = [gr.Label(label=method_label(models, name)) for name in models.methods]
        return (*_after_load(models, page, outcome, old, new_image=False), untrained_banner(models),
                describe_models(models), *labels)

    outputs = [*_loaded(page), page.banner, page.models_text, *page.method_labels]
    page.load_prompts.click(on_prompts, [page.prompts_folder, page.state, page.classes], outputs,
                            api_name="load_prompts", show_progress_on=[page.progress],
                            show_progress="minimal").then(**show)


def _wire_controls_that_switch_others_off(page: Layout) -> None:
    """*Same k* switches the per-prompt k sliders off (and the shared one on), Grad-CAM the
    integration steps; a control that cannot act is disabled and says why in its label."""
    same_k, k_all, *k_each = page.gallop.controls[1:]
    kind, steps = page.attribution.controls[2:]

    def on_same_k(same: bool) -> list:
        return [gr.Slider(label=K_ALL_LABEL if same else K_ALL_OFF, interactive=same),
                *[gr.Slider(label=K_EACH_OFF.format(n=n + 1) if same else f"k{n + 1}", interactive=not same)
                  for n in range(len(k_each))]]

    def on_kind(choice: str) -> gr.Slider:
        gradients = KINDS.get(choice, choice) == "integrated_gradients"
        return gr.Slider(label=STEPS_LABEL if gradients else STEPS_OFF, interactive=gradients)

    quick = {"queue": False, "show_progress": "hidden", "api_visibility": "private"}
    same_k.input(on_same_k, same_k, [k_all, *k_each], **quick)
    kind.input(on_kind, kind, steps, **quick)


def _refresh(state: gr.State, shown: list[View], attribution: View) -> dict:
    """Event arguments that redraw every live view of the session and clear the stale attribution."""
    def refresh(session: Session | None, *values) -> tuple:
        outputs, start = [], 0
        for view in shown:
            result = view.fn(session, *values[start:start + len(view.controls)])
            outputs += result if isinstance(result, tuple) else (result,)
            start += len(view.controls)
        return (*outputs, None, ATTRIBUTION_HINT)

    return {"fn": COMPUTE.wrap(refresh, view_threads()),
            "inputs": [state, *[c for view in shown for c in view.controls]],
            "outputs": [*[o for view in shown for o in view.outputs], *attribution.outputs],
            "api_visibility": "private", "show_progress": "hidden", "queue": False}


def _loaded(page: Layout) -> list:
    """The widgets a new session updates, in the order `_after_load` returns their values."""
    return [page.state, page.status, page.progress, page.preview, *page.class_dropdowns, page.classes, page.sample,
            page.upload]


def _after_load(models: AppModels, page: Layout, outcome: Outcome, old: Session | None, classes=gr.skip(),
                sample=gr.skip(), upload=gr.skip(), rejected_upload=gr.skip(), new_image: bool = True) -> tuple:
    """The values of `_loaded(page)`: the new session (and the given classes text, sample name and
    file box; its image unless only the class list changed), or the old session with the reason
    beside the *Apply* button and over its status, and `rejected_upload`."""
    dropdowns = len(page.class_dropdowns)
    if outcome.session is None:
        reason = f"**Not loaded:** {escape(outcome.message)}"
        status = reason if old is None else f"{reason}\n\n{status_text(models, old)}"
        return old, status, reason, *[gr.skip()] * (dropdowns + 3), rejected_upload
    new = outcome.session
    preview = views.encoded(render.upscale(new.pixels, models.grid)) if new_image else gr.skip()
    return (new, status_text(models, new), "", preview, *[views.class_choices(models, new)] * dropdowns, classes,
            sample, upload)


def _wire_inputs(models: AppModels, keys: list[str], page: Layout, show: dict) -> None:
    """New image (sample name, gallery click, upload) or class list -> new session -> every view.

    A sample brings its suite's class list (unless the user keeps their own) and empties the file
    box; an upload keeps the class list and clears the sample name; a rejected upload is removed
    from the file box. While one is encoded the views are marked stale, the progress shows beside
    the *Apply* button and the button says it is busy."""

    @COMPUTE.wrap
    def on_sample(key: str, text: str, keep: bool, old: Session | None, progress=gr.Progress()) -> tuple:
        text = text if keep else ", ".join(sample_classes(key))
        outcome = load_sample(models, key, text, progress_reporter(progress))
        return _after_load(models, page, outcome, old, classes=gr.skip() if keep else text, upload=None)

    @COMPUTE.wrap
    def on_upload(path: str | None, text: str, old: Session | None, progress=gr.Progress()) -> tuple:
        outcome = load_upload(models, path, text, progress_reporter(progress))
        return _after_load(models, page, outcome, old, sample=None, rejected_upload=None)

    @COMPUTE.wrap
    def on_classes(old: Session | None, text: str, progress=gr.Progress()) -> tuple:
        outcome = change_classes(models, old, text, progress_reporter(progress))
        return _after_load(models, page, outcome, old, new_image=False)

    def on_gallery(evt: gr.SelectData) -> str:
        return keys[evt.index]

    def busy() -> gr.Button:
        return gr.Button(APPLYING, interactive=False)

    def ready() -> gr.Button:
        return gr.Button(APPLY, interactive=True)

    # progress as text beside the button, not gradio's animated indicator, which takes the
    # browser's CPU time from the encoding it reports on (docs/performance.md)
    outputs, on_progress = _loaded(page), {"show_progress_on": [page.progress], "show_progress": "minimal"}
    quick = {"queue": False, "show_progress": "hidden", "api_visibility": "private"}
    sample_inputs = [page.sample, page.classes, page.keep_own, page.state]

    def start(triggers: list, first: Callable | None = None, inputs=None, output=None):
        """The first step of an input event: mark the views stale (and set the button busy)."""
        return gr.on(triggers, first or busy, inputs, output or page.apply, js=MARK_STALE, **quick)

    def finish(event) -> None:
        event.then(**show).then(ready, None, page.apply, js=MARK_FRESH, **quick)

    finish(start([page.sample.input]).then(on_sample, sample_inputs, outputs, api_name="load_sample", **on_progress))
    finish(start([page.gallery.select], on_gallery, None, page.sample).then(busy, None, page.apply, **quick).then(
        on_sample, sample_inputs, outputs, api_visibility="private", **on_progress))
    finish(start([page.upload.upload]).then(on_upload, [page.upload, page.classes, page.state], outputs,
                                            api_name="upload", **on_progress))
    finish(start([page.apply.click, page.classes.submit]).then(on_classes, [page.state, page.classes], outputs,
                                                               api_name="set_classes", **on_progress))
