"""Layout and wiring of the app: widgets call the handlers and show what `render` draws.

`build_app(models)` is the app factory; tests pass a tiny model and their own prompts. Each user
has one `gr.State` holding their `Session`; the shared `AppModels` are only read (under its lock).
Every event runs on the one compute thread (`app.compute`), so a handler costs in the server what
it costs alone.
Text a user typed (class names, file names) reaches Markdown only through `escape`; shares and
probabilities are shown as percentages everywhere.
"""

from __future__ import annotations

import hashlib
import io
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Callable

import gradio as gr
import numpy as np
import pandas as pd
import torch
from PIL import Image
from gradio.utils import get_upload_folder

from app import render
from app.attribution import KINDS, attribution_view
from app.compute import COMPUTE
from app.handlers import (
    OOD_SCORES,
    PREDICTED,
    Outcome,
    Session,
    change_classes,
    disa_view,
    gallop_view,
    landing_sample,
    load_sample,
    load_upload,
    ood_view,
    predictions_view,
    threshold_keeping,
)
from app.inputs import UPLOAD, read_sample, sample_caption, sample_classes, sample_keys, thumbnail_caption
from app.models import METHOD_TITLES, UNTRAINED, AppModels
from vlp_core.backbone import DEFAULT_MODEL

TITLE = "VLP Lab — what do DiSa and GalLoP look at?"
DISA_TABLE_ROWS = 8
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
BUNDLED_NOTE = (
    "*The bundled synth-clip has only ever seen SynthWorld's rendered shapes, colours, patterns and styles: "
    "on a photo its answers mean little. For real images, restart the app with a real CLIP, e.g. "
    "`python app/main.py --model ViT-B-16-quickgelu --pretrained openai` (downloaded once), or any open_clip "
    "`--model` with a `--pretrained` tag or checkpoint file.*"
)
ATTRIBUTION_HINT = "Choose a method, class and kind, then press *Compute attribution*."
KEPT_ID_SHARE = 0.95  # the default OOD threshold keeps this share of the default suite's ID images
OOD_THRESHOLD = 1.15  # default threshold (× chance level) when there is no reference to set it from
HOW_IT_WORKS = """
Each new image or class list is encoded once; sliders re-threshold the cached scores. Only the DiSa
masked prediction runs the image tower again (prompted and frozen) on the masked image. Picking a
sample switches the class list to its suite's unless *Keep my own class list* is ticked.
"""
PROGRESS_EVERY = 0.25  # seconds between two progress reports while class names are encoded
MARKUP = set("\\`*_[]<>&|$#~!")  # characters Markdown, HTML or LaTeX could read as syntax


def escape(text: object) -> str:
    """Text shown literally inside Markdown: markup characters become HTML character references."""
    return "".join(f"&#{ord(c)};" if c in MARKUP else c for c in str(text))


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


def status_text(models: AppModels, session: Session) -> str:
    """Markdown status of a session: the image, the class list (a suite's or the user's), notices,
    and for an upload on the bundled model what that model knows."""
    source = f"the `{session.reference.suite}` classes" if session.reference else "your own list"
    lines = [f"**Image:** {escape(session.source)} · **classes:** {len(session.classes)} ({source})"]
    lines += [f"- {escape(notice)}" for notice in session.notices]
    if session.source.startswith(UPLOAD) and models.bundle.name == DEFAULT_MODEL:
        lines.append(f"\n{BUNDLED_NOTE}")
    return "\n".join(lines)


def describe_models(models: AppModels) -> str:
    """Markdown: the loaded CLIP, where every method's prompts came from and what they learned."""
    bundle = models.bundle
    visual = bundle.model.visual
    rows = [f"| {METHOD_TITLES[name]} | {escape(status)} | {escape(models.trained_on.get(name, '—'))} |"
            for name, status in models.status.items()]
    lines = [
        f"**CLIP:** `{bundle.name}` (weights: {bundle.pretrained or 'random init'}) · input "
        f"{bundle.image_size}px · {models.grid}x{models.grid} patches of {visual.patch_size[0]}px · "
        f"{len(visual.transformer.resblocks)} vision blocks",
        "",
        f"**Prompts folder:** `{models.prompts_dir}`" if models.prompts_dir else "**Prompts folder:** none",
        "",
        "| method | prompts | trained on |",
        "|---|---|---|",
        *rows,
    ]
    if models.notices:
        lines += ["", *[f"- {escape(notice)}" for notice in models.notices]]
    return "\n".join(lines)


