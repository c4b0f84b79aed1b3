"""The app's text: Markdown summaries of a session, the loaded models and each view's result.

Text a user typed (class names, file names) reaches Markdown only through `escape`; shares and
probabilities are fractions in the views' results and percentages here.
"""

from __future__ import annotations

import numpy as np

from app.handlers import Session
from app.inputs import UPLOAD
from app.models import METHOD_TITLES, UNTRAINED, AppModels
from vlp_core.backbone import DEFAULT_MODEL

MARKUP = set("\\`*_[]<>&|$#~!")  # characters Markdown, HTML or LaTeX could read as syntax
BUNDLED_NOTE = (
    "*The bundled synth-clip has only ever seen SynthWorld's rendered shapes, colours, patterns and styles: "
    "on a photo its answers mean little. For real images, restart the app with a real CLIP, e.g. "
    "`python app/main.py --model ViT-B-16-quickgelu --pretrained openai` (downloaded once), or any open_clip "
    "`--model` with a `--pretrained` tag or checkpoint file.*"
)


def escape(text: object) -> str:
    """Text shown literally inside Markdown: markup characters become HTML character references."""
    return "".join(f"&#{ord(c)};" if c in MARKUP else c for c in str(text))


def pct(value: float) -> str:
    """A fraction as a percentage with one decimal."""
    return f"{100 * value:.1f} %"


def method_label(models: AppModels, name: str) -> str:
    """A method's title, marked when it runs without trained prompts."""
    return f"{METHOD_TITLES[name]} — {UNTRAINED}" if models.status[name] == UNTRAINED else METHOD_TITLES[name]


def untrained_banner(models: AppModels) -> str:
    """A warning line naming the methods that run with initial prompts ("" when all are trained)."""
    untrained = [METHOD_TITLES[name] for name, status in models.status.items() if status == UNTRAINED]
    if not untrained:
        return ""
    return (f"\n> **{', '.join(untrained)}: {UNTRAINED}** (no usable prompt checkpoint; see *Model & "
            f"checkpoints*).")


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


def disa_summary(view: dict, session: Session) -> str:
    """Markdown: what was masked, how the predictions moved, and how far to trust the saliency."""
    probs, classes, patches = view["probabilities"], session.classes, view["grid"] ** 2
    top = {key: escape(classes[int(np.argmax(p))]) for key, p in probs.items()}
    lines = [
        f"Saliency query: **{escape(classes[view['class_index']])}**. Masked **{len(view['masked'])}** of "
        f"{patches} patches (ρ = {view['ratio']:.2f}) at random among the {round(view['pool'] * patches)} least "
        f"salient (γ = {view['pool']:.2f}), seed {view['seed']}.",
        f"- DiSa (prompted): full → **{top['prompted_full']}** {pct(probs['prompted_full'].max())}, "
        f"masked → **{top['prompted_masked']}** {pct(probs['prompted_masked'].max())}",
        f"- Frozen CLIP (60-template ensemble): full → **{top['frozen_full']}** "
        f"{pct(probs['frozen_full'].max())}, masked → **{top['frozen_masked']}** {pct(probs['frozen_masked'].max())}",
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
            f"- The mask hides **{pct(found['hidden'])}** of the object; a random mask of "
            f"{len(view['masked'])} patches hides {pct(found['random_hidden'])} on average (DiSa masks "
            f"among the least salient patches: less than random means they lie off the object, as intended).",
            f"- IoU of the {found['object_patches']} most salient patches with the object: {pct(found['iou'])}.",
        ]
    if view["reference"] is not None:
        rate, random_rate = view["reference"]
        lines.append(f"- On {session.reference.images} `{session.reference.suite}` test images, DiSa's saliency "
                     f"for the true class points at the object in **{pct(rate)}** of them; a random patch "
                     f"in {pct(random_rate)}.")
    return "\n".join(lines)


def gallop_summary(view: dict, session: Session) -> str:
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
            cells += ["yes" if found[n]["touches"] else "**no**", pct(found[n]["on_object"])]
        if reference is not None:
            cells += [pct(reference[0][n]), pct(reference[1][n])]
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


def ood_verdict(view: dict, threshold: float) -> str:
    """Markdown: the verdict, how the suite's ID and OOD images fall at the threshold, the scores."""
    verdict = "in-distribution (ID)" if view["in_distribution"] else "out-of-distribution (OOD)"
    value = view["scores"][view["score"]]
    rows = [f"| {name} | {v:.4f} | {view['chance'][name]:.4f} |" for name, v in view["scores"].items()]
    lines = [f"### {verdict}",
             f"{view['score']} = {value:.4f} {'≥' if view['in_distribution'] else '<'} "
             f"threshold {threshold:.2f} × chance = {view['cutoff']:.4f}"]
    reference = view["reference"]
    if reference is None:
        lines.append("\nNo reference distributions for this class list (they are measured for each SynthWorld "
                     "suite's own classes, against the `ood` suite): read the score against its chance level only.")
    else:
        count = len(reference["id"])
        lines.append(f"\nAt this threshold **{pct(reference['id_kept'])}** of {count} `{reference['suite']}` test "
                     f"images (ID) and **{pct(reference['ood_kept'])}** of {len(reference['ood'])} `ood` test "
                     f"images (OOD) count as in-distribution; {view['score']} tells them apart with AUROC "
                     f"{pct(reference['auroc'])} (50 %: not at all).")
    lines += ["", "| score | value | chance level |", "|---|---|---|", *rows]
    return "\n".join(lines)


def attribution_note(view: dict, method: str, kind: str, session: Session) -> str:
    """Markdown: whose logit for which class, how long it took and, for integrated gradients, the
    completeness error."""
    note = (f"{kind} of **{METHOD_TITLES[method]}**'s logit for **{escape(session.classes[view['class_index']])}** "
            f"({view['seconds']:.2f} s).")
    if view["delta"] is not None:
        note += f" Completeness error {view['delta']:.3g} (smaller is better; raise the steps to reduce it)."
    return note
