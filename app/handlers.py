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
    read_sample,
    sample_keys,
)
from app.models import METHOD_TITLES, AppModels
from app.reference import Reference, reference_for
from vlp_core.data.synthworld import get_suite
from vlp_core.engine.metrics import patch_coverage, pointing_hits, salient_iou
from vlp_core.methods.base import ExplainCache, Explainable, readable
from vlp_core.methods.disa import DiSaExplainCache
from vlp_core.methods.gallop import GalLoPExplainCache, gallop_ood_scores
from vlp_core.methods.templates import IMAGENET_TEMPLATES

DEFAULT_SUITE = "shapes"
DEFAULT_CLASSES: tuple[str, ...] = tuple(get_suite(DEFAULT_SUITE).classnames)
PREDICTED = "(predicted class)"
OOD_SCORES: dict[str, str] = {"GL-MCM": "gl_mcm", "MCM": "mcm", "L-MCM": "l_mcm"}
TABLE_ROWS = 50  # rows of the side-by-side probability table (hundreds of classes stay readable)
MAX_SEED = 2**32 - 1
Progress = Callable[[int, int], None]  # (done, total) while class names are encoded


@dataclass
class Session:
    """Everything one user's views need about their current image and class list."""

    pixels: np.ndarray  # uint8 (S, S, 3), what the model sees
    mask: np.ndarray | None  # bool (S, S) ground-truth object mask (SynthWorld samples)
    source: str
    classes: list[str]
    probabilities: dict[str, np.ndarray]  # method -> (C,) class probabilities on the full image
    explanations: dict[str, ExplainCache]  # Explainable method -> its cache of this image
    reference: Reference | None  # measures of the class list's suite, None for other lists
    notices: list[str] = field(default_factory=list)
    pictures: dict[tuple, str] = field(default_factory=dict)  # the views' pictures, drawn once per key

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
    counterpart) are encoded first, the templates with as many
    tokens before the name together, over all names that no earlier class list had, reporting
    `progress`; each method's own prompted text then runs once, its prompt prefix shared by every
    class.
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
    return Session(image.pixels, image.mask, image.source, classes.names, probabilities, explanations,
                   reference_for(models, classes.names), image.notices + classes.notices)


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
    image = ImageInput(session.pixels, session.mask, session.source)
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
    """The sample the app opens on, by rule: the first test item of DEFAULT_SUITE that zero-shot
    CLIP classifies correctly with the suite's classes (the first item if none of the split is)."""
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
    """Index of class `choice`, or of `method`'s prediction when the choice is PREDICTED or unknown."""
    if choice in session.classes:
        return session.classes.index(choice)
    return int(session.probabilities[method].argmax())


def valid_seed(seed: float | None) -> tuple[int, list[str]]:
    """A mask seed in 0..MAX_SEED: `seed` rounded, or clamped with a notice (0 for a missing value)."""
    if seed is None or not math.isfinite(seed):
        return 0, [f"The mask seed {seed} is not a number; used 0."]
    rounded = round(seed)
    used = min(max(rounded, 0), MAX_SEED)
    return used, [] if used == rounded else [f"The mask seed {seed:g} is outside 0 … {MAX_SEED}; used {used}."]


def _object_threshold(coverage: Tensor) -> float:
    """Coverage from which a patch counts as object: half, or any part when no patch is half covered."""
    return 0.5 if bool((coverage >= 0.5).any()) else 1e-6


def grounding(scores: Tensor, selected: Tensor | None, coverage: Tensor) -> dict:
    """Overlap of a patch score map with the object: "pointing" (the top patch touches it), "iou"
    of `selected` (default: the len(object) top-scoring patches) with the object patches, and
    "touches" / "on_object": whether any / which share of the selected patches touch the object.

    scores (P,), selected bool (P,) or None, coverage (P,) from `patch_coverage`.
    """
    threshold = _object_threshold(coverage)
    object_patches = int((coverage >= threshold).sum())
    if selected is None:
        selected = torch.zeros(scores.shape, dtype=torch.bool)
        selected[scores.topk(object_patches).indices] = True
    on_object = selected & (coverage > 0)
    return {"pointing": bool(pointing_hits(scores[None], coverage[None])[0]),
            "iou": float(salient_iou(selected[None], coverage[None], threshold)[0]),
            "object_patches": object_patches,
            "touches": bool(on_object.any()),
            "on_object": float(on_object.sum() / selected.sum())}


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