# ---------------------------------------------------------------- views (handler -> widget values)

def disa_outputs(models: AppModels, session: Session | None, class_choice: str | None, ratio: float,
                 pool: float, seed: float | None) -> tuple:
    """(saliency picture, masked picture, summary Markdown, probability table)."""
    session = _require(session)
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
    session = _require(session)
    return _mask_outputs(session, disa_view(models, session, class_choice, ratio, pool, seed))


def _mask_outputs(session: Session, view: dict) -> tuple:
    grid, name = view["grid"], session.classes[view["class_index"]]
    masked = encoded(render.outline_object(
        render.fill_patches(render.upscale(session.pixels, grid), view["masked"], grid), session.mask))
    probs = view["probabilities"]
    order = np.argsort(-probs["prompted_full"], kind="stable")[:DISA_TABLE_ROWS]
    table = pd.DataFrame({"class": [session.classes[i] for i in order],
                          **{key.replace("_", " "): [_pct(probs[key][i]) for i in order] for key in probs}})
    return masked, _disa_summary(view, name, session), table


def _picture(session: Session, key: tuple, draw: Callable[[], np.ndarray]) -> str:
    """The file of one of the session's pictures that only `key` determines: drawn and encoded on
    its first use, then the same file (gradio neither encodes it again nor the browser fetches it)."""
    if key not in session.pictures:
        session.pictures[key] = encoded(draw())
    return session.pictures[key]


def encoded(picture: np.ndarray, lossless: bool = False) -> str:
    """A picture uint8 (H, W, 3) as a WebP file in gradio's upload folder, named by its content ->
    its path, which gradio serves as it is. libwebp's fastest method (0): a 256-pixel map takes
    about 2 ms instead of 6 ms at the default method gradio uses, for a file a few % larger.
    lossless: for flat colours and text (charts), where it is also smaller. A picture drawn before
    (a slider back at an earlier value) is already there and is not written again."""
    buffer = io.BytesIO()
    Image.fromarray(picture).save(buffer, format="WEBP", method=0, lossless=lossless)
    data = buffer.getvalue()
    path = Path(get_upload_folder()) / hashlib.sha256(data).hexdigest() / "picture.webp"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return str(path)


def _disa_summary(view: dict, name: str, session: Session) -> str:
    """Markdown: what was masked, how the predictions moved, and how far to trust the saliency."""
    probs, classes, patches = view["probabilities"], session.classes, view["grid"] ** 2
    top = {key: escape(classes[int(np.argmax(p))]) for key, p in probs.items()}
    lines = [
        f"Saliency query: **{escape(name)}**. Masked **{len(view['masked'])}** of {patches} patches "
        f"(ρ = {view['ratio']:.2f}) at random among the {round(view['pool'] * patches)} least "
        f"salient (γ = {view['pool']:.2f}), seed {view['seed']}.",
        f"- DiSa (prompted): full → **{top['prompted_full']}** {_pct(probs['prompted_full'].max())}, "
        f"masked → **{top['prompted_masked']}** {_pct(probs['prompted_masked'].max())}",
        f"- Frozen CLIP (60-template ensemble): full → **{top['frozen_full']}** "
        f"{_pct(probs['frozen_full'].max())}, masked → **{top['frozen_masked']}** {_pct(probs['frozen_masked'].max())}",
        *[f"- {escape(notice)}" for notice in view["notices"]],
        "",
        "**How far to trust the saliency** (green outline: the object)",
    ]
    found = view["grounding"]
    if found is None:
        lines.append("- This image has no object mask: nothing to check the saliency against.")
    else:
        lines += [
            f"- Pointing: the most salient patch is **{'on' if found['pointing'] else 'off'}** the object.",
            f"- The mask hides **{_pct(found['hidden'])}** of the object; a random mask of "
            f"{len(view['masked'])} patches hides {_pct(found['random_hidden'])} on average (DiSa masks "
            f"among the least salient patches: less than random means they lie off the object, as intended).",
            f"- IoU of the {found['object_patches']} most salient patches with the object: {_pct(found['iou'])}.",
        ]
    if view["reference"] is not None:
        rate, random_rate = view["reference"]
        lines.append(f"- On {session.reference.images} `{session.reference.suite}` test images, DiSa's saliency "
                     f"for the true class points at the object in **{_pct(rate)}** of them; a random patch "
                     f"in {_pct(random_rate)}.")
    return "\n".join(lines)


