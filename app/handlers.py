"""The app's handlers: pure functions from (models, session state, widget values) to arrays and dicts.

Encoding happens once per image and class list (`encode`): every method's probabilities and the
explain cache of every `Explainable` method (DiSa's frozen patch embeddings and text features,
GalLoP's cosines) go into a `Session`, the user's own `gr.State`, with the reference measures of
the class list's suite (`app.reference`).
Slider handlers re-threshold that cache without an encoder pass, with one exception: DiSa's
masked-image prediction needs the masked image's features, so each DiSa slider move runs the
image tower twice on the masked image (DiSa's prompted tower and frozen CLIP's) and nothing else.
Shapes: C classes, P patches, D joint size, Ml local prompts. Shares and probabilities are
fractions in [0, 1] here; the views print them as percentages.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from app.inputs import (
    ClassList,
    ImageInput,
    InputError,
    parse_classes,
    read_image,
    has_own_data,
    read_sample,
    sample_keys,
)
from app.models import METHOD_TITLES, AppModels
from app.reference import Reference, reference_for
from vlp_core.data.synthworld import get_suite
from vlp_core.engine.metrics import patch_coverage, pointing_hits, salient_iou
from vlp_core.methods.base import ExplainCache, Explainable, readable
from vlp_core.methods.disa import DiSaExplainCache
from vlp_core.methods.gallop import GalLoPExplainCache
from vlp_core.methods.interpret import text_cosines
from vlp_core.methods.templates import IMAGENET_TEMPLATES

DEFAULT_SUITE = "shapes"
DEFAULT_CLASSES: tuple[str, ...] = tuple(get_suite(DEFAULT_SUITE).classnames)
PREDICTED = "(predicted class)"
TRUE_CLASS = "(true class)"
TABLE_ROWS = 50  # rows of the side-by-side probability table (hundreds of classes stay readable)
MAX_SEED = 2**32 - 1
# `salient_iou` counts a patch as object from this coverage: the smallest positive float32, below
# any share of a patch's pixels, so "on the object" means any pixel of it, as for pointing
ANY_PIXEL = float(torch.finfo(torch.float32).tiny)
Progress = Callable[[int, int], None]  # (done, total) while class names are encoded


@dataclass
class Session:
    """Everything one user's views need about their current image and class list."""

    pixels: np.ndarray  # uint8 (S, S, 3), what the model sees
    mask: np.ndarray | None  # bool (S, S) ground-truth mask of the objects the label names (SynthWorld samples)
    source: str
    label: str | None  # the true class name (SynthWorld samples), in the class list or not
    sample: str | None  # the SynthWorld sample's key "suite/split/index" (None for an upload)
    classes: list[str]
    probabilities: dict[str, np.ndarray]  # method -> (C,) class probabilities on the full image
    explanations: dict[str, ExplainCache]  # Explainable method -> its cache of this image
    local_text_cosines: Tensor  # (Ml, Ml) GalLoP's local prompts' text features, mean cosine over the classes
    reference: Reference | None  # measures of the class list's suite, None for other lists
    notices: list[str] = field(default_factory=list)
    pictures: dict[tuple, str] = field(default_factory=dict)  # the views' pictures, drawn once per key

    @property
    def true_index(self) -> int | None:
        """Index of the true class in the class list, its case ignored (None: no label, or a label
        the list lacks)."""
        if self.label is None:
            return None
        return next((i for i, name in enumerate(self.classes) if name.casefold() == self.label.casefold()), None)

    def predicted(self, method: str) -> int:
        """Index of the class `method` predicts on the full image."""
        return int(self.probabilities[method].argmax())

    def right(self, method: str) -> bool | None:
        """Whether `method`'s prediction is the true class (None when the list has no true class)."""
        return None if self.true_index is None else self.predicted(method) == self.true_index

    @property
    def disa(self) -> DiSaExplainCache:
        return self.explanations["disa"]

    @property
    def gallop(self) -> GalLoPExplainCache:
        return self.explanations["gallop"]

    def __deepcopy__(self, memo: dict) -> Session:
        """The session itself: a session is a value (an image and class list, and what they
        determine; `pictures` only memoises drawings of it), so gradio's per-user copy of the
        landing session can share it. A copy would copy the whole CLIP its DiSa cache refers to
        (time and the model's memory per page load), running torch outside the compute thread."""
        return self


