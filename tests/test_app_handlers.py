"""The app's handlers called directly: values, shapes, caching, bad input, and concurrent sessions."""

import copy
import itertools
import json
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from matplotlib import colormaps
from PIL import Image


from app import handlers, inputs, reference, render
from app.attribution import attribution_view
from app.handlers import PREDICTED
from app.models import UNTRAINED, load_models, synth_classes
from vlp_core.commands import main as vlp
from vlp_core.data.synthworld import get_suite
from vlp_core.engine.metrics import patch_coverage, pointing_hits
from vlp_core.methods.templates import IMAGENET_TEMPLATES

DEFAULT_TEXT = ", ".join(handlers.DEFAULT_CLASSES)
C = len(handlers.DEFAULT_CLASSES)


@pytest.fixture(scope="module")
def prompts(tmp_path_factory):
    """A prompts folder with a trained CoOp (one short epoch), a broken DiSa checkpoint, a CoOp
    checkpoint misfiled under ivlp, and nothing for the other methods."""
    root = tmp_path_factory.mktemp("prompts")
    assert vlp(["train", "--method", "coop", "--model", "vlp-tiny", "--epochs", "1", "--shots", "1",
                "--out", str(root / "coop"), "--quiet"]) == 0
    shutil.copytree(root / "coop", root / "ivlp")
    (root / "disa").mkdir()
    (root / "disa" / "checkpoint.json").write_text("{not json")
    return root


@pytest.fixture(scope="module")
def models(tiny, prompts):
    return load_models(tiny, prompts)


@pytest.fixture(scope="module")
def session(models):
    outcome = handlers.load_sample(models, "shapes/test/3", DEFAULT_TEXT)
    assert outcome.session is not None, outcome.message
    return outcome.session


def _write(path: Path, array: np.ndarray, **kwargs) -> str:
    Image.fromarray(array, **kwargs).save(path)
    return str(path)


def test_checkpoints_load_or_fall_back_with_a_notice(models, prompts):
    assert models.status["zeroshot"] == "no learned tensors"
    assert models.status["coop"] == f"trained ({prompts / 'coop'})"
    for name in ("ivlp", "promptsrc", "disa", "gallop"):
        assert models.status[name] == UNTRAINED
    notices = "\n".join(models.notices)
    assert "holds a coop checkpoint" in notices and "does not fit" in notices and "no checkpoint in" in notices
    assert all(not p.requires_grad for m in models.methods.values() for p in m.parameters())


def test_every_method_predicts_a_probability_vector(session):
    assert list(session.probabilities) == ["zeroshot", "coop", "ivlp", "promptsrc", "disa", "gallop"]
    for probabilities in session.probabilities.values():
        assert probabilities.shape == (C,) and (probabilities >= 0).all()
        assert probabilities.sum() == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("ratio, pool", [(0.0, 0.5), (0.3, 0.5), (0.25, 0.25), (0.5, 1.0), (1.0, 1.0)])
def test_disa_view_saliency_and_mask_sizes(models, session, ratio, pool):
    view = handlers.disa_view(models, session, PREDICTED, ratio, pool, seed=3)
    patches = models.num_patches
    assert view["saliency"].shape == (patches,)
    assert view["saliency"].sum() == pytest.approx(1.0, abs=1e-5)
    assert len(view["masked"]) == round(ratio * patches) == len(set(view["masked"].tolist()))
    least_salient = set(np.argsort(view["saliency"], kind="stable")[: round(pool * patches)].tolist())
    assert set(view["masked"].tolist()) <= least_salient
    for probabilities in view["probabilities"].values():
        assert probabilities.shape == (C,) and probabilities.sum() == pytest.approx(1.0, abs=1e-5)
    found = view["grounding"]
    assert 0.0 <= found["iou"] <= 1.0 and found["object_patches"] >= 1
    coverage = patch_coverage(session.mask, models.grid)
    assert found["hidden"] == pytest.approx(float(coverage[view["masked"]].sum() / coverage.sum()))
    assert found["random_hidden"] == len(view["masked"]) / patches
    assert found["hidden"] == {0.0: 0.0, 1.0: 1.0}.get(ratio, found["hidden"])