def gallop_outputs(session: Session | None, class_choice: str | None, same_k: bool, k_all: float,
                   *ks: float) -> tuple:
    """(region-map gallery, global / local / combined predictions, summary Markdown)."""
    session = _require(session)
    view = gallop_view(session, class_choice, int(k_all) if same_k else [int(k) for k in ks])
    grid, items = view["grid"], []
    for n, (scores, selected, k) in enumerate(zip(view["maps"], view["selected"], view["ks"])):
        picture = _picture(session, ("region", view["class_index"], n, k), lambda: render.outline_object(
            render.outline_patches(render.heatmap(session.pixels, scores, grid), selected, grid), session.mask))
        items.append((picture, f"prompt {n + 1} · k = {k}"))
    heads = [{name: float(p) for name, p in zip(session.classes, view["probabilities"][head])}
             for head in ("global", "local", "combined")]
    return items, *heads, _gallop_summary(view, session)


def _gallop_summary(view: dict, session: Session) -> str:
    """Markdown: what the maps show, and per local prompt whether its top-k patches touch the object."""
    lines = [f"Region maps for **{escape(session.classes[view['class_index']])}**: cosine of each patch's local "
             f"feature with each local prompt; cyan boxes mark its top-k patches, whose mean is the prompt's "
             f"score. Combined = (global + local) / 2.", ""]
    found, reference = view["grounding"], view["reference"]
    header = ["prompt", "k", "score"]
    if found is not None:
        header += ["top-k on the object", "share on it"]
    if reference is not None:
        header += ["test images: on it", "k random patches"]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for n, k in enumerate(view["ks"]):
        cells = [str(n + 1), str(k), f"{view['prompt_scores'][n]:.3f}"]
        if found is not None:
            cells += ["yes" if found[n]["touches"] else "**no**", _pct(found[n]["on_object"])]
        if reference is not None:
            cells += [_pct(reference[0][n]), _pct(reference[1][n])]
        lines.append("| " + " | ".join(cells) + " |")
    if found is None:
        lines.append("\nThis image has no object mask: nothing to check the region maps against.")
    else:
        lines.append("\n*Top-k on the object*: whether any of the prompt's top-k patches touches the object "
                     "(green outline); *share on it*: how many of them do.")
    if reference is not None:
        lines.append(f"*Test images: on it*: on {session.reference.images} `{session.reference.suite}` test "
                     f"images, how often the prompt's top-k patches for the true class touch the object; "
                     f"*k random patches*: how often k patches drawn at random would.")
    return "\n".join(lines)


def ood_outputs(session: Session | None, score: str, temperature: float, threshold: float) -> tuple:
    """(Markdown with the three ID-ness scores and the verdict, histogram picture or None)."""
    view = ood_view(_require(session), score, temperature, threshold)
    verdict = "in-distribution (ID)" if view["in_distribution"] else "out-of-distribution (OOD)"
    value = view["scores"][view["score"]]
    rows = [f"| {name} | {v:.4f} | {view['chance'][name]:.4f} |" for name, v in view["scores"].items()]
    lines = [f"### {verdict}",
             f"{view['score']} = {value:.4f} {'≥' if view['in_distribution'] else '<'} "
             f"threshold {threshold:.2f} × chance = {view['cutoff']:.4f}"]
    reference, picture = view["reference"], None
    if reference is None:
        lines.append("\nNo reference distributions for this class list (they are measured for each SynthWorld "
                     "suite's own classes, against the `ood` suite): read the score against its chance level only.")
    else:
        count = len(reference["id"])
        lines.append(f"\nAt this threshold **{_pct(reference['id_kept'])}** of {count} `{reference['suite']}` test "
                     f"images (ID) and **{_pct(reference['ood_kept'])}** of {len(reference['ood'])} `ood` test "
                     f"images (OOD) count as in-distribution; {view['score']} tells them apart with AUROC "
                     f"{_pct(reference['auroc'])} (50 %: not at all).")
        picture = encoded(render.histogram(reference["id"], reference["ood"], view["cutoff"], value), lossless=True)
    lines += ["", "| score | value | chance level |", "|---|---|---|", *rows]
    return "\n".join(lines), picture