@dataclass
class Outcome:
    """A new session, or the reason there is none; `message` lists what the user should know."""

    session: Session | None
    message: str


def encode(models: AppModels, image: ImageInput, classes: ClassList, progress: Progress | None = None) -> Session:
    """Run every encoder pass an image and class list need, once, and cache the results.

    The frozen text features every method asks for (zero-shot's template, the 60-template ensemble
    of PromptSRC's and DiSa's teacher, and GalLoP's initial prompt as frozen text, its zero-shot
    counterpart) are encoded first, the templates with as many tokens before the name together,
    over all names that no earlier class list had, reporting `progress`; each method's own
    prompted text then runs once, its prompt prefix shared by every class.
    """
    templates = tuple(dict.fromkeys((*models.methods["zeroshot"].templates, *IMAGENET_TEMPLATES,
                                     models.methods["gallop"].zero_shot_template)))
    model_input = models.bundle.preprocess(Image.fromarray(image.pixels))[None]
    with models.lock, torch.no_grad():
        models.frozen_text.warm([readable(name) for name in classes.names], templates, progress)
        for method in models.methods.values():
            method.set_classes(classes.names)
        explanations = {name: method.explain_cache(model_input) for name, method in models.methods.items()
                        if isinstance(method, Explainable)}
        probabilities = {name: explanations[name].probabilities.numpy() if name in explanations
                         else torch.softmax(method.logits(model_input), dim=-1)[0].numpy()
                         for name, method in models.methods.items()}
        local_text_cosines = text_cosines(models.methods["gallop"].text_features()[1])
    return Session(image.pixels, image.mask, image.source, image.label, image.sample, classes.names, probabilities,
                   explanations, local_text_cosines, reference_for(models, classes.names),
                   image.notices + classes.notices)


def load_sample(models: AppModels, key: str, classes_text: str | None, progress: Progress | None = None) -> Outcome:
    """Encode SynthWorld sample `key` ("suite/split/index") with the typed class list."""
    return _load(models, lambda: read_sample(key, models.bundle.image_size), classes_text, progress)


def load_upload(models: AppModels, path: str | None, classes_text: str | None,
                progress: Progress | None = None) -> Outcome:
    """Encode an uploaded image file with the typed class list."""
    return _load(models, lambda: read_image(path, models.bundle.image_size), classes_text, progress)


def change_classes(models: AppModels, session: Session | None, classes_text: str | None,
                   progress: Progress | None = None) -> Outcome:
    """Re-encode the current image with a new class list."""
    if session is None:
        return Outcome(None, "Pick a sample or upload an image first.")
    image = ImageInput(session.pixels, session.mask, session.source, label=session.label, sample=session.sample)
    return _load(models, lambda: image, classes_text, progress)


def _load(models: AppModels, get_image: Callable[[], ImageInput], classes_text: str | None,
          progress: Progress | None) -> Outcome:
    """Check the class list and the image (either may raise InputError), then encode."""
    try:
        classes = parse_classes(classes_text, models.bundle.tokenizer, models.name_token_budget)
        image = get_image()
    except InputError as error:
        return Outcome(None, str(error))
    return Outcome(encode(models, image, classes, progress), "")


def landing_sample(models: AppModels, batch: int = 16) -> str:
    """The sample the app opens on, by rule: the user's first image when `--data` gave a dataset, else
    the first test item of DEFAULT_SUITE that zero-shot CLIP classifies correctly with the suite's
    classes (the first item if none of the split is)."""
    if has_own_data():
        return sample_keys()[0]
    suite = get_suite(DEFAULT_SUITE, image_size=models.bundle.image_size)
    zeroshot, count = models.methods["zeroshot"], len(suite.split("test"))
    for start in range(0, count, batch):
        images, labels, _ = suite.render_batch(models.bundle.preprocess, "test", start + batch)
        with models.lock, torch.no_grad():
            zeroshot.set_classes(suite.classnames)
            correct = (zeroshot.logits(images[start:]).argmax(-1) == labels[start:]).nonzero()
        if len(correct):
            return f"{DEFAULT_SUITE}/test/{start + int(correct[0])}"
    return sample_keys()[0]


