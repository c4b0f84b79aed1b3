"""Layout and wiring of the app: widgets call the handlers and show what `render` draws.

`build_app(models)` is the app factory; tests pass a tiny model and their own prompts. Each user
has one `gr.State` holding their `Session`; the shared `AppModels` are only read (under its lock).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Callable

import gradio as gr
import numpy as np
import pandas as pd

from app import render
from app.attribution import KINDS, attribution_view
from app.handlers import (
    DEFAULT_CLASSES,
    OOD_SCORES,
    PREDICTED,
    Outcome,
    Session,
    change_classes,
    describe_models,
    disa_view,
    gallop_view,
    load_sample,
    load_upload,
    ood_view,
    predictions_view,
)
from app.inputs import sample_caption, sample_keys, read_sample
from app.models import METHOD_TITLES, UNTRAINED, AppModels

TITLE = "VLP Lab — what do DiSa and GalLoP look at?"
DISA_TABLE_ROWS = 8
SWITCH_HELP = """
**Switching model or prompts** (restart the app):

```bash
python app/main.py                                   # bundled model, prompts from assets/prompts/<method>/
python app/main.py --model vlp-tiny --prompts runs/tiny-prompts
python app/main.py --model ViT-B-16-quickgelu --pretrained openai --prompts runs/vitb16
python app/main.py --host 0.0.0.0 --port 7860       # serve on the network (default: 127.0.0.1 only)
```

Prompt checkpoints come from `vlp train --method M --data shapes --classes base --out assets/prompts/M`;
a method without a usable checkpoint runs with its initial prompts and is marked untrained.
"""
ATTRIBUTION_HINT = "Choose a method, class and kind, then press *Compute attribution*."
OOD_THRESHOLD = 1.15  # default threshold, in multiples of the score's chance level (just above chance at T = 1)
HOW_IT_WORKS = """
Each new image or class list is encoded once; sliders re-threshold the cached scores. Only the DiSa
masked prediction runs the image tower again (prompted and frozen) on the masked image.
"""


def _pct(value: float) -> str:
    return f"{100 * value:.1f} %"


def _class_choices(session: Session) -> gr.Dropdown:
    """A class dropdown reset to the session's classes, showing the prediction."""
    return gr.Dropdown(choices=[PREDICTED, *session.classes], value=PREDICTED)


def _method_label(models: AppModels, name: str) -> str:
    """A method's title, marked when it runs without trained prompts."""
    return f"{METHOD_TITLES[name]} — {UNTRAINED}" if models.status[name] == UNTRAINED else METHOD_TITLES[name]


def _untrained_banner(models: AppModels) -> str:
    """A warning line naming the methods that run with initial prompts ("" when all are trained)."""
    untrained = [METHOD_TITLES[name] for name, status in models.status.items() if status == UNTRAINED]
    if not untrained:
        return ""
    return (f"\n> **{', '.join(untrained)}: {UNTRAINED}** (no usable prompt checkpoint; see *Model & "
            f"checkpoints*).")


def _require(session: Session | None) -> Session:
    if session is None:
        raise gr.Error("Pick a sample or upload an image first.")
    return session


# ---------------------------------------------------------------- views (handler -> widget values)

def disa_outputs(models: AppModels, session: Session | None, class_choice: str | None, ratio: float,
                 pool: float, seed: float) -> tuple:
    """(saliency picture, masked picture, summary Markdown, probability table)."""
    session = _require(session)
    view = disa_view(models, session, class_choice, ratio, pool, int(seed or 0))
    grid, name = view["grid"], session.classes[view["class_index"]]
    log_saliency = np.log(np.maximum(view["saliency"], np.finfo(np.float32).tiny))  # = cos / τ + const
    salient = render.outline_object(render.heatmap(session.pixels, log_saliency, grid), session.mask)
    masked = render.outline_object(
        render.fill_patches(render.upscale(session.pixels, grid), view["masked"], grid), session.mask)
    probs = view["probabilities"]
    order = np.argsort(-probs["prompted_full"], kind="stable")[:DISA_TABLE_ROWS]
    table = pd.DataFrame({"class": [session.classes[i] for i in order],
                          **{key.replace("_", " "): [_pct(probs[key][i]) for i in order] for key in probs}})
    return salient, masked, _disa_summary(view, name, session), table