def ood_view(session: Session, score: str, temperature: float, threshold: float) -> dict:
    """GalLoP's OOD scores of the image against the class list, the verdict for `score`, and how
    the suite's ID and OOD test images fall at the same threshold.

    ID-ness scores (higher = in-distribution) on raw cosines with temperature T. A score's chance
    level is its value for uniform class probabilities (1/C per term); the image is in-distribution
    when the chosen score >= threshold × its chance level. Returns "scores" {name: value},
    "chance" {name: value}, "score", "cutoff", "in_distribution" and "reference": None, or
    {"suite", "id", "ood" (N,) score values, "id_kept" / "ood_kept" (shares >= cutoff), "auroc"}.
    """
    if score not in OOD_SCORES:
        raise ValueError(f"score must be one of {', '.join(OOD_SCORES)}, got {score!r}")
    cache = session.gallop
    values = gallop_ood_scores(cache.global_sims[None], cache.local_sims[None], temperature)
    scores = {name: float(values[key][0]) for name, key in OOD_SCORES.items()}
    chance = {name: chance_level(name, len(session.classes)) for name in OOD_SCORES}
    cutoff = threshold * chance[score]
    result = {"scores": scores, "chance": chance, "score": score, "cutoff": cutoff,
              "in_distribution": scores[score] >= cutoff, "reference": None}
    measured = session.reference and session.reference.ood_scores(OOD_SCORES[score], temperature)
    if measured:
        id_scores, ood_scores = measured
        result["reference"] = {"suite": session.reference.suite, "id": id_scores, "ood": ood_scores,
                               "id_kept": float((id_scores >= cutoff).mean()),
                               "ood_kept": float((ood_scores >= cutoff).mean()),
                               "auroc": session.reference.auroc(OOD_SCORES[score], temperature)}
    return result


def chance_level(score: str, num_classes: int) -> float:
    """A score's value for uniform class probabilities: 1/C per softmax maximum (GL-MCM has two)."""
    return (2.0 if score == "GL-MCM" else 1.0) / num_classes


def threshold_keeping(reference: Reference, score: str, temperature: float, share: float,
                      num_classes: int) -> float:
    """The threshold (× chance level) that keeps at least `share` of the reference's ID images."""
    id_scores, _ = reference.ood_scores(OOD_SCORES[score], temperature)
    return float(np.quantile(id_scores, 1 - share, method="lower")) / chance_level(score, num_classes)


def top_classes(probabilities: np.ndarray, classes: list[str], k: int) -> dict[str, float]:
    """The k most probable classes -> {name: probability}, best first."""
    order = np.argsort(-probabilities, kind="stable")[: max(1, k)]
    return {classes[i]: float(probabilities[i]) for i in order}


def predictions_view(models: AppModels, session: Session, top_k: int) -> dict:
    """Every method's predictions side by side.

    Returns "top" {method: {class: probability}} (top_k classes each), "headers" and "rows" of a
    table of the TABLE_ROWS classes with the highest mean probability (probabilities in [0, 1]),
    and "truncated".
    """
    probabilities = session.probabilities
    mean = np.mean(np.stack(list(probabilities.values())), axis=0)
    order = np.argsort(-mean, kind="stable")[:TABLE_ROWS]
    rows = [[session.classes[i]] + [float(p[i]) for p in probabilities.values()] for i in order]
    return {
        "top": {name: top_classes(p, session.classes, top_k) for name, p in probabilities.items()},
        "headers": ["class"] + [METHOD_TITLES[name] for name in probabilities],
        "rows": rows,
        "truncated": len(session.classes) > TABLE_ROWS,
    }