@pytest.mark.parametrize("seed, used", [(1e30, handlers.MAX_SEED), (-5, 0), (float("nan"), 0), (None, 0)])
def test_disa_mask_seed_out_of_range_is_clamped_with_a_notice(models, session, seed, used):
    view = handlers.disa_view(models, session, PREDICTED, 0.3, 0.5, seed)
    assert view["seed"] == used and "mask seed" in view["notices"][0]
    same = handlers.disa_view(models, session, PREDICTED, 0.3, 0.5, used)
    np.testing.assert_array_equal(view["masked"], same["masked"])
    assert same["notices"] == []


def test_disa_pool_below_ratio_is_raised_with_a_notice(models, session):
    view = handlers.disa_view(models, session, "circle", 0.4, 0.1, seed=0)
    assert view["pool"] == 0.4 and "deterministic bottom-ρ" in view["notices"][-1]
    assert view["class_index"] == 0


@pytest.mark.parametrize("choice, ratio, pool, seed", [(PREDICTED, 0.3, 0.5, 0), ("star", 0.2, 0.9, 7)])
def test_disa_slider_equals_explain_from_scratch(models, session, choice, ratio, pool, seed):
    view = handlers.disa_view(models, session, choice, ratio, pool, seed)
    disa = models.methods["disa"]
    disa.set_classes(session.classes)
    class_index = None if choice == PREDICTED else session.classes.index(choice)
    scratch = disa.explain(session.disa.image, class_index, ratio, pool, seed)
    assert view["class_index"] == scratch["class_index"]
    np.testing.assert_allclose(view["saliency"], scratch["saliency"].numpy(), rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(view["masked"], scratch["masked"].numpy())
    for key, probabilities in view["probabilities"].items():
        np.testing.assert_allclose(probabilities, scratch[key].numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("ks, expected", [(None, (5, 10, 15, 20)), (7, (7, 7, 7, 7)),
                                          ([1, 2, 3, 64], (1, 2, 3, 64)), ([5, 10, 15, 200], (5, 10, 15, 64))])
def test_gallop_view_marks_exactly_k_patches_and_equals_explain(models, session, ks, expected):
    view = handlers.gallop_view(session, "heart", ks)
    assert view["ks"] == expected
    assert view["maps"].shape == view["selected"].shape == (4, models.num_patches)
    assert view["selected"].sum(1).tolist() == list(expected)
    gallop = models.methods["gallop"]
    gallop.set_classes(session.classes)
    scratch = gallop.explain(session.disa.image, session.classes.index("heart"), ks)
    np.testing.assert_allclose(view["maps"], scratch["maps"].numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(view["selected"], scratch["selected"].numpy())
    combined = torch.softmax(scratch["logits"], -1).numpy()
    np.testing.assert_allclose(view["probabilities"]["combined"], combined, rtol=1e-5, atol=1e-6)
    for probabilities in view["probabilities"].values():
        assert probabilities.sum() == pytest.approx(1.0, abs=1e-5)
    assert len(view["grounding"]) == 4


def test_grounding_against_a_known_object():
    coverage = torch.zeros(16)
    coverage[[5, 6]], coverage[7] = 1.0, 0.2
    scores = torch.arange(16.0)
    scores[5], scores[6] = 100.0, 99.0
    assert handlers.grounding(scores, None, coverage) == {"pointing": True, "iou": 1.0, "object_patches": 2,
                                                          "touches": True, "on_object": 1.0}
    selected = torch.zeros(16, dtype=torch.bool)
    selected[[6, 7, 8]] = True
    found = handlers.grounding(scores, selected, coverage)
    assert found["iou"] == pytest.approx(1 / 4) and found["on_object"] == pytest.approx(2 / 3) and found["touches"]
    selected[:] = False
    selected[[0, 15]] = True
    assert not handlers.grounding(scores, selected, coverage)["touches"]
    assert not handlers.grounding(-scores, selected, coverage)["pointing"]


def test_ood_view_equals_the_method_and_thresholds(models, session):
    view = handlers.ood_view(session, "GL-MCM", 0.5, 1.0)
    gallop = models.methods["gallop"]
    gallop.set_classes(session.classes)
    scratch = gallop.ood_scores(session.disa.image, temperature=0.5)
    for name, key in handlers.OOD_SCORES.items():
        assert view["scores"][name] == pytest.approx(float(scratch[key][0]), rel=1e-5)
    assert view["chance"]["GL-MCM"] == pytest.approx(2 / C)
    assert view["in_distribution"]  # a score is never below its chance level
    assert not handlers.ood_view(session, "MCM", 0.5, C + 0.1)["in_distribution"]  # (C + 0.1) x 1/C > 1
    with pytest.raises(ValueError, match="score must be one of"):
        handlers.ood_view(session, "energy", 1.0, 1.0)


def test_slider_handlers_reuse_the_cache(models, session):
    """Sliders run no text pass; GalLoP/OOD/predictions no image pass; DiSa only its two masked forwards,
    which share one run of the stem (none while DiSa still holds the image's stem tokens)."""
    visual = models.bundle.model.visual
    passes, stem_runs = [], []
    hooks = [visual.ln_pre.register_forward_hook(lambda *_: passes.append(1)),  # once per image-tower pass
             visual.conv1.register_forward_hook(lambda *_: stem_runs.append(1))]
    text_calls = models.methods["zeroshot"].frozen_text.encoder_calls
    try:
        handlers.gallop_view(session, PREDICTED, 3)
        handlers.ood_view(session, "MCM", 1.0, 1.0)
        handlers.predictions_view(models, session, 3)
        assert passes == [] and stem_runs == []
        handlers.disa_view(models, session, "ring", 0.6, 0.8, seed=1)
        assert len(passes) == 2 and len(stem_runs) <= 1
    finally:
        for hook in hooks:
            hook.remove()
    assert models.methods["zeroshot"].frozen_text.encoder_calls == text_calls


def test_predictions_view_top_k_and_table(models, session):
    view = handlers.predictions_view(models, session, 3)
    assert set(view["top"]) == set(models.methods)
    for name, top in view["top"].items():
        values = list(top.values())
        assert len(top) == 3 and values == sorted(values, reverse=True)
        assert values[0] == pytest.approx(session.probabilities[name].max())
    assert view["headers"][0] == "class" and len(view["rows"]) == C and not view["truncated"]


def test_class_list_is_cleaned(models):
    budget = models.name_token_budget
    long_name = "very " * 40 + "long striped hexagon"
    cleaned = inputs.parse_classes(f"circle,  Circle\nsquare,, circle , {long_name}", models.bundle.tokenizer, budget)
    assert cleaned.names[:2] == ["circle", "square"] and len(cleaned.names) == 3
    assert inputs.token_count(cleaned.names[2], models.bundle.tokenizer) <= budget
    assert len(cleaned.names[2]) <= inputs.MAX_NAME_CHARS
    assert any("duplicate" in n for n in cleaned.notices) and any("Shortened" in n for n in cleaned.notices)


@pytest.mark.parametrize("text", ["", "  , \n ,", None])
def test_empty_class_list_is_refused_with_a_message(models, session, text):
    outcome = handlers.change_classes(models, session, text)
    assert outcome.session is None and "class list is empty" in outcome.message


def test_hundreds_of_classes(models, session):
    names = ", ".join(f"shape number {i}" for i in range(200))
    outcome = handlers.change_classes(models, session, names)
    assert outcome.session is not None
    view = handlers.predictions_view(models, outcome.session, 5)
    assert all(len(top) == 5 for top in view["top"].values())
    assert len(view["rows"]) == handlers.TABLE_ROWS and view["truncated"]
    assert outcome.session.probabilities["gallop"].shape == (200,)


def test_bad_files_give_a_message(models, tmp_path, monkeypatch):
    text_file = tmp_path / "notes.png"
    text_file.write_text("not an image")
    valid = _write(tmp_path / "ok.png", np.zeros((40, 40, 3), np.uint8))
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(Path(valid).read_bytes()[:60])
    cases = {str(text_file): "not an image", str(truncated): "corrupt", None: "No file",
             str(tmp_path / "missing.png"): "No file"}
    for path, message in cases.items():
        outcome = handlers.load_upload(models, path, DEFAULT_TEXT)
        assert outcome.session is None and message in outcome.message
    monkeypatch.setattr(inputs, "MAX_PIXELS", 1000)
    outcome = handlers.load_upload(models, valid, DEFAULT_TEXT)
    assert outcome.session is None and "megapixels" in outcome.message


def test_unusual_images_are_converted_with_notices(models, tmp_path):
    size = models.bundle.image_size
    ramp = np.linspace(0, 65535, 90 * 120).reshape(90, 120).astype(np.uint16)
    rgba = np.zeros((30, 30, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 255, 128
    cases = {
        _write(tmp_path / "gray.png", np.full((50, 70), 100, np.uint8)): "grayscale",
        _write(tmp_path / "rgba.png", rgba): "transparent",
        _write(tmp_path / "deep.png", ramp): "16-bit",
        _write(tmp_path / "big.jpg", np.full((900, 1300, 3), 200, np.uint8)): "Resized from 1300x900",
        _write(tmp_path / "strip.png", np.full((2, 6000, 3), 50, np.uint8)): "Resized from 6000x2",
    }
    for path, notice in cases.items():
        outcome = handlers.load_upload(models, path, DEFAULT_TEXT)
        assert outcome.session is not None, outcome.message
        assert outcome.session.pixels.shape == (size, size, 3) and outcome.session.pixels.dtype == np.uint8
        assert notice in " ".join(outcome.session.notices) and outcome.session.mask is None
    deep = handlers.load_upload(models, str(tmp_path / "deep.png"), DEFAULT_TEXT).session.pixels
    assert deep.max() > 200  # 16-bit values were scaled, not clipped to white
    composited = handlers.load_upload(models, str(tmp_path / "rgba.png"), DEFAULT_TEXT).session.pixels
    assert tuple(composited[size // 2, size // 2]) == pytest.approx((255, 127, 127), abs=2)


def test_unknown_sample_gives_a_message(models):
    outcome = handlers.load_sample(models, "nosuchsuite/test/1", DEFAULT_TEXT)
    assert outcome.session is None and "Unknown SynthWorld sample" in outcome.message


def test_sessions_do_not_share_state(models, session):
    """Another user's class list changes the shared methods, never this user's views."""
    before = handlers.gallop_view(session, PREDICTED, None)
    disa_before = handlers.disa_view(models, session, PREDICTED, 0.3, 0.5, 0)
    results = {}

    def load(key: str, text: str) -> None:
        results[key] = handlers.load_sample(models, key, text).session

    threads = [threading.Thread(target=load, args=(key, text)) for key, text in
               (("ood/test/3", "pentagon, flower"), ("scenes/test/8", DEFAULT_TEXT))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results["ood/test/3"].classes == ["pentagon", "flower"]
    assert results["scenes/test/8"].probabilities["disa"].shape == (C,)
    after = handlers.gallop_view(session, PREDICTED, None)
    np.testing.assert_array_equal(before["maps"], after["maps"])
    disa_after = handlers.disa_view(models, session, PREDICTED, 0.3, 0.5, 0)
    for key, probabilities in disa_before["probabilities"].items():
        np.testing.assert_allclose(probabilities, disa_after["probabilities"][key], rtol=1e-5, atol=1e-6)
    attribution = attribution_view(models, session, "coop", handlers.DEFAULT_CLASSES[-1], "gradcam")
    assert attribution["class_index"] == C - 1  # resolved in this session's class list


@pytest.mark.parametrize("method", ["zeroshot", "disa", "gallop"])
def test_attributions(models, session, method):
    size, grid = models.bundle.image_size, models.grid
    gradients = attribution_view(models, session, method, PREDICTED, "Integrated gradients", steps=8)
    assert gradients["map"].shape == (size, size) and np.isfinite(gradients["map"]).all()
    assert gradients["map"].max() > 0 and gradients["delta"] < 1e-2
    cam = attribution_view(models, session, method, "circle", "gradcam")
    assert cam["map"].shape == (grid, grid) and (cam["map"] >= 0).all() and cam["class_index"] == 0
    with pytest.raises(ValueError, match="kind must be one of"):
        attribution_view(models, session, method, PREDICTED, "saliency")


def test_render_pictures(models, session):
    grid = models.grid
    side = render.display_side(grid)
    picture = render.heatmap(session.pixels, np.arange(grid * grid, dtype=float), grid, alpha=1.0)
    assert picture.shape == (side, side, 3) and picture.dtype == np.uint8
    cell = side // grid
    colours = (colormaps[render.HEAT_CMAP](np.arange(grid * grid) / (grid * grid - 1))[:, :3] * 255).round()
    for patch in (0, 5, grid * grid - 1):  # every pixel of a patch's cell has the patch's colour
        row, col = divmod(patch, grid)
        assert (picture[row * cell:(row + 1) * cell, col * cell:(col + 1) * cell] == colours[patch]).all()
    picture = render.heatmap(session.pixels, np.arange(grid * grid, dtype=float), grid)
    masked = render.fill_patches(render.upscale(session.pixels, grid), np.array([0, 5]), grid)
    assert (masked[:cell, :cell] == render.MASKED).all() and (masked[:cell, 5 * cell:6 * cell] == render.MASKED).all()
    boxed = render.outline_patches(picture, np.eye(1, grid * grid, 3, dtype=bool)[0], grid)
    assert (boxed[:cell, 3 * cell] == render.SELECTED).all()  # left border of patch 3
    assert (boxed[cell // 2, 3 * cell + cell // 2] == picture[cell // 2, 3 * cell + cell // 2]).all()  # inside


# ---------------------------------------------------------------- class lists, references, landing sample


@pytest.mark.parametrize("key, suite", [("scenes/test/3", "scenes"), ("styles/test/8", "styles"),
                                        ("colour_shapes/test/3", "colour_shapes"), ("shapes@sketch/test/3", "shapes"),
                                        ("ood/test/3", "shapes")])
def test_a_sample_brings_its_suites_class_list(key, suite):
    assert inputs.sample_classes(key) == get_suite(suite).classnames
    assert (inputs.read_sample(key, 64).mask is None) == (suite == "styles")  # styles: the label is no object
    with pytest.raises(inputs.InputError, match="Unknown SynthWorld suite"):
        inputs.sample_classes("nosuchsuite/test/1")


def test_a_new_class_list_encodes_each_text_once(models, session, monkeypatch):
    """Frozen text: one pass per group of templates with as many tokens before the name, over the
    names no earlier list had, a progress report after each; every prompted method: one pass.
    Asking again for the same names (in another order) encodes no text."""
    passes, reports = [], []
    hook = models.bundle.model.token_embedding.register_forward_hook(lambda *_: passes.append(1))
    names = [f"thing {i}" for i in range(7)]
    try:
        outcome = handlers.change_classes(models, session, ", ".join(names), lambda i, n: reports.append((i, n)))
        first = len(passes)
        handlers.change_classes(models, session, ", ".join(reversed(names)))
    finally:
        hook.remove()
    trained_text_passes = 5  # CoOp, IVLP, PromptSRC, DiSa, GalLoP (all its prompts in one pass)
    templates = list(dict.fromkeys((*models.methods["zeroshot"].templates, *IMAGENET_TEMPLATES,
                                    models.methods["gallop"].zero_shot_template)))
    heads = [len(models.bundle.tokenizer.encode(template.partition("{}")[0])) for template in templates]
    groups = list(dict.fromkeys(heads))
    assert first == len(groups) + trained_text_passes
    assert len(passes) == first + trained_text_passes
    assert reports == [(done, len(templates)) for done in itertools.accumulate(heads.count(h) for h in groups)]
    assert outcome.session.reference is None  # not a suite's class list


def test_reference_measures_of_a_suite(models, session):
    ref = session.reference
    assert ref is reference.reference_for(models, handlers.DEFAULT_CLASSES) and ref.suite == "shapes"
    assert ref.images == reference.REFERENCE_IMAGES
    rate, random_rate = ref.pointing()
    area = float((ref.coverage > 0).float().mean())
    assert 0 <= rate <= 1 and random_rate == pytest.approx(area)
    touched, random = ref.touch([1, 2, 3, models.num_patches])
    assert touched[-1] == random[-1] == pytest.approx(1.0)  # every patch touches every object
    assert touched[0] == pytest.approx(float(pointing_hits(ref.local_maps[:, :, 0], ref.coverage).float().mean()))
    assert random[0] == pytest.approx(area)  # one random patch: the object's share of the patches
    objects = (ref.coverage > 0).sum(1).numpy()
    patches = models.num_patches
    assert random[1] == pytest.approx(np.mean(1 - (patches - objects) * (patches - objects - 1) / (patches * (patches - 1))))
    gallop = models.methods["gallop"]
    suite = get_suite("ood", image_size=models.bundle.image_size)
    images = torch.stack([models.bundle.preprocess(suite.load_image(item)) for item in suite.split("test")[:4]])
    gallop.set_classes(session.classes)
    expected = gallop.ood_scores(images, temperature=0.5)["mcm"].numpy()
    np.testing.assert_allclose(ref.ood_scores("mcm", 0.5)[1][:4], expected, rtol=1e-5)
    assert 0 <= ref.auroc("gl_mcm", 1.0) <= 1
    assert reference.reference_for(models, ["circle", "square"]) is None


def test_styles_reference_has_no_object_measures(models):
    session = handlers.load_sample(models, "styles/test/3", ", ".join(inputs.sample_classes("styles/test/3"))).session
    assert session.mask is None and session.reference.suite == "styles"
    assert session.reference.pointing() is None and session.reference.ood_scores("mcm", 1.0) is None
    assert handlers.disa_view(models, session, PREDICTED, 0.3, 0.5, 0)["grounding"] is None
    assert handlers.ood_view(session, "MCM", 1.0, 1.0)["reference"] is None


def test_trust_numbers_in_the_views(models, session):
    disa = handlers.disa_view(models, session, PREDICTED, 0.3, 0.5, 0)
    assert disa["reference"] == session.reference.pointing()
    gallop = handlers.gallop_view(session, PREDICTED, [1, 2, 3, 4])
    touched, random = session.reference.touch((1, 2, 3, 4))
    np.testing.assert_array_equal(gallop["reference"][0], touched)
    assert all(found["touches"] == (found["on_object"] > 0) for found in gallop["grounding"])
    view = handlers.ood_view(session, "GL-MCM", 1.0, 1.2)
    found = view["reference"]
    assert found["suite"] == "shapes" and len(found["id"]) == len(found["ood"]) == reference.REFERENCE_IMAGES
    assert found["id_kept"] == pytest.approx(float((found["id"] >= view["cutoff"]).mean()))
    assert found["ood_kept"] == pytest.approx(float((found["ood"] >= view["cutoff"]).mean()))
    threshold = handlers.threshold_keeping(session.reference, "GL-MCM", 1.0, 0.95, C)
    assert handlers.ood_view(session, "GL-MCM", 1.0, threshold)["reference"]["id_kept"] >= 0.95


def test_landing_sample_is_the_first_test_item_zero_shot_gets_right(models):
    key = handlers.landing_sample(models)
    suite_name, split, index = key.split("/")
    assert suite_name == handlers.DEFAULT_SUITE and split == "test"
    suite = get_suite(suite_name, image_size=models.bundle.image_size)
    zeroshot = models.methods["zeroshot"]
    zeroshot.set_classes(suite.classnames)
    items = suite.split("test")[: int(index) + 1]
    images = torch.stack([models.bundle.preprocess(suite.load_image(item)) for item in items])
    with torch.no_grad():
        right = (zeroshot.logits(images).argmax(-1) == torch.tensor([item.label for item in items])).tolist()
    assert right == [False] * int(index) + [True]


def test_what_each_checkpoint_was_trained_on(models, prompts):
    assert set(models.trained_on) == {"coop"}  # the only usable checkpoint
    record = json.loads((prompts / "coop" / "run.json").read_text())
    names = json.loads((prompts / "coop" / "checkpoint.json").read_text())["classes"]
    assert models.trained_on["coop"].endswith(f"({len(names)}: {', '.join(names[:4])}, …), "
                                              f"{record['shots']} shots, seed {record['seed']}")
    assert models.trained_on["coop"].startswith(f"{record['dataset']} {record['classes']} classes")
    assert synth_classes(get_suite("colour_shapes").classnames[:16]) == "colour_shapes base classes"
    assert synth_classes(["circle", "red heart"]) is None


def test_a_session_copy_is_the_session(session):
    """gradio copies a State's value for each new user: a session is a value, so the copy is the
    session itself, never a copy of the CLIP its DiSa cache refers to."""
    copied = copy.deepcopy({"state": session})["state"]
    assert copied is session and copied.disa.method is session.disa.method