def _disa_summary(view: dict, name: str, session: Session) -> str:
    """Markdown: what was masked, how the predictions moved, how the saliency meets the object."""
    probs, classes = view["probabilities"], session.classes
    top = {key: classes[int(np.argmax(p))] for key, p in probs.items()}
    lines = [
        f"Saliency query: **{name}**. Masked **{len(view['masked'])}** of {view['grid'] ** 2} patches "
        f"(ρ = {view['ratio']:.2f}) at random among the {round(view['pool'] * view['grid'] ** 2)} least "
        f"salient (γ = {view['pool']:.2f}).",
        f"- DiSa (prompted): full → **{top['prompted_full']}** {_pct(probs['prompted_full'].max())}, "
        f"masked → **{top['prompted_masked']}** {_pct(probs['prompted_masked'].max())}",
        f"- Frozen CLIP (60-template ensemble): full → **{top['frozen_full']}** "
        f"{_pct(probs['frozen_full'].max())}, masked → **{top['frozen_masked']}** {_pct(probs['frozen_masked'].max())}",
    ]
    found = view["grounding"]
    if found is not None:
        lines.append(
            f"- Ground truth (green outline): most salient patch {'on' if found['pointing'] else 'off'} the "
            f"object; IoU of the {found['object_patches']} most salient patches with the object "
            f"**{found['iou']:.2f}**; masked patches on the object: {found['masked_on_object']}")
    lines += [f"- {notice}" for notice in view["notices"]]
    return "\n".join(lines)


def gallop_outputs(session: Session | None, class_choice: str | None, same_k: bool, k_all: float,
                   *ks: float) -> tuple:
    """(region-map gallery, global / local / combined predictions, summary Markdown)."""
    session = _require(session)
    view = gallop_view(session, class_choice, int(k_all) if same_k else [int(k) for k in ks])
    grid = view["grid"]
    items = []
    for n, (scores, selected) in enumerate(zip(view["maps"], view["selected"])):
        picture = render.outline_patches(render.heatmap(session.pixels, scores, grid), selected, grid)
        caption = f"local prompt {n + 1}: top-{view['ks'][n]}, score {view['prompt_scores'][n]:.3f}"
        if view["grounding"] is not None:
            found = view["grounding"][n]
            caption += f", IoU {found['iou']:.2f}, pointing {'hit' if found['pointing'] else 'miss'}"
        items.append((render.outline_object(picture, session.mask), caption))
    heads = [{name: float(p) for name, p in zip(session.classes, view["probabilities"][head])}
             for head in ("global", "local", "combined")]
    summary = (f"Region maps for **{session.classes[view['class_index']]}**: cosine of each patch's local "
               f"feature with each local prompt; cyan boxes mark its top-k patches, whose mean is the prompt's "
               f"score. Combined = (global + local) / 2.")
    return items, *heads, summary


def ood_outputs(session: Session | None, score: str, temperature: float, threshold: float) -> str:
    """Markdown: the three ID-ness scores and the verdict for the chosen one."""
    view = ood_view(_require(session), score, temperature, threshold)
    verdict = "in-distribution (ID)" if view["in_distribution"] else "out-of-distribution (OOD)"
    rows = [f"| {name} | {value:.4f} | {view['chance'][name]:.4f} |" for name, value in view["scores"].items()]
    return "\n".join([
        f"### {verdict}",
        f"{view['score']} = {view['scores'][view['score']]:.4f} {'≥' if view['in_distribution'] else '<'} "
        f"threshold {threshold:.2f} × chance = {view['cutoff']:.4f}",
        "", "| score | value | chance level |", "|---|---|---|", *rows,
    ])


def prediction_outputs(models: AppModels, session: Session | None, top_k: float) -> tuple:
    """(one label per method, the side-by-side table)."""
    view = predictions_view(models, _require(session), int(top_k))
    table = pd.DataFrame(view["rows"], columns=view["headers"])
    return *view["top"].values(), table


def attribution_outputs(models: AppModels, session: Session | None, method_title: str,
                        class_choice: str | None, kind: str, steps: float) -> tuple:
    """(attribution picture, Markdown)."""
    session = _require(session)
    method = {title: name for name, title in METHOD_TITLES.items()}.get(method_title, method_title)
    view = attribution_view(models, session, method, class_choice, kind, int(steps))
    values = view["map"].reshape(-1) if view["kind"] == "gradcam" else view["map"]
    picture = render.outline_object(render.heatmap(session.pixels, values, models.grid), session.mask)
    note = (f"{kind} of **{METHOD_TITLES[method]}**'s logit for **{session.classes[view['class_index']]}** "
            f"({view['seconds']:.2f} s).")
    if view["delta"] is not None:
        note += f" Completeness error {view['delta']:.3g} (smaller is better; raise the steps to reduce it)."
    return picture, note


# ---------------------------------------------------------------- inputs (new image or class list)