def prediction_outputs(models: AppModels, session: Session | None, top_k: float) -> tuple:
    """(one label per method, the side-by-side table)."""
    view = predictions_view(models, _require(session), int(top_k))
    rows = [[row[0], *[_pct(p) for p in row[1:]]] for row in view["rows"]]
    return *view["top"].values(), pd.DataFrame(rows, columns=view["headers"])


def prediction_labels(models: AppModels, session: Session | None, top_k: float) -> tuple:
    """One label per method: what the top-k slider changes (the table does not depend on it)."""
    return tuple(predictions_view(models, _require(session), int(top_k))["top"].values())


def attribution_outputs(models: AppModels, session: Session | None, method_title: str,
                        class_choice: str | None, kind: str, steps: float) -> tuple:
    """(attribution picture, Markdown)."""
    session = _require(session)
    method = {title: name for name, title in METHOD_TITLES.items()}.get(method_title, method_title)
    view = attribution_view(models, session, method, class_choice, kind, int(steps))
    values = view["map"].reshape(-1) if view["kind"] == "gradcam" else view["map"]
    picture = render.outline_object(render.heatmap(session.pixels, values, models.grid), session.mask)
    note = (f"{kind} of **{METHOD_TITLES[method]}**'s logit for **{escape(session.classes[view['class_index']])}** "
            f"({view['seconds']:.2f} s).")
    if view["delta"] is not None:
        note += f" Completeness error {view['delta']:.3g} (smaller is better; raise the steps to reduce it)."
    return picture, note


# ---------------------------------------------------------------- inputs (new image or class list)

@dataclass
class Loaded:
    """The components a new session updates, in the order every input handler returns them."""

    state: gr.State
    status: gr.Markdown
    preview: gr.Image
    class_dropdowns: list[gr.Dropdown]
    classes: gr.Textbox
    sample: gr.Dropdown
    upload: gr.File

    def components(self) -> list:
        return [self.state, self.status, self.preview, *self.class_dropdowns, self.classes, self.sample, self.upload]


def _after_load(models: AppModels, outcome: Outcome, old: Session | None, classes=gr.skip(), sample=gr.skip(),
                upload=gr.skip(), rejected_upload=gr.skip(), new_image: bool = True) -> tuple:
    """The values of `Loaded.components()`: the new session (and the given classes text, sample
    name and file box; its image unless only the class list changed), or the old session, the
    reason as a warning and `rejected_upload`."""
    if outcome.session is None:
        gr.Warning(outcome.message)
        return old, f"**Not loaded:** {escape(outcome.message)}", *[gr.skip()] * 6, rejected_upload
    new = outcome.session
    preview = encoded(render.upscale(new.pixels, models.grid)) if new_image else gr.skip()
    return (new, status_text(models, new), preview, *[_class_choices(new)] * 3, classes, sample, upload)


def _progress(progress: gr.Progress, every: float = PROGRESS_EVERY) -> Callable[[int, int], None]:
    """The handlers' (done, total) progress reports on a gradio progress bar, at most one per
    `every` seconds (and the last): each report is a message the page processes, about 5 ms of
    its main thread, so a report per template (60 per class list) had a browser on the same cores
    take CPU time from the encoding it reports on."""
    last = time.perf_counter()

    def report(done: int, total: int) -> None:
        nonlocal last
        now = time.perf_counter()
        if now - last >= every or done == total:
            last = now
            progress(done / total, desc=f"Encoding the class names: template {done} of {total}")
    return report


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
    """torch threads for redrawing views: all but one core (at least one). A view redraws one image
    (batch 1, too little work to share out), and the browser, on the same machine for most users,
    renders the page meanwhile; with every core computing, torch's threads waited for each other
    (2 cores: a DiSa slider step's handler 39 ms in the server with 2 threads, 25 ms with 1)."""
    return max(1, torch.get_num_threads() - 1)


def _class_dropdown(label: str, classes: list[str]) -> gr.Dropdown:
    """A class picker; its choices follow the session's class list."""
    return gr.Dropdown([PREDICTED, *classes], value=PREDICTED, label=label)


