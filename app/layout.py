"""Layout: where every widget sits, with its label and starting value. No event is wired here.

`build_layout` is called inside a `gr.Blocks` context and returns the widgets as a `Layout`, each
view's as a `Panel` (the controls it reads, the outputs it fills, in the order `app.views` returns
them).
"""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from app import render
from app.attribution import KINDS
from app.handlers import OOD_SCORES, PREDICTED, Session
from app.inputs import sample_caption
from app.models import METHOD_TITLES, AppModels
from app.summaries import describe_models, method_label, status_text, untrained_banner

TITLE = "VLP Lab — what do DiSa and GalLoP look at?"
HOW_IT_WORKS = """
Each new image or class list is encoded once; sliders re-threshold the cached scores. Only the DiSa
masked prediction runs the image tower again (prompted and frozen) on the masked image. Picking a
sample switches the class list to its suite's unless *Keep my own class list* is ticked.
"""
SWITCH_HELP = """
**Switching model or prompts** (restart the app):

```bash
python app/main.py                                   # bundled model, prompts from assets/prompts/<method>/
python app/main.py --model vlp-tiny --prompts runs/tiny-prompts
python app/main.py --model ViT-B-16-quickgelu --pretrained openai --prompts runs/vitb16
python app/main.py --host 0.0.0.0 --port 7860       # serve on the network (default: 127.0.0.1 only)
python app/main.py --share                           # also a public gradio link
```

Prompt checkpoints come from `vlp train --method M --data SUITE --classes base --out DIR/M`; the table
above says what each loaded one was trained on. A method without a usable checkpoint runs with its
initial prompts and is marked untrained.
"""
ATTRIBUTION_HINT = "Choose a method, class and kind, then press *Compute attribution*."


@dataclass
class Panel:
    """One view's widgets: the controls it reads and the outputs it fills."""

    controls: list
    outputs: list


@dataclass
class Layout:
    """Every widget an event reads or fills."""

    state: gr.State
    gallery: gr.Gallery
    sample: gr.Dropdown
    upload: gr.File
    classes: gr.Textbox
    keep_own: gr.Checkbox
    apply: gr.Button
    preview: gr.Image
    status: gr.Markdown
    disa: Panel
    gallop: Panel
    ood: Panel
    predictions: Panel
    attribution: Panel
    attribute: gr.Button

    @property
    def class_dropdowns(self) -> list[gr.Dropdown]:
        """The class pickers whose choices follow the session's class list."""
        return [self.disa.controls[0], self.gallop.controls[0], self.attribution.controls[1]]


def build_layout(models: AppModels, first: Session, samples: list[tuple], sample_keys: list[str],
                 threshold: float) -> Layout:
    """Every widget of the page, opening on session `first` (the state's value for a new user).

    samples: the gallery's (picture, caption) items, in the order of `sample_keys`; threshold: the
    OOD threshold the view opens with (× chance level)."""
    state = gr.State(lambda: first)  # a function: gradio would copy a dataclass value field by field
    gr.Markdown(f"# {TITLE}\n{HOW_IT_WORKS}{untrained_banner(models)}")
    with gr.Row():
        with gr.Column(scale=1, min_width=320):
            gallery = gr.Gallery(samples, label="SynthWorld samples (every suite and style): click one",
                                 columns=4, height=250, allow_preview=False, object_fit="contain")
            sample = gr.Dropdown([(sample_caption(key), key) for key in sample_keys], value=sample_keys[0],
                                 label="…or pick a sample by name")
            upload = gr.File(label="…or upload an image (the class list is kept)", type="filepath",
                             file_count="single", height=120)
            classes = gr.Textbox(", ".join(first.classes), lines=3,
                                 label="Classes (comma or new line separated; type novel ones too)")
            keep_own = gr.Checkbox(False, label="Keep my own class list when picking a sample")
            apply = gr.Button("Apply classes", variant="primary")
            preview = gr.Image(render.upscale(first.pixels, models.grid), label="Model input",
                               interactive=False, height=200)
            status = gr.Markdown(status_text(models, first))
        with gr.Column(scale=3), gr.Tabs():
            with gr.Tab("DiSa saliency"):
                disa = _disa_tab(models, first.classes)
            with gr.Tab("GalLoP local prompts"):
                gallop, ood = _gallop_tab(models, first.classes, threshold)
            with gr.Tab("Live predictions"):
                predictions = _predictions_tab(models)
            with gr.Tab("Attributions"):
                attribution, attribute = _attribution_tab(first.classes)
            with gr.Tab("Model & checkpoints"):
                gr.Markdown(describe_models(models) + "\n" + SWITCH_HELP)
    return Layout(state, gallery, sample, upload, classes, keep_own, apply, preview, status,
                  disa, gallop, ood, predictions, attribution, attribute)