def _after_load(models: AppModels, outcome: Outcome, old: Session | None) -> tuple:
    """(state, status, preview, 3 class dropdowns): the new session, or the old one and the reason."""
    if outcome.session is None:
        gr.Warning(outcome.message.replace("**", ""))
        return old, outcome.message, gr.skip(), gr.skip(), gr.skip(), gr.skip()
    new = outcome.session
    return (new, outcome.message, render.upscale(new.pixels, models.grid),
            _class_choices(new), _class_choices(new), _class_choices(new))


@dataclass
class View:
    """A live view: `fn(session, *controls) -> outputs` runs again whenever a control moves."""

    fn: Callable
    controls: list
    outputs: list
    api_name: str


def _class_dropdown(label: str) -> gr.Dropdown:
    """A class picker; its choices follow the session's class list."""
    return gr.Dropdown([PREDICTED, *DEFAULT_CLASSES], value=PREDICTED, label=label)


def _disa_tab(models: AppModels) -> View:
    """Saliency, mask and full-vs-masked predictions for a query class, ratio, pool and seed."""
    config = models.methods["disa"].config
    with gr.Row():
        controls = [
            _class_dropdown("Saliency query class"),
            gr.Slider(0, 1, value=config.mask_ratio, step=0.05, label="Masking ratio ρ"),
            gr.Slider(0, 1, value=config.mask_pool, step=0.05, label="Pool γ (γ = ρ: deterministic bottom-ρ)"),
            gr.Number(0, precision=0, label="Mask seed", minimum=0),
        ]
    with gr.Row():
        pictures = [gr.Image(label="Patch saliency, log scale (frozen patches × class text)", interactive=False),
                    gr.Image(label="Masked image (grey: masked patches)", interactive=False)]
    outputs = [*pictures, gr.Markdown(),
               gr.Dataframe(label="Class probabilities: full vs masked, prompted vs frozen", interactive=False)]
    return View(partial(disa_outputs, models), controls, outputs, "disa")


def _gallop_tab(models: AppModels) -> tuple[View, View]:
    """The region-map view (class, top-k per prompt or for all) and the OOD view (score, T, threshold)."""
    patches = models.num_patches
    with gr.Row():
        choice = _class_dropdown("Class")
        same_k = gr.Checkbox(False, label="Same k for every local prompt")
        k_all = gr.Slider(1, patches, value=min(10, patches), step=1, label="k (all prompts)")
    with gr.Row():
        k_each = [gr.Slider(1, patches, value=min(k, patches), step=1, label=f"k{n + 1}")
                  for n, k in enumerate(models.methods["gallop"].config.topk)]
    maps = gr.Gallery(label="Region map of each local prompt (top-k patches boxed)", columns=len(k_each),
                      height=300, allow_preview=True)
    summary = gr.Markdown()
    with gr.Row():
        heads = [gr.Label(num_top_classes=5, label=f"GalLoP {head}") for head in ("global", "local", "combined")]
    gallop = View(gallop_outputs, [choice, same_k, k_all, *k_each], [maps, *heads, summary], "gallop")
    gr.Markdown("#### OOD detection (GalLoP's cosines, higher = in-distribution)")
    with gr.Row():
        controls = [gr.Radio(list(OOD_SCORES), value="GL-MCM", label="Score"),
                    gr.Slider(0.01, 1, value=1.0, step=0.01, label="Temperature T"),
                    gr.Slider(1, 4, value=OOD_THRESHOLD, step=0.01, label="Threshold (× chance level)")]
    return gallop, View(ood_outputs, controls, [gr.Markdown()], "ood")


def _predictions_tab(models: AppModels) -> View:
    """Every method's top classes side by side, and a table of all methods."""
    top_k = gr.Slider(1, 10, value=5, step=1, label="Classes shown per method")
    names, labels = list(models.methods), []
    for row in (names[:3], names[3:]):
        with gr.Row():
            labels += [gr.Label(num_top_classes=10, label=_method_label(models, name)) for name in row]
    table = gr.Dataframe(label="All methods side by side (top classes by mean probability)", interactive=False)
    return View(partial(prediction_outputs, models), [top_k], [*labels, table], "predictions")


def _attribution_tab(models: AppModels) -> tuple[View, gr.Button]:
    """The attribution view and its button: it runs on a press only (a backward pass per press)."""
    with gr.Row():
        controls = [gr.Dropdown(list(METHOD_TITLES.values()), value=METHOD_TITLES["disa"], label="Method"),
                    _class_dropdown("Class"),
                    gr.Radio(list(KINDS), value=next(iter(KINDS)), label="Attribution"),
                    gr.Slider(4, 64, value=16, step=4, label="Integration steps")]
    button = gr.Button("Compute attribution", variant="primary")
    with gr.Row():
        outputs = [gr.Image(label="Attribution", interactive=False), gr.Markdown(ATTRIBUTION_HINT)]
    return View(partial(attribution_outputs, models), controls, outputs, "attribution"), button


