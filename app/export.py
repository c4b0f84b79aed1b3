"""Every view as a PNG, with the few lines of Python that redraw it with vlp_core.

`export_view(models, session, view, *controls) -> [files]` draws the view's pictures again at full
quality into `<view>.png` and writes `redraw_<view>.py`, which loads the same model, prompts,
image and class list, recomputes the view's numbers with vlp_core and draws them with matplotlib
(`python redraw_<view>.py` writes `<view>_redrawn.png`). A SynthWorld sample is rendered again by
the script; an uploaded image is saved beside it as `<view>_input.png` (the model input the app
used) and read from there.
"""

from __future__ import annotations

import hashlib
import json
import textwrap
from pathlib import Path

from PIL import Image
from gradio.utils import get_upload_folder

from app import charts, render, views
from app.attribution import KINDS, attribution_view
from app.handlers import Session, disa_view, gallop_view, predictions_view, valid_seed
from app.learned import learned_view
from app.models import METHOD_TITLES, AppModels
from app.ood import OOD_SCORES, ood_view
from app.reference import OOD_SUITE, REFERENCE_IMAGES
from app.summaries import mark

def export_view(models: AppModels, session: Session, view: str, *controls) -> list[str]:
    """The files of one view at the controls' values: its PNG, the script that redraws it and, for
    an upload, the model input the script reads."""
    if view not in _EXPORTS:
        raise ValueError(f"view must be one of {', '.join(_EXPORTS)}, got {view!r}")
    title, panels, columns, code = _EXPORTS[view](models, session, *controls)
    folder = Path(get_upload_folder()) / "export" / hashlib.sha256(code.encode()).hexdigest()[:16]
    folder.mkdir(parents=True, exist_ok=True)
    files = [folder / f"{view}.png", folder / f"redraw_{view}.py"]
    Image.fromarray(render.compose(panels, columns, title)).save(files[0])
    files[1].write_text(_script(models, session, view, title, code))
    if session.sample is None:
        files.append(folder / f"{view}_input.png")
        Image.fromarray(session.pixels).save(files[2])
    return [str(path) for path in files]


def _script(models: AppModels, session: Session, view: str, title: str, body: str) -> str:
    """The whole script: what it redraws, the model, the image, the class list, then the view's `body`."""
    pretrained = "" if models.bundle.pretrained in (None, "bundled") else f", {models.bundle.pretrained!r}"
    if session.sample is None:
        pixels = f'pixels = np.asarray(Image.open("{view}_input.png").convert("RGB"))  # the model input the app used'
    else:
        suite, split, index = session.sample.split("/")
        pixels = f"pixels, mask, _ = get_suite({suite!r}, image_size=clip.image_size).render_item({split!r}, {index})"
    head = f'''\
        """{title}: the VLP Lab app's view, redrawn with vlp_core (`python redraw_{view}.py` writes {view}_redrawn.png)."""
        import matplotlib.pyplot as plt
        import numpy as np
        import torch
        from PIL import Image

        from vlp_core.backbone import load_clip
        from vlp_core.data.synthworld import get_suite
        from vlp_core.engine.trainer import load_trained
        from vlp_core.methods.registry import build_method

        clip = load_clip({models.bundle.name!r}{pretrained})
        '''
    setup = f"{pixels}\nimage = clip.preprocess(Image.fromarray(pixels))[None]  # (1, 3, S, S), as the app feeds it\n"
    setup += f"classes = {json.dumps(session.classes)}\n"
    lines = body.splitlines(keepends=True)
    imports = "".join(line for line in lines if line.startswith(("from ", "import ")))
    code = "".join(line for line in lines if not line.startswith(("from ", "import "))).lstrip("\n")
    head = textwrap.dedent(head).replace("\n\nclip = ", f"\n{imports}\nclip = ", 1)
    return head + setup + code + f'fig.savefig("{view}_redrawn.png", dpi=120, bbox_inches="tight")\n'


def _method(models: AppModels, name: str) -> str:
    """The line that loads method `name` as the app has it: its trained prompts, or its initial ones."""
    if name in models.trained_on:
        return f"{name} = load_trained({str(models.prompts_dir / name)!r}, clip)\n"
    return f"{name} = build_method({name!r}, clip).eval()  # no trained prompts: its initial ones, as in the app\n"


def _disa(models: AppModels, session: Session, class_choice, ratio, pool, seed) -> tuple:
    view = disa_view(models, session, class_choice, ratio, pool, seed)
    name = session.classes[view["class_index"]]
    panels = [(f"log saliency for {name}", views.saliency_picture(session, view)),
              (f"{len(view['masked'])} patches masked", views.masked_picture(session, view))]
    code = _method(models, "disa") + textwrap.dedent(f'''\
        disa.set_classes(classes)
        with torch.no_grad():
            out = disa.explain(image, class_index={view["class_index"]}, ratio={view["ratio"]}, pool={view["pool"]}, \
seed={valid_seed(seed)[0]})
        grid = out["grid"]
        hidden = torch.zeros(grid * grid, dtype=torch.bool)
        hidden[out["masked"]] = True
        fig, (left, right) = plt.subplots(1, 2, figsize=(9, 4))
        shown = left.imshow(out["saliency"].log().view(grid, grid).numpy(), cmap="inferno")
        fig.colorbar(shown, ax=left, label="log saliency")
        left.set_title(f"DiSa saliency for {{classes[out['class_index']]}}")
        right.imshow(pixels)
        right.imshow(np.ma.masked_equal(hidden.view(grid, grid).numpy(), False), cmap="Greys", vmin=0, vmax=1,
                     alpha=0.8, extent=(0, pixels.shape[1], pixels.shape[0], 0))
        right.set_title(f"{{len(out['masked'])}} patches masked")
        ''')
    return f"DiSa saliency for {name}", panels, 2, code