def _disa_tab(models: AppModels, classes: list[str]) -> View:
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
    outputs = [*pictures, gr.Markdown(),
               gr.Dataframe(label="Class probabilities: full vs masked, prompted vs frozen", interactive=False,
                            elem_id="disa-table")]
    return View(partial(disa_outputs, models), controls, outputs, "disa", controls[1:],
                partial(disa_mask_outputs, models), outputs[1:], "disa_mask")


def _gallop_tab(models: AppModels, classes: list[str], threshold: float) -> tuple[View, View]:
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
    gallop = View(gallop_outputs, [choice, same_k, k_all, *k_each], [maps, *heads, summary], "gallop")
    gr.Markdown("#### OOD detection (GalLoP's cosines, higher = in-distribution)")
    with gr.Row():
        controls = [gr.Radio(list(OOD_SCORES), value="GL-MCM", label="Score"),
                    gr.Slider(0.01, 1, value=1.0, step=0.01, label="Temperature T"),
                    gr.Slider(1, 4, value=round(threshold, 2), step=0.01, label="Threshold (× chance level)")]
    with gr.Row():
        # a fixed height (the chart's and the frame's padding): a threshold step 98 / 108 -> 91 / 97 ms
        outputs = [gr.Markdown(), gr.Image(label="The suite's test images (ID) and `ood` images (OOD)",
                                           interactive=False, show_label=False, elem_id="ood-histogram",
                                           height=render.HISTOGRAM_SIZE[1] + 8)]
    return gallop, View(ood_outputs, controls, outputs, "ood")


def _predictions_tab(models: AppModels) -> View:
    """Every method's top classes side by side, and a table of all methods."""
    top_k = gr.Slider(1, 10, value=5, step=1, label="Classes shown per method")
    names, labels = list(models.methods), []
    for row in (names[:3], names[3:]):
        with gr.Row():
            labels += [gr.Label(num_top_classes=10, label=_method_label(models, name), elem_id=f"predictions-{name}")
                       for name in row]
    table = gr.Dataframe(label="All methods side by side (top classes by mean probability)", interactive=False)
    return View(partial(prediction_outputs, models), [top_k], [*labels, table], None, [top_k],
                partial(prediction_labels, models), labels, "predictions")


def _attribution_tab(models: AppModels, classes: list[str]) -> tuple[View, gr.Button]:
    """The attribution view and its button: it runs on a press only (a backward pass per press)."""
    with gr.Row():
        controls = [gr.Dropdown(list(METHOD_TITLES.values()), value=METHOD_TITLES["disa"], label="Method"),
                    _class_dropdown("Class", classes),
                    gr.Radio(list(KINDS), value=next(iter(KINDS)), label="Attribution"),
                    gr.Slider(4, 64, value=16, step=4, label="Integration steps")]
    button = gr.Button("Compute attribution", variant="primary")
    with gr.Row():
        outputs = [gr.Image(label="Attribution", interactive=False), gr.Markdown(ATTRIBUTION_HINT)]
    return View(partial(attribution_outputs, models), controls, outputs, "attribution"), button


def _default_threshold(session: Session) -> float:
    """The OOD threshold (× chance level) the view opens with: the one that keeps KEPT_ID_SHARE of
    the landing suite's ID test images under GL-MCM at T = 1 (OOD_THRESHOLD without a reference)."""
    if session.reference is None or session.reference.id_sims is None:
        return OOD_THRESHOLD
    return min(max(threshold_keeping(session.reference, "GL-MCM", 1.0, KEPT_ID_SHARE, len(session.classes)), 1), 4)


