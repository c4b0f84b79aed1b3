"""Prompt learning really learns: short runs on the bundled synth-clip, through the protocols' code.

- Each prompt learner trained on 16 shots of every class of `styles` classifies those shots better
  than zero-shot CLIP does (measured: zero-shot 76.2 %, CoOp 85.0, IVLP 91.2, PromptSRC 83.8, DiSa
  82.5): the whole path (prompted encoders, losses, optimiser, schedule, checkpoint) moves
  predictions the right way. Whether that carries over to test images is what `docs/results.md`
  measures per method and protocol; on synth-clip the gain there is small or negative.
- GalLoP's local head alone, scored on test images of `colour_shapes`' base classes, is far above
  chance, and GL-MCM separates the `shapes` test set from the held-out OOD shapes better than chance.
"""

import pytest

from vlp_core.backbone import load_clip
from vlp_core.data.base import relabel
from vlp_core.data.fewshot import base_novel_labels
from vlp_core.data.synthworld import get_suite
from vlp_core.engine.protocols import Context, evaluate, few_shot_train, fit, ood_detection
from vlp_core.engine.registry import synth_recipe

SHOTS = 16
SEED = 1
N_TEST = 25  # test images per class


@pytest.fixture(scope="module")
def ctx(tmp_path_factory):
    clip = load_clip("synth-clip")
    return Context(clip, synth_recipe, tmp_path_factory.mktemp("learning"), train_crop_scale=(0.5, 1.0),
                   progress=False)


def fit_on_shots(ctx, method, suite_name, base_only=False):
    """`method` trained on 16 shots of a suite (all classes, or the base half)
    -> (method, suite, the shots relabelled to the trained classes, their class names)."""
    suite = get_suite(suite_name, n_train=SHOTS, n_test=N_TEST)
    shots = few_shot_train(suite, SHOTS, SEED)
    labels = base_novel_labels(shots)[0] if base_only else list(range(len(suite.classnames)))
    names = [suite.classnames[i] for i in labels]
    items = relabel(shots, labels)
    run_dir = ctx.out_dir / method / suite_name / ("base" if base_only else "all")
    return fit(ctx, method, suite, items, names, SHOTS, SEED, run_dir), suite, labels, names, items


@pytest.fixture(scope="module")
def zero_shot_on_shots(ctx):
    model, suite, _, names, items = fit_on_shots(ctx, "zeroshot", "styles")
    return evaluate(ctx, model, suite, items, names)["acc"]


@pytest.mark.parametrize("method", ["coop", "ivlp", "promptsrc", "disa"])
def test_training_fits_the_shots_beyond_zero_shot(ctx, zero_shot_on_shots, method):
    model, suite, _, names, items = fit_on_shots(ctx, method, "styles")
    trained = evaluate(ctx, model, suite, items, names)["acc"]
    assert trained > zero_shot_on_shots + 4, (trained, zero_shot_on_shots)


def test_gallop_local_head_alone_is_far_above_chance(ctx):
    model, suite, labels, names, _ = fit_on_shots(ctx, "gallop", "colour_shapes", base_only=True)
    scores = evaluate(ctx, model, suite, relabel(suite.split("test"), labels), names)
    assert scores["acc_local"] > 4 * 100 / len(labels), scores  # measured 59.2, chance 6.25


def test_gl_mcm_detects_held_out_shapes(ctx):
    shapes, ood = get_suite("shapes", n_train=SHOTS, n_test=N_TEST), get_suite("ood", n_test=N_TEST)
    rows = {r["score"]: r for r in ood_detection(ctx, "gallop", shapes, [ood], SEED, SHOTS)}
    assert rows["gl_mcm"]["auroc"] > 52, rows  # measured 54-56 (docs/results.md: weak, see why there)
