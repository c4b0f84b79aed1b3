"""Layout: where every widget sits, with its label and starting value. No event is wired here.

`build_layout` is called inside a `gr.Blocks` context and returns the widgets as a `Layout`, each
view's as a `Panel` (the controls it reads, the outputs it fills, in the order `app.views` returns
them, and its export button and files). `CSS` is the page's own style (passed to `launch`).
"""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from app import charts, render
from app.attribution import KINDS
from app.handlers import Session
from app.inputs import has_own_data
from app.models import METHOD_TITLES, AppModels
from app.ood import OOD_SCORES, THRESHOLD_RANGE, THRESHOLD_STEP
from app.summaries import describe_models, method_label, status_text, untrained_banner
from app.views import class_options

TITLE = "VLP Lab — what do DiSa and GalLoP look at?"
HOW_IT_WORKS = """
Each new image or class list is encoded once; sliders re-threshold the cached scores. Only the DiSa
masked prediction runs the image tower again (prompted and frozen) on the masked image. Picking a
sample switches the class list to its suite's unless *Keep my own class list* is ticked.
"""
SWITCH_HELP = """
**Switching model** (restart the app):

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
EXPORT_LABEL = "Download this view: PNG + Python"
K_ALL_LABEL = "k (all prompts)"
K_ALL_OFF = "k (all prompts): tick *Same k* to use it"
K_EACH_OFF = "k{n}: off while *Same k* is ticked"
THRESHOLD_LABEL = "Threshold (× chance level; set to 95 % TPR on the suite's images when the score, T or the classes change)"
STEPS_LABEL = "Integration steps"
STEPS_OFF = "Integration steps: integrated gradients only"
STALE = "stale"  # the class the views' column takes while a new image or class list is encoded
CSS = f"""
#samples .grid-container {{ grid-template-columns: repeat(auto-fill, minmax(84px, 1fr)) !important; }}
#samples .grid-wrap {{ overflow-y: auto; }}
#gallop-maps .fixed-height {{ min-height: 0 !important; max-height: none !important; }}
#gallop-maps .thumbnail-item {{ aspect-ratio: {render.DISPLAY + render.BAR_WIDTH} / {render.DISPLAY}; }}
#views.{STALE} {{ opacity: 0.45; pointer-events: none; transition: opacity 0.2s; }}
#views.{STALE}::before {{ content: "Encoding the new image or class list: the views below still show the previous one";
  display: block; font-weight: 600; padding: 4px 8px; }}
#class-progress {{ min-height: 2.2em; }}
"""
MARK_STALE = f"() => document.getElementById('views')?.classList.add('{STALE}')"
MARK_FRESH = f"() => document.getElementById('views')?.classList.remove('{STALE}')"


@dataclass
class Panel:
    """One view's widgets: the controls it reads, the outputs it fills, and its export button and files."""

    controls: list
    outputs: list
    export: gr.Button
    files: gr.File


@dataclass
class Layout:
    """Every widget an event reads or fills."""

    state: gr.State
    banner: gr.Markdown
    gallery: gr.Gallery
    sample: gr.Dropdown
    upload: gr.File
    classes: gr.Textbox
    keep_own: gr.Checkbox
    apply: gr.Button
    progress: gr.Markdown
    preview: gr.Image
    status: gr.Markdown
    disa: Panel
    gallop: Panel
    ood: Panel
    predictions: Panel
    learned: Panel
    attribution: Panel
    attribute: gr.Button
    models_text: gr.Markdown
    prompts_folder: gr.Textbox
    load_prompts: gr.Button

    @property
    def class_dropdowns(self) -> list[gr.Dropdown]:
        """The class pickers whose choices follow the session's class list."""
        return [self.disa.controls[0], self.gallop.controls[0], self.learned.controls[0], self.attribution.controls[1]]

    @property
    def panels(self) -> dict[str, Panel]:
        """Every view's panel by the view's name (`app.export`'s)."""
        return {"disa": self.disa, "gallop": self.gallop, "ood": self.ood, "predictions": self.predictions,
                "learned": self.learned, "attribution": self.attribution}

    @property
    def method_labels(self) -> list[gr.Label]:
        """The predictions tab's one label per method, titled with the method (and whether it is trained)."""
        return self.predictions.outputs[:-2]


