"""The app's text: Markdown summaries of a session, the loaded models and each view's result.

Text a user typed (class names, file names) reaches Markdown only through `escape`; shares and
probabilities are fractions in the views' results and percentages here.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from app.handlers import Session
from app.inputs import UPLOAD
from app.models import METHOD_TITLES, UNTRAINED, AppModels
from vlp_core.backbone import DEFAULT_MODEL

MARKUP = set("\\`*_[]<>&|$#~!")  # characters Markdown, HTML or LaTeX could read as syntax
# what makes Markdown's link finder (GFM autolinks) turn text into a link: "scheme://", an email's
# "@", "www."
LINK_STARTS = re.compile(r":(?=//)|@|(?<=www)\.", re.IGNORECASE)
OUTLINE = "every object the true class names"
NOT_DIVERGED = 0.99  # local prompts whose text features all meet this mean cosine read the image alike
ON_OBJECT = ("*On the object*: a patch holding any pixel of the outlined objects. Pointing, the IoU and the "
             "top-k test all count patches this way.")
BUNDLED_NOTE = (
    "*The bundled synth-clip has only ever seen SynthWorld's rendered shapes, colours, patterns and styles: "
    "on a photo its answers mean little. For real images, restart the app with a real CLIP, e.g. "
    "`python app/main.py --model ViT-B-16-quickgelu --pretrained openai` (downloaded once), or any open_clip "
    "`--model` with a `--pretrained` tag or checkpoint file.*"
)


def escape(text: object) -> str:
    """Text shown literally inside Markdown: markup characters, and the characters by which a
    link would be recognised (`LINK_STARTS`), become HTML character references."""
    literal = "".join(f"&#{ord(c)};" if c in MARKUP else c for c in str(text))
    return LINK_STARTS.sub(lambda match: f"&#{ord(match.group())};", literal)


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
    """Markdown status of a session: the image and its true label, the class list (a suite's or
    the user's) and which of its classes the prompts were trained on, notices, and for an upload
    on the bundled model what that model knows."""
    source = f"the `{session.reference.suite}` classes" if session.reference else "your own list"
    lines = [f"**Image:** {escape(session.source)} · **classes:** {len(session.classes)} ({source})",
             f"**True label:** {true_label_text(session)}",
             f"**Prompts trained on:** {trained_text(models, session.classes)}"]
    lines += [f"- {escape(notice)}" for notice in session.notices]
    if session.source.startswith(UPLOAD) and models.bundle.name == DEFAULT_MODEL:
        lines.append(f"\n{BUNDLED_NOTE}")
    return "\n\n".join(lines[:3]) + "\n" + "\n".join(lines[3:])


def true_label_text(session: Session) -> str:
    """The image's true label and whether the class list has it."""
    if session.label is None:
        return "none (an uploaded image): no prediction can be marked right or wrong."
    if session.true_index is None:
        return (f"**{escape(session.label)}**, which is not in the class list: every prediction is wrong, and the "
                f"image is out of distribution for this list.")
    return f"**{escape(session.label)}**"


def trained_text(models: AppModels, classes: list[str]) -> str:
    """What the loaded prompts were trained on and how many of `classes` they saw (base) or not (novel)."""
    if not models.trained_tasks:
        return "no method has trained prompts."
    tasks: dict[tuple[str, int], list[str]] = {}
    for name, task in models.trained_tasks.items():
        tasks.setdefault((task, len(models.trained_classes[name])), []).append(METHOD_TITLES[name])
    what = "; ".join(f"{escape(task)}, {count} classes ({', '.join(titles)})" for (task, count), titles in tasks.items())
    notes = [models.class_part(name) for name in classes]
    base, novel = notes.count("base"), notes.count("novel")
    mixed = len(notes) - base - novel
    counts = f"{base} base (seen in training), {novel} novel" + (f", {mixed} seen by some methods" if mixed else "")
    return f"{what}. In this class list: {counts}."


def mark(right: bool | None) -> str:
    """✓ for a right prediction, ✗ for a wrong one, nothing without a true class."""
    return "" if right is None else (" ✓" if right else " ✗")


def query_text(session: Session, class_index: int, method: str) -> str:
    """The class a view shows, what it is (the true class, `method`'s prediction) and, when it is
    a wrong prediction, the true class it is not."""
    name = f"**{escape(session.classes[class_index])}**"
    predicted, true = session.predicted(method), session.true_index
    if class_index == true:
        verdict = ("predicts it too ✓" if predicted == true else
                   f"predicts **{escape(session.classes[predicted])}** ✗")
        return f"{name} (the true class; {METHOD_TITLES[method]} {verdict})"
    if class_index == predicted:
        if true is None:
            return f"{name} ({METHOD_TITLES[method]}'s prediction)"
        return (f"{name} ({METHOD_TITLES[method]}'s prediction, wrong ✗: the true class is "
                f"**{escape(session.label)}**; the map and the checks below describe the predicted class)")
    return name


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
    top = {key: int(np.argmax(p)) for key, p in probs.items()}

    def predicted(key: str) -> str:
        right = None if session.true_index is None else top[key] == session.true_index
        return f"**{escape(classes[top[key]])}**{mark(right)} {pct(probs[key].max())}"

    lines = [
        f"Saliency query: {query_text(session, view['class_index'], 'disa')}. Masked **{len(view['masked'])}** of "
        f"{patches} patches (ρ = {view['ratio']:.2f}) at random among the {round(view['pool'] * patches)} least "
        f"salient (γ = {view['pool']:.2f}), seed {view['seed']}.",
        f"- DiSa (prompted): full → {predicted('prompted_full')}, masked → {predicted('prompted_masked')}",
        f"- Frozen CLIP (60-template ensemble): full → {predicted('frozen_full')}, "
        f"masked → {predicted('frozen_masked')}",
        *[f"- {escape(notice)}" for notice in view["notices"]],
        "",
        f"**How far to trust the saliency** (green outline: {OUTLINE})",
    ]
    found = view["grounding"]
    if found is None:
        lines.append("- This image has no object mask: nothing to check the saliency against.")
    else:
        lines += [
            f"- Pointing: the most salient patch is **{'on' if found['pointing'] else 'off'}** the object.",
            f"- IoU of the {found['object_patches']} most salient patches with the {found['object_patches']} "
            f"patches on the object: {pct(found['iou'])}.",
            f"- The mask hides **{pct(found['hidden'])}** of the object's pixels; a random mask of "
            f"{len(view['masked'])} patches hides {pct(found['random_hidden'])} on average (DiSa masks "
            f"among the least salient patches: less than random means they lie off the object, as intended).",
        ]
    if view["reference"] is not None:
        rate, random_rate = view["reference"]
        lines.append(f"- On {session.reference.images} `{session.reference.suite}` test images, DiSa's saliency "
                     f"for the true class points at the object in **{pct(rate)}** of them; a random patch "
                     f"in {pct(random_rate)}.")
    if found is not None or view["reference"] is not None:
        lines.append(f"\n{ON_OBJECT}")
    return "\n".join(lines)


def gallop_summary(view: dict, session: Session) -> str:
    """Markdown: what the maps show, and per local prompt whether its top-k patches touch the object."""
    heads = ", ".join(f"{head} → **{escape(session.classes[int(np.argmax(p))])}**"
                      f"{mark(None if session.true_index is None else int(np.argmax(p)) == session.true_index)}"
                      for head, p in view["probabilities"].items())
    lines = [f"Region maps for {query_text(session, view['class_index'], 'gallop')}: cosine of each patch's local "
             f"feature with each local prompt; cyan boxes mark its top-k patches, whose mean is the prompt's "
             f"score. Combined = (global + local) / 2. Predictions: {heads}.", ""]
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
        lines.append(f"\n*Top-k on the object*: whether any of the prompt's top-k patches is on the object "
                     f"(green outline: {OUTLINE}); *share on it*: how many of them are.")
    if reference is not None:
        lines.append(f"*Test images: on it*: on {session.reference.images} `{session.reference.suite}` test "
                     f"images, how often the prompt's top-k patches for the true class touch the object; "
                     f"*k random patches*: how often k patches drawn at random would.")
    if found is not None or reference is not None:
        lines.append(f"\n{ON_OBJECT}")
    return "\n".join(lines)


def ood_verdict(view: dict) -> str:
    """Markdown: the verdict and how far to trust it at this threshold (how many of the suite's
    images of the other kind get the same verdict), the threshold, FPR95 and AUROC, the scores."""
    inside, reference = view["in_distribution"], view["reference"]
    value = view["scores"][view["score"]]
    verdict = "in-distribution (ID)" if inside else "out-of-distribution (OOD)"
    if reference is not None:
        ood, suite = f"of the `ood` images", f"of the `{reference['suite']}` images"
        verdict += (f", but at this threshold {pct(reference['ood_kept'])} {ood} are too" if inside else
                    f", but at this threshold {pct(1 - reference['id_kept'])} {suite} (ID) are too")
    lines = [f"### {verdict}",
             f"{view['score']} = {value:.4f} {'≥' if inside else '<'} threshold {view['threshold']:.3f} × chance "
             f"= {view['cutoff']:.4f}"]
    if reference is None:
        lines.append("\nNo reference distributions for this class list (they are measured for each SynthWorld "
                     "suite's own classes, against the `ood` suite): read the score against its chance level only.")
    else:
        at95, tpr95, fpr95 = reference["fpr95"]
        lines.append(f"\nAt this threshold **{pct(reference['id_kept'])}** of {len(reference['id'])} "
                     f"`{reference['suite']}` test images (ID: the TPR) and **{pct(reference['ood_kept'])}** of "
                     f"{len(reference['ood'])} `ood` test images (OOD: the FPR) count as in-distribution. The "
                     f"threshold that keeps 95 % of the ID images ({at95:.3f} × chance, the default) lets "
                     f"{pct(fpr95)} of the OOD images through (FPR95); {view['score']} tells the two apart with "
                     f"AUROC {pct(reference['auroc'])} (50 %: not at all, 100 %: perfectly).")
    rows = [f"| {name} | {v:.4f} | {view['chance'][name]:.4f} |" for name, v in view["scores"].items()]
    lines += ["", "| score | value | chance level |", "|---|---|---|", *rows]
    return "\n".join(lines)


def attribution_note(view: dict, method: str, kind: str, session: Session) -> str:
    """Markdown: whose logit for which class, how long it took and, for integrated gradients, the
    completeness error."""
    note = (f"{kind} of **{METHOD_TITLES[method]}**'s logit for **{escape(session.classes[view['class_index']])}** "
            f"({view['seconds']:.2f} s).")
    if view["delta"] is not None:
        share = f" ({pct(view['delta'] / abs(view['gap']))} of it)" if view["gap"] else ""
        note += (f" The attributions should add up to the logit's change from the baseline (a mean-colour image), "
                 f"{view['gap']:.3g}; they miss it by {view['delta']:.3g}{share}. Raise the steps to reduce it.")
    return note


def predictions_summary(view: dict, session: Session) -> str:
    """Markdown: every method's prediction with its right / wrong mark against the true label."""
    names = list(view["predicted"])
    cells = [f"{escape(view['predicted'][name])}{mark(view['right'][name])}" for name in names]
    return "\n".join([f"**True label:** {true_label_text(session)}", "",
                      "| | " + " | ".join(METHOD_TITLES[name] for name in names) + " |", "|---" * (len(names) + 1) + "|",
                      "| predicts | " + " | ".join(cells) + " |"])


def learned_summary(view: dict, session: Session) -> str:
    """Markdown: what each map pair shows and whether each map points at the object, and how
    alike GalLoP's local prompts are."""
    lines = []
    for name, maps in view["maps"].items():
        what = ("saliency: frozen patches × frozen text (left), DiSa's prompted patches × its prompted text "
                "(middle)" if maps["values"] == "saliency" else
                "local cosines: frozen CLIP's value-only features × the frozen text of GalLoP's initial prompt "
                "(left), the mean of its learned local prompts' maps (middle)")
        lines.append(f"**{METHOD_TITLES[name]}** for {query_text(session, maps['class_index'], name)}: {what}; "
                     f"right: learned − zero-shot (red: more, blue: less).")
        found = maps["grounding"]
        if found is not None:
            lines.append("- Points at the object: " + ", ".join(
                f"{side.replace('_', '-')} **{'yes' if found[side]['pointing'] else 'no'}** "
                f"(IoU {pct(found[side]['iou'])})" for side in found) + ".")
        lines.append("")
    context, text = view["local_prompts"]["context"], view["local_prompts"]["text"]
    lines += ["", "**How different GalLoP's local prompts are** (mean cosine with the other local prompts; "
              "1.0: the same prompt, they all start as the same words)", "",
              "| local prompt | context vectors | text features, this class list |", "|---|---|---|",
              *[f"| {n + 1} | {c:.3f} | {t:.3f} |" for n, (c, t) in enumerate(zip(context, text))]]
    if min(text) > NOT_DIVERGED:
        lines.append(f"\nThe local prompts have not diverged (every text cosine above {NOT_DIVERGED}): they read the "
                     f"image alike, and their maps are nearly the same map.")
    return "\n".join(lines)


def context_words_table(models: AppModels, method: str) -> pd.DataFrame:
    """The CONTEXT_WORDS nearest vocabulary words (Euclidean distance in the token embedding
    space) of each learned context vector of `method`, one row per vector."""
    rows = [[context, position + 1, ", ".join(f"{word} ({distance:.2f})" for word, distance in nearest)]
            for context, positions in models.context_words.get(method, {}).items()
            for position, nearest in enumerate(positions)]
    return pd.DataFrame(rows, columns=["context", "token", "nearest words (distance)"])