def build_app(models: AppModels) -> gr.Blocks:
    """The app over already loaded models (nothing is trained or downloaded here). It opens on the
    first SynthWorld sample with the `shapes` classes, encoded once here and copied per user."""
    keys = sample_keys()
    classes_text = ", ".join(DEFAULT_CLASSES)
    first = load_sample(models, keys[0], classes_text)
    gallery_items = [(render.upscale(read_sample(key, models.bundle.image_size).pixels, models.grid),
                      sample_caption(key)) for key in keys]

    with gr.Blocks(title="VLP Lab") as demo:
        state = gr.State(first.session)
        gr.Markdown(f"# {TITLE}\n{HOW_IT_WORKS}{_untrained_banner(models)}")
        with gr.Row():
            with gr.Column(scale=1, min_width=320):
                gallery = gr.Gallery(gallery_items, label="SynthWorld samples (every suite and style): click one",
                                     columns=6, height=250, allow_preview=False, object_fit="contain")
                sample = gr.Dropdown(keys, value=keys[0], label="…or pick a sample by name")
                upload = gr.File(label="…or upload an image", type="filepath", file_count="single", height=120)
                classes = gr.Textbox(classes_text, lines=3,
                                     label="Classes (comma or new line separated; type novel ones too)")
                apply = gr.Button("Apply classes", variant="primary")
                preview = gr.Image(render.upscale(first.session.pixels, models.grid), label="Model input",
                                   interactive=False, height=200)
                status = gr.Markdown(first.message)
            with gr.Column(scale=3), gr.Tabs():
                with gr.Tab("DiSa saliency"):
                    disa = _disa_tab(models)
                with gr.Tab("GalLoP local prompts"):
                    gallop, ood = _gallop_tab(models)
                with gr.Tab("Live predictions"):
                    predictions = _predictions_tab(models)
                with gr.Tab("Attributions"):
                    attribution, compute = _attribution_tab(models)
                with gr.Tab("Model & checkpoints"):
                    gr.Markdown(describe_models(models) + "\n" + SWITCH_HELP)
        live_views = [disa, gallop, ood, predictions]
        loaded = [state, status, preview, disa.controls[0], gallop.controls[0], attribution.controls[1]]
        show = _refresh(state, live_views, attribution)
        _wire_inputs(models, keys, state, (sample, gallery, upload, classes, apply), loaded, show)
        live = {"trigger_mode": "always_last", "show_progress": "hidden"}
        for view in live_views:
            gr.on([control.input for control in view.controls], view.fn, [state, *view.controls], view.outputs,
                  api_name=view.api_name, **live)
        compute.click(attribution.fn, [state, *attribution.controls], attribution.outputs, api_name="attribution")
        demo.load(**show)
    return demo


def _refresh(state: gr.State, views: list[View], attribution: View) -> dict:
    """Event arguments that redraw every live view of the session and clear the stale attribution."""
    def refresh(session: Session | None, *values) -> tuple:
        outputs, start = [], 0
        for view in views:
            result = view.fn(session, *values[start:start + len(view.controls)])
            outputs += result if isinstance(result, tuple) else (result,)
            start += len(view.controls)
        return (*outputs, None, ATTRIBUTION_HINT)

    return {"fn": refresh, "inputs": [state, *[c for view in views for c in view.controls]],
            "outputs": [*[o for view in views for o in view.outputs], *attribution.outputs],
            "api_visibility": "private"}


def _wire_inputs(models: AppModels, keys: list[str], state: gr.State, widgets: tuple, loaded: list,
                 show: dict) -> None:
    """New image (sample name, gallery click, upload) or class list -> new session -> every view."""
    sample, gallery, upload, classes, apply = widgets

    def on_sample(key: str, text: str, old: Session | None) -> tuple:
        return _after_load(models, load_sample(models, key, text), old)

    def on_upload(path: str | None, text: str, old: Session | None) -> tuple:
        return _after_load(models, load_upload(models, path, text), old)

    def on_classes(old: Session | None, text: str) -> tuple:
        return _after_load(models, change_classes(models, old, text), old)

    def on_gallery(evt: gr.SelectData) -> str:
        return keys[evt.index]

    sample.input(on_sample, [sample, classes, state], loaded, api_name="load_sample").then(**show)
    gallery.select(on_gallery, None, sample, api_visibility="private").then(
        on_sample, [sample, classes, state], loaded, api_visibility="private").then(**show)
    upload.upload(on_upload, [upload, classes, state], loaded, api_name="upload").then(**show)
    gr.on([apply.click, classes.submit], on_classes, [state, classes], loaded, api_name="set_classes").then(**show)