def resolve_class(session: Session, choice: str | None, method: str) -> int:
    """Index of class `choice`; for TRUE_CLASS the true class (when the list has it), otherwise
    (PREDICTED, an unknown name, or no true class) `method`'s prediction."""
    if choice in session.classes:
        return session.classes.index(choice)
    if choice == TRUE_CLASS and session.true_index is not None:
        return session.true_index
    return session.predicted(method)


def default_query(session: Session) -> str:
    """What a class picker starts on: the true class where the class list has it, else the prediction."""
    return PREDICTED if session.true_index is None else TRUE_CLASS


def valid_seed(seed: float | None) -> tuple[int, list[str]]:
    """A mask seed in 0..MAX_SEED: `seed` rounded, or clamped with a notice (0 for a missing value)."""
    if seed is None or not math.isfinite(seed):
        return 0, [f"The mask seed {seed} is not a number; used 0."]
    rounded = round(seed)
    used = min(max(rounded, 0), MAX_SEED)
    return used, [] if used == rounded else [f"The mask seed {seed:g} is outside 0 … {MAX_SEED}; used {used}."]


def grounding(scores: Tensor, selected: Tensor | None, coverage: Tensor) -> dict:
    """Overlap of a patch score map with the object, one definition throughout: a patch is *on the
    object* when it holds any of the object's pixels (coverage > 0, as `pointing_hits` reads it).
    "pointing": the top patch is on the object; "iou": of `selected` (default: as many top-scoring
    patches as are on the object, "object_patches") with the patches on the object; "touches" /
    "on_object": whether any / which share of the selected patches are on it.

    scores (P,), selected bool (P,) or None, coverage (P,) from `patch_coverage`.
    """
    on_object = coverage > 0
    object_patches = int(on_object.sum())
    if selected is None:
        selected = torch.zeros(scores.shape, dtype=torch.bool)
        selected[scores.topk(object_patches).indices] = True
    touching = selected & on_object
    return {"pointing": bool(pointing_hits(scores[None], coverage[None])[0]),
            "iou": float(salient_iou(selected[None], coverage[None], ANY_PIXEL)[0]),
            "object_patches": object_patches,
            "touches": bool(touching.any()),
            "on_object": float(touching.sum() / selected.sum())}


def disa_view(models: AppModels, session: Session, class_choice: str | None, ratio: float,
              pool: float, seed: float | None) -> dict:
    """DiSa's saliency and mask for one class and slider setting (cf. `DiSa.explain`).

    Returns "class_index", "saliency" (P,) summing to 1, "masked" (M,) indices with
    M = round(ratio·P), "grid", "ratio", "pool" (raised to ratio if below), "seed" (clamped to
    0..MAX_SEED), "probabilities" {prompted_full, prompted_masked, frozen_full, frozen_masked} each
    (C,), "grounding" (None without an object mask) with "hidden" (share of the object's pixels
    under the mask) and "random_hidden" (M / P, what a random mask of M patches hides on average),
    "reference" ((pointing rate, random patch's rate) on the suite's test images, or None) and
    "notices".
    """
    cache = session.disa
    seed, notices = valid_seed(seed)
    class_index = resolve_class(session, class_choice, "disa")
    if pool < ratio:
        notices.append(f"The pool γ = {pool:.2f} was below ρ = {ratio:.2f}; used γ = ρ (deterministic bottom-ρ).")
        pool = ratio
    with models.lock:
        out = cache.explain(class_index, ratio, pool, seed)
    keys = ("prompted_full", "prompted_masked", "frozen_full", "frozen_masked")
    probabilities = {key: out[key].numpy() for key in keys}
    saliency, masked = out["saliency"], out["masked"]
    result = {"class_index": class_index, "saliency": saliency.numpy(), "masked": masked.numpy(),
              "grid": models.grid, "ratio": ratio, "pool": pool, "seed": seed, "probabilities": probabilities,
              "grounding": None, "reference": session.reference and session.reference.pointing(),
              "notices": notices}
    if session.mask is not None:
        coverage = patch_coverage(session.mask, models.grid)
        found = grounding(saliency, None, coverage)
        found["hidden"] = float(coverage[masked].sum() / coverage.sum())
        found["random_hidden"] = len(masked) / len(coverage)
        result["grounding"] = found
    return result