def build_app(models: AppModels) -> gr.Blocks:
    """The app over already loaded models (nothing is trained or downloaded here). It opens on
    `landing_sample` with its suite's classes, encoded once here and copied per user."""
    landing = landing_sample(models)
    keys = list(dict.fromkeys([landing, *sample_keys()]))
    classes_text = ", ".join(sample_classes(landing))
    first = load_sample(models, landing, classes_text).session
    gallery_items = [(render.upscale(read_sample(key, models.bundle.image_size).pixels, models.grid),
                      thumbnail_caption(key)) for key in keys]

    with gr.Blocks(title="VLP Lab") as demo:
        state = gr.State(lambda: first)  # a function: gradio would copy a dataclass value field by field
        gr.Markdown(f"# {TITLE}\n{HOW_IT_WORKS}{_untrained_banner(models)}")
        with gr.Row():
            with gr.Column(scale=1, min_width=320):
                gallery = gr.Gallery(gallery_items, label="SynthWorld samples (every suite and style): click one",
                                     columns=4, height=250, allow_preview=False, object_fit="contain")
                sample = gr.Dropdown([(sample_caption(key), key) for key in keys], value=landing,
                                     label="…or pick a sample by name")
                upload = gr.File(label="…or upload an image (the class list is kept)", type="filepath",
                                 file_count="single", height=120)
                classes = gr.Textbox(classes_text, lines=3,
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
                    gallop, ood = _gallop_tab(models, first.classes, _default_threshold(first))
                with gr.Tab("Live predictions"):
                    predictions = _predictions_tab(models)
                with gr.Tab("Attributions"):
                    attribution, attribute = _attribution_tab(models, first.classes)
                with gr.Tab("Model & checkpoints"):
                    gr.Markdown(describe_models(models) + "\n" + SWITCH_HELP)
        live_views = [disa, gallop, ood, predictions]
        loaded = Loaded(state, status, preview, [disa.controls[0], gallop.controls[0], attribution.controls[1]],
                        classes, sample, upload)
        show = _refresh(state, live_views, attribution)
        _wire_inputs(models, keys, (sample, gallery, upload, classes, keep_own, apply), loaded, show)
        # views answer outside gradio's queue: one request instead of a join and an event stream,
        # and two status updates instead of four, each of which makes the page resync every
        # component an event ever touched (about 15 ms on 2 cores): a GalLoP k step 113 -> 86 ms
        for view in live_views:
            view.wire(state, view_threads(), trigger_mode="always_last", show_progress="hidden", queue=False)
        attribute.click(COMPUTE.wrap(attribution.fn), [state, *attribution.controls], attribution.outputs,
                        api_name="attribution")
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

    return {"fn": COMPUTE.wrap(refresh, view_threads()),
            "inputs": [state, *[c for view in views for c in view.controls]],
            "outputs": [*[o for view in views for o in view.outputs], *attribution.outputs],
            "api_visibility": "private", "show_progress": "hidden", "queue": False}


def _wire_inputs(models: AppModels, keys: list[str], widgets: tuple, loaded: Loaded, show: dict) -> None:
    """New image (sample name, gallery click, upload) or class list -> new session -> every view.

    A sample brings its suite's class list (unless the user keeps their own) and empties the file
    box; an upload keeps the class list and clears the sample name; a rejected upload is removed
    from the file box."""
    sample, gallery, upload, classes, keep_own, apply = widgets

    @COMPUTE.wrap
    def on_sample(key: str, text: str, keep: bool, old: Session | None, progress=gr.Progress()) -> tuple:
        text = text if keep else ", ".join(sample_classes(key))
        outcome = load_sample(models, key, text, _progress(progress))
        return _after_load(models, outcome, old, classes=gr.skip() if keep else text, upload=None)

    @COMPUTE.wrap
    def on_upload(path: str | None, text: str, old: Session | None, progress=gr.Progress()) -> tuple:
        outcome = load_upload(models, path, text, _progress(progress))
        return _after_load(models, outcome, old, sample=None, rejected_upload=None)

    @COMPUTE.wrap
    def on_classes(old: Session | None, text: str, progress=gr.Progress()) -> tuple:
        return _after_load(models, change_classes(models, old, text, _progress(progress)), old, new_image=False)

    def on_gallery(evt: gr.SelectData) -> str:
        return keys[evt.index]

    # progress as text on the status line: with gradio's full indicator (an animation while it
    # waits) a browser on the same two cores took 1.3-1.9 s of CPU during a 500-name class list
    # and the event ended 0.5 s later than with the text alone (1.0-1.1 s)
    outputs, on_status = loaded.components(), {"show_progress_on": [loaded.status], "show_progress": "minimal"}
    sample_inputs = [sample, classes, keep_own, loaded.state]
    sample.input(on_sample, sample_inputs, outputs, api_name="load_sample", **on_status).then(**show)
    gallery.select(on_gallery, None, sample, api_visibility="private").then(
        on_sample, sample_inputs, outputs, api_visibility="private", **on_status).then(**show)
    upload.upload(on_upload, [upload, classes, loaded.state], outputs, api_name="upload", **on_status).then(**show)
    gr.on([apply.click, classes.submit], on_classes, [loaded.state, classes], outputs, api_name="set_classes",
          **on_status).then(**show)