def _gallop(models: AppModels, session: Session, class_choice, same_k, k_all, *ks) -> tuple:
    view = gallop_view(session, class_choice, views.gallop_ks(same_k, k_all, ks))
    name = session.classes[view["class_index"]]
    panels = [(f"local prompt {n + 1}, k = {k}", picture)
              for n, (k, picture) in enumerate(zip(view["ks"], views.region_pictures(session, view)))]
    code = _method(models, "gallop") + textwrap.dedent(f'''\
        gallop.set_classes(classes)
        with torch.no_grad():
            out = gallop.explain(image, class_index={view["class_index"]}, ks={list(view["ks"])})
        rows, columns = out["grid"]
        fig, axes = plt.subplots(1, len(out["ks"]), figsize=(4 * len(out["ks"]), 3.5))
        for n, ax in enumerate(axes):
            shown = ax.imshow(out["maps"][n].view(rows, columns).numpy(), cmap="inferno")
            fig.colorbar(shown, ax=ax, label="cosine")
            ys, xs = np.divmod(np.flatnonzero(out["selected"][n].numpy()), columns)
            ax.scatter(xs, ys, s=14, c="cyan", marker="s")  # the prompt's top-k patches
            ax.set_title(f"local prompt {{n + 1}}, k = {{out['ks'][n]}}")
        ''')
    return f"GalLoP's local prompts for {name}", panels, 4, code


def _ood(models: AppModels, session: Session, score, temperature, threshold) -> tuple:
    view = ood_view(session, score, temperature, threshold)
    if view["reference"] is None:
        panels = [(f"{score} = {view['scores'][score]:.4f}", render.upscale(session.pixels, models.grid))]
    else:
        panels = [("ID and OOD scores", views.histogram_picture(view)), ("ROC curve", views.roc_picture(view))]
    key = OOD_SCORES[score]
    code = _method(models, "gallop") + textwrap.dedent(f'''\
        from vlp_core.methods.ood import auroc, fpr95_point, roc_curve

        gallop.set_classes(classes)
        with torch.no_grad():
            value = float(gallop.ood_scores(image, {temperature})[{key!r}][0])
        cutoff = {threshold} * {view["chance"][score]!r}  # the threshold x the score's chance level
        print(f"{score} = {{value:.4f}}: {{'in' if value >= cutoff else 'out of'}} distribution at {{cutoff:.4f}}")
        ''')
    if view["reference"] is None:
        code += 'fig = plt.figure()\nplt.imshow(pixels)\nplt.title(f"{score} = {value:.4f}")\n'
    else:
        code += textwrap.dedent(f'''\
            id_images = get_suite({view["reference"]["suite"]!r}, image_size=clip.image_size).render_batch(
                clip.preprocess, "test", {REFERENCE_IMAGES})[0]
            ood_images = get_suite({OOD_SUITE!r}, image_size=clip.image_size).render_batch(
                clip.preprocess, "test", {REFERENCE_IMAGES})[0]
            with torch.no_grad():
                id_scores = gallop.ood_scores(id_images, {temperature})[{key!r}]
                ood_scores = gallop.ood_scores(ood_images, {temperature})[{key!r}]
            fpr, tpr, _ = roc_curve(id_scores, ood_scores)
            _, tpr95, fpr95 = fpr95_point(id_scores, ood_scores)
            fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
            left.hist([id_scores.numpy(), ood_scores.numpy()], bins=30, label=["ID", "OOD"], alpha=0.6)
            left.axvline(cutoff, color="black", linestyle="--", label="threshold")
            left.axvline(value, color="red", label="this image")
            left.set_xlabel("{score}")
            left.legend()
            right.plot(np.r_[0, fpr], np.r_[0, tpr])
            right.plot([fpr95], [tpr95], "ko", fillstyle="none", label=f"95 % TPR: FPR {{100 * fpr95:.0f}} %")
            right.set(xlabel="FPR (OOD kept)", ylabel="TPR (ID kept)",
                      title=f"AUROC {{100 * auroc(id_scores, ood_scores):.1f}} %")
            right.legend()
            ''')
    return f"OOD detection with {score} (T = {temperature})", panels, 2, code