def gallop_view(session: Session, class_choice: str | None, ks: int | Sequence[int] | None) -> dict:
    """GalLoP's local-prompt region maps for one class and top-k setting, from the cache.

    ks: one k for every local prompt, one per prompt, or None for the method's. Returns
    "class_index", "maps" (Ml, P) cosines, "selected" bool (Ml, P) with exactly k_n per row,
    "prompt_scores" (Ml,), "ks", "grid", "probabilities" {global, local, combined} each (C,),
    "grounding" (one dict per prompt, or None without an object mask) and "reference" (for these
    ks on the suite's test images: (Ml,) share whose top-k touches the object and (Ml,) the same
    for k random patches; or None).
    """
    class_index = resolve_class(session, class_choice, "gallop")
    out = session.gallop.explain(class_index, ks)
    result = {
        "class_index": class_index,
        "maps": out["maps"].numpy(),
        "selected": out["selected"].numpy(),
        "prompt_scores": out["prompt_scores"].numpy(),
        "ks": out["ks"],
        "grid": out["grid"][0],
        "probabilities": {head: torch.softmax(out[key], dim=-1).numpy() for head, key in
                          (("global", "global_logits"), ("local", "local_logits"), ("combined", "logits"))},
        "grounding": None,
        "reference": session.reference and session.reference.touch(out["ks"]),
    }
    if session.mask is not None:
        coverage = patch_coverage(session.mask, out["grid"][0])
        result["grounding"] = [grounding(row, chosen, coverage) for row, chosen in zip(out["maps"], out["selected"])]
    return result


def top_classes(probabilities: np.ndarray, classes: list[str], k: int) -> dict[str, float]:
    """The k most probable classes -> {name: probability}, best first."""
    order = np.argsort(-probabilities, kind="stable")[: max(1, k)]
    return {classes[i]: float(probabilities[i]) for i in order}


def class_notes(models: AppModels, session: Session, indices) -> list[str]:
    """For each class index: "true class · " where it is the image's label, then whether the
    loaded prompts were trained on it (`AppModels.class_part`: base / novel)."""
    return [("true class · " if i == session.true_index else "") + models.class_part(session.classes[i])
            for i in indices]


def predictions_view(models: AppModels, session: Session, top_k: int) -> dict:
    """Every method's predictions side by side.

    Returns "top" {method: {class: probability}} (top_k classes each), "predicted" {method: class
    name}, "right" {method: True / False, None without a true class in the list}, "headers" and
    "rows" of a table of the TABLE_ROWS classes with the highest mean probability (probabilities in
    [0, 1]), "notes" (one per row, `class_notes`) and "truncated".
    """
    probabilities = session.probabilities
    mean = np.mean(np.stack(list(probabilities.values())), axis=0)
    order = np.argsort(-mean, kind="stable")[:TABLE_ROWS]
    rows = [[session.classes[i]] + [float(p[i]) for p in probabilities.values()] for i in order]
    return {
        "top": {name: top_classes(p, session.classes, top_k) for name, p in probabilities.items()},
        "predicted": {name: session.classes[session.predicted(name)] for name in probabilities},
        "right": {name: session.right(name) for name in probabilities},
        "headers": ["class"] + [METHOD_TITLES[name] for name in probabilities],
        "rows": rows,
        "notes": class_notes(models, session, order),
        "truncated": len(session.classes) > TABLE_ROWS,
    }