def build_layout(models: AppModels, first: Session, samples: list[tuple], sample_keys: list[tuple],
                 threshold: float) -> Layout:
    """Every widget of the page, opening on session `first` (the state's value for a new user).

    samples: the gallery's (picture, caption) items; sample_keys: the samples' (caption, key) in
    the same order, the first one `first`'s; threshold: the OOD threshold the view opens with
    (× chance level)."""
    state = gr.State(lambda: first)  # a function: gradio would copy a dataclass value field by field
    gr.Markdown(f"# {TITLE}\n{HOW_IT_WORKS}")
    banner = gr.Markdown(untrained_banner(models))
    with gr.Row():
        with gr.Column(scale=1, min_width=320):
            gr.Markdown(gallery_heading())
            gallery = gr.Gallery(samples, show_label=False, columns=3, height=300, allow_preview=False, buttons=[],
                                 object_fit="contain", elem_id="samples")
            sample = gr.Dropdown(sample_keys, value=sample_keys[0][1], label="…or pick a sample by name")
            upload = gr.File(label="…or upload an image (the class list is kept)", type="filepath",
                             file_count="single", height=120)
            classes = gr.Textbox(", ".join(first.classes), lines=3,
                                 label="Classes (comma or new line separated; type novel ones too)")
            keep_own = gr.Checkbox(False, label="Keep my own class list when picking a sample")
            with gr.Row(equal_height=True):
                apply = gr.Button("Apply classes", variant="primary", scale=1, min_width=120)
                progress = gr.Markdown("", elem_id="class-progress")
            preview = gr.Image(render.upscale(first.pixels, models.grid), label="Model input",
                               interactive=False, height=200)
            status = gr.Markdown(status_text(models, first))
        with gr.Column(scale=3, elem_id="views"), gr.Tabs():
            with gr.Tab("DiSa saliency"):
                disa = _disa_tab(models, first)
            with gr.Tab("GalLoP local prompts"):
                gallop, ood = _gallop_tab(models, first, threshold)
            with gr.Tab("Live predictions"):
                predictions = _predictions_tab(models)
            with gr.Tab("What the prompts learned"):
                learned = _learned_tab(models, first)
            with gr.Tab("Attributions"):
                attribution, attribute = _attribution_tab(models, first)
            with gr.Tab("Model & checkpoints"):
                models_text, prompts_folder, load_prompts = _models_tab(models)
    return Layout(state, banner, gallery, sample, upload, classes, keep_own, apply, progress, preview, status,
                  disa, gallop, ood, predictions, learned, attribution, attribute, models_text, prompts_folder,
                  load_prompts)


def gallery_heading() -> str:
    """The gallery's heading: your own images first when `--data` gave some."""
    if has_own_data():
        return "**Your images** (test split), then **SynthWorld samples** (every suite and style): click one"
    return "**SynthWorld samples** (every suite and style): click one"


def _class_dropdown(models: AppModels, session: Session, label: str) -> gr.Dropdown:
    """A class picker; its choices follow the session's class list (`views.class_options`)."""
    choices, value = class_options(models, session)
    return gr.Dropdown(choices, value=value, label=label)


def _export(name: str) -> tuple[gr.Button, gr.File]:
    """A view's export button and the files it makes (a PNG of the view and the Python that redraws it)."""
    with gr.Row():
        button = gr.Button(EXPORT_LABEL, size="sm", scale=0, min_width=260)
        files = gr.File(label="The view as a PNG, and the Python that redraws it", file_count="multiple",
                        interactive=False, visible=False, elem_id=f"{name}-export")
    return button, files


def _disa_tab(models: AppModels, first: Session) -> Panel:
    """Saliency, mask and full-vs-masked predictions for a query class, ratio, pool and seed."""
    config = models.methods["disa"].config
    with gr.Row():
        controls = [
            _class_dropdown(models, first, "Saliency query class"),
            gr.Slider(0, 1, value=config.mask_ratio, step=0.05, label="Masking ratio ρ"),
            gr.Slider(0, 1, value=config.mask_pool, step=0.05, label="Pool γ (γ = ρ: deterministic bottom-ρ)"),
            gr.Number(0, precision=0, label="Mask seed"),
        ]
    with gr.Row():
        pictures = [gr.Image(label="Patch saliency, log scale (frozen patches × class text)", interactive=False),
                    gr.Image(label="Masked image (dark, crossed: masked patches)", interactive=False,
                             elem_id="disa-masked")]
    outputs = [*pictures, gr.Markdown(elem_id="disa-summary"),
               gr.Dataframe(label="Class probabilities: full vs masked, prompted vs frozen", interactive=False,
                            elem_id="disa-table")]
    return Panel(controls, outputs, *_export("disa"))