def _predictions(models: AppModels, session: Session, top_k) -> tuple:
    view = predictions_view(models, session, int(top_k))
    titles = {name: f"{METHOD_TITLES[name]}{mark(view['right'][name])}" for name in view["top"]}
    panels = [("each method's top classes", charts.prediction_bars(view["top"], titles))]
    code = "".join(_method(models, name) for name in models.methods) + textwrap.dedent(f'''\
        methods = {{{", ".join(f"{name!r}: {name}" for name in models.methods)}}}
        probabilities = {{}}
        with torch.no_grad():
            for name, method in methods.items():
                method.set_classes(classes)
                probabilities[name] = torch.softmax(method.logits(image), dim=-1)[0]
        fig, axes = plt.subplots(1, len(methods), figsize=(3 * len(methods), 3))
        for ax, (name, p) in zip(axes, probabilities.items()):
            top = p.topk(min({int(top_k)}, len(classes)))
            ax.barh([classes[i] for i in top.indices.flip(0)], top.values.flip(0).numpy())
            ax.set_title(name)
        fig.tight_layout()
        ''')
    return "Every method's prediction", panels, 1, code


def _learned(models: AppModels, session: Session, class_choice, words_method) -> tuple:
    view = learned_view(models, session, class_choice)
    panels = []
    for name, maps in view["maps"].items():
        drawings = views.learned_drawings(session, maps, view["grid"])
        panels += [(f"{METHOD_TITLES[name]}: {part.replace('_', '-')}", draw()) for part, draw in drawings.items()]
    indices = {name: maps["class_index"] for name, maps in view["maps"].items()}
    words = views.method_name(words_method)
    loads = dict.fromkeys([*indices, words])
    code = "".join(_method(models, name) for name in loads) + textwrap.dedent(f'''\
        from vlp_core.methods.interpret import nearest_words, token_word

        maps = {{}}
        with torch.no_grad():
            for name, method, class_index in {"(" + ", ".join(f"({n!r}, {n}, {i})" for n, i in indices.items()) + ")"}:
                method.set_classes(classes)
                maps[name] = method.explain_cache(image).zero_shot_vs_learned(class_index)
        grid = clip.model.visual.grid_size[0]
        fig, axes = plt.subplots(len(maps), 3, figsize=(12, 3.6 * len(maps)), squeeze=False)
        for row, (name, found) in zip(axes, maps.items()):
            for ax, part in zip(row, ("zero_shot", "learned", "difference")):
                values = found[part].log() if found["values"] == "saliency" and part != "difference" else found[part]
                shown = ax.imshow(values.view(grid, grid).numpy(), cmap="RdBu_r" if part == "difference" else "inferno")
                fig.colorbar(shown, ax=ax)
                ax.set_title(f"{{name}}: {{part}} ({{found['values']}})")
        table = clip.model.token_embedding.weight
        for context, vectors in {words}.text_contexts().items():
            distances, ids = nearest_words(vectors, table, k=3)
            print(context, [[(token_word(clip.tokenizer, i), round(d, 2)) for i, d in zip(row_ids, row)]
                            for row_ids, row in zip(ids.tolist(), distances.tolist())])
        ''')
    return "What the prompts learned", panels, 3, code


def _attribution(models: AppModels, session: Session, method_title, class_choice, kind, steps) -> tuple:
    name, kind_key = views.method_name(method_title), KINDS.get(kind, kind)
    view = attribution_view(models, session, name, class_choice, kind, int(steps))
    panels = [(f"{kind} of {METHOD_TITLES[name]}'s logit for {session.classes[view['class_index']]}",
               views.attribution_picture(models, session, view))]
    code = _method(models, name) + f"{name}.set_classes(classes)\n"
    if kind_key == "integrated_gradients":
        code += textwrap.dedent(f'''\
            from captum.attr import IntegratedGradients

            attribution = IntegratedGradients({name}.logits).attribute(
                image, baselines=torch.zeros_like(image), target={view["class_index"]}, n_steps={int(steps)},
                internal_batch_size={int(steps)})
            values = attribution[0].abs().sum(0).detach()  # |attribution| summed over colour channels
            ''')
    else:
        code += textwrap.dedent(f'''\
            from captum.attr import LayerActivation, LayerGradientXActivation

            block = clip.model.visual.transformer.resblocks[-2]  # Grad-CAM on the penultimate block's patch tokens
            gradients = LayerGradientXActivation({name}.logits, block, multiply_by_inputs=False).attribute(
                image, target={view["class_index"]})
            activations = LayerActivation({name}.logits, block).attribute(image)
            grid = clip.model.visual.grid_size[0]
            patches = slice(1, 1 + grid * grid)  # tokens are [CLS, patches, prompts]
            values = torch.relu(activations[0, patches] @ gradients[0, patches].mean(0)).detach().view(grid, grid)
            ''')
    code += 'fig = plt.figure()\nplt.imshow(values.numpy(), cmap="inferno")\nplt.colorbar(label="attribution")\n'
    return f"{kind} of {METHOD_TITLES[name]}", panels, 1, code


_EXPORTS = {"disa": _disa, "gallop": _gallop, "ood": _ood, "predictions": _predictions, "learned": _learned,
            "attribution": _attribution}