def _class_dropdown(label: str, classes: list[str]) -> gr.Dropdown:
    """A class picker; its choices follow the session's class list."""
    return gr.Dropdown([PREDICTED, *classes], value=PREDICTED, label=label)


def _disa_tab(models: AppModels, classes: list[str]) -> Panel:
    """Saliency, mask and full-vs-masked predictions for a query class, ratio, pool and seed."""
    config = models.methods["disa"].config
    with gr.Row():
        controls = [
            _class_dropdown("Saliency query class", classes),
            gr.Slider(0, 1, value=config.mask_ratio, step=0.05, label="Masking ratio ρ"),
            gr.Slider(0, 1, value=config.mask_pool, step=0.05, label="Pool γ (γ = ρ: deterministic bottom-ρ)"),
            gr.Number(0, precision=0, label="Mask seed"),
        ]
    with gr.Row():
        pictures = [gr.Image(label="Patch saliency, log scale (frozen patches × class text)", interactive=False),
                    gr.Image(label="Masked image (grey: masked patches)", interactive=False, elem_id="disa-masked")]
    return Panel(controls, [*pictures, gr.Markdown(),
                            gr.Dataframe(label="Class probabilities: full vs masked, prompted vs frozen",
                                         interactive=False, elem_id="disa-table")])


def _gallop_tab(models: AppModels, classes: list[str], threshold: float) -> tuple[Panel, Panel]:
    """The region-map view (class, top-k per prompt or for all) and the OOD view (score, T, threshold)."""
    patches = models.num_patches
    with gr.Row():
        choice = _class_dropdown("Class", classes)
        same_k = gr.Checkbox(False, label="Same k for every local prompt")
        k_all = gr.Slider(1, patches, value=min(10, patches), step=1, label="k (all prompts)")
    with gr.Row():
        k_each = [gr.Slider(1, patches, value=min(k, patches), step=1, label=f"k{n + 1}")
                  for n, k in enumerate(models.methods["gallop"].config.topk)]
    maps = gr.Gallery(label="Region map of each local prompt (top-k patches boxed)", columns=len(k_each),
                      height=300, allow_preview=True, elem_id="gallop-maps")
    summary = gr.Markdown()
    with gr.Row():
        heads = [gr.Label(num_top_classes=5, label=f"GalLoP {head}") for head in ("global", "local", "combined")]
    gallop = Panel([choice, same_k, k_all, *k_each], [maps, *heads, summary])
    gr.Markdown("#### OOD detection (GalLoP's cosines, higher = in-distribution)")
    with gr.Row():
        controls = [gr.Radio(list(OOD_SCORES), value="GL-MCM", label="Score"),
                    gr.Slider(0.01, 1, value=1.0, step=0.01, label="Temperature T"),
                    gr.Slider(1, 4, value=round(threshold, 2), step=0.01, label="Threshold (× chance level)")]
    with gr.Row():
        # a fixed height, the chart's and its frame's padding: the page then lays out nothing anew
        # when a new histogram arrives (docs/performance.md)
        outputs = [gr.Markdown(), gr.Image(label="The suite's test images (ID) and `ood` images (OOD)",
                                           interactive=False, show_label=False, elem_id="ood-histogram",
                                           height=render.HISTOGRAM_SIZE[1] + 8)]
    return gallop, Panel(controls, outputs)


def _predictions_tab(models: AppModels) -> Panel:
    """Every method's top classes side by side, and a table of all methods."""
    top_k = gr.Slider(1, 10, value=5, step=1, label="Classes shown per method")
    names, labels = list(models.methods), []
    for row in (names[:3], names[3:]):
        with gr.Row():
            labels += [gr.Label(num_top_classes=10, label=method_label(models, name), elem_id=f"predictions-{name}")
                       for name in row]
    table = gr.Dataframe(label="All methods side by side (top classes by mean probability)", interactive=False)
    return Panel([top_k], [*labels, table])


def _attribution_tab(classes: list[str]) -> tuple[Panel, gr.Button]:
    """The attribution view and its button: it runs on a press only (a backward pass per press)."""
    with gr.Row():
        controls = [gr.Dropdown(list(METHOD_TITLES.values()), value=METHOD_TITLES["disa"], label="Method"),
                    _class_dropdown("Class", classes),
                    gr.Radio(list(KINDS), value=next(iter(KINDS)), label="Attribution"),
                    gr.Slider(4, 64, value=16, step=4, label="Integration steps")]
    button = gr.Button("Compute attribution", variant="primary")
    with gr.Row():
        outputs = [gr.Image(label="Attribution", interactive=False), gr.Markdown(ATTRIBUTION_HINT)]
    return Panel(controls, outputs), button