def _gallop_tab(models: AppModels, first: Session, threshold: float) -> tuple[Panel, Panel]:
    """The region-map view (class, top-k per prompt or for all) and the OOD view (score, T, threshold)."""
    patches = models.num_patches
    with gr.Row():
        choice = _class_dropdown(models, first, "Class")
        same_k = gr.Checkbox(False, label="Same k for every local prompt")
        k_all = gr.Slider(1, patches, value=min(10, patches), step=1, label=K_ALL_OFF, interactive=False,
                          elem_id="k-all")
    with gr.Row():
        k_each = [gr.Slider(1, patches, value=min(k, patches), step=1, label=f"k{n + 1}")
                  for n, k in enumerate(models.methods["gallop"].config.topk)]
    gr.Markdown("Region map of each local prompt (its top-k patches boxed)")
    maps = gr.Gallery(show_label=False, columns=len(k_each), rows=1, height="auto", object_fit="contain",
                      allow_preview=True, buttons=[], elem_id="gallop-maps")
    summary = gr.Markdown(elem_id="gallop-summary")
    with gr.Row():
        heads = [gr.Label(num_top_classes=5, label=f"GalLoP {head}") for head in ("global", "local", "combined")]
    gallop = Panel([choice, same_k, k_all, *k_each], [maps, *heads, summary], *_export("gallop"))
    gr.Markdown("#### OOD detection (GalLoP's cosines, higher = in-distribution)")
    with gr.Row():
        controls = [gr.Radio(list(OOD_SCORES), value="GL-MCM", label="Score"),
                    gr.Slider(0.01, 1, value=1.0, step=0.01, label="Temperature T"),
                    gr.Slider(*THRESHOLD_RANGE, value=threshold, step=THRESHOLD_STEP, label=THRESHOLD_LABEL)]
    with gr.Row():
        verdict = gr.Markdown(elem_id="ood-verdict")
        # fixed heights, the charts' and their frames' padding: the page then lays out nothing anew
        # when new charts arrive (docs/performance.md)
        with gr.Column():
            charts_shown = [gr.Image(label="The suite's test images (ID) and `ood` images (OOD)", interactive=False,
                                     show_label=False, elem_id="ood-histogram", height=charts.HISTOGRAM_SIZE[1] + 8),
                            gr.Image(label="ROC curve: TPR (ID kept) against FPR (OOD kept)", interactive=False,
                                     elem_id="ood-roc", height=charts.ROC_SIZE[1] + 40)]
    return gallop, Panel(controls, [verdict, *charts_shown], *_export("ood"))


def _predictions_tab(models: AppModels) -> Panel:
    """Every method's prediction marked right or wrong, their top classes, and a table of all methods."""
    top_k = gr.Slider(1, 10, value=5, step=1, label="Classes shown per method")
    marks = gr.Markdown(elem_id="predictions-marks")
    names, labels = list(models.methods), []
    for row in (names[:3], names[3:]):
        with gr.Row():
            labels += [gr.Label(num_top_classes=10, label=method_label(models, name), elem_id=f"predictions-{name}")
                       for name in row]
    table = gr.Dataframe(label="All methods side by side (top classes by mean probability)", interactive=False)
    return Panel([top_k], [*labels, marks, table], *_export("predictions"))


def _learned_tab(models: AppModels, first: Session) -> Panel:
    """For one class: each Explainable method's zero-shot map, learned map and difference; the
    learned contexts' nearest words; how alike GalLoP's local prompts are."""
    with gr.Row():
        with_words = [METHOD_TITLES[name] for name, method in models.methods.items() if method.text_contexts()]
        controls = [_class_dropdown(models, first, "Class"),
                    gr.Dropdown(with_words, value=METHOD_TITLES["gallop"], label="Nearest words of the contexts of")]
    pictures = []
    for name in first.explanations:
        with gr.Row():
            pictures += [gr.Image(label=f"{METHOD_TITLES[name]}: {what}", interactive=False,
                                  elem_id=f"learned-{name}-{part}")
                         for part, what in (("zero_shot", "zero-shot"), ("learned", "learned prompts"),
                                            ("difference", "learned − zero-shot"))]
    outputs = [*pictures, gr.Markdown(elem_id="learned-summary"),
               gr.Dataframe(label="Each learned context vector's nearest vocabulary words (CoOp's reading; "
                                  "distance in the token embedding space)", interactive=False, elem_id="learned-words")]
    return Panel(controls, outputs, *_export("learned"))


def _attribution_tab(models: AppModels, first: Session) -> tuple[Panel, gr.Button]:
    """The attribution view and its button: it runs on a press only (a backward pass per press)."""
    with gr.Row():
        controls = [gr.Dropdown(list(METHOD_TITLES.values()), value=METHOD_TITLES["disa"], label="Method"),
                    _class_dropdown(models, first, "Class"),
                    gr.Radio(list(KINDS), value=next(iter(KINDS)), label="Attribution"),
                    gr.Slider(4, 64, value=16, step=4, label=STEPS_LABEL, elem_id="ig-steps")]
    button = gr.Button("Compute attribution", variant="primary")
    with gr.Row():
        outputs = [gr.Image(label="Attribution", interactive=False), gr.Markdown(ATTRIBUTION_HINT)]
    return Panel(controls, outputs, *_export("attribution")), button


def _models_tab(models: AppModels) -> tuple[gr.Markdown, gr.Textbox, gr.Button]:
    """What is loaded, and a folder of prompt checkpoints to load instead (no restart)."""
    text = gr.Markdown(describe_models(models))
    with gr.Row(equal_height=True):
        folder = gr.Textbox(str(models.prompts_dir or ""), label="Prompt checkpoints folder (one sub-folder per "
                            "method). Loading switches the prompts for everyone using this app; the others see "
                            "them from their next image or class list.", scale=4)
        load = gr.Button("Load these prompts", scale=1)
    gr.Markdown(SWITCH_HELP)
    return text, folder, load
