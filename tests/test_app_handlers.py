"""The app's handlers called directly: values, shapes, caching, bad input, and concurrent sessions."""

import copy
import itertools
import json
import runpy
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from matplotlib import colormaps
from PIL import Image


from app import charts, handlers, inputs, ood, reference, render
from app.attribution import attribution_view
from app.handlers import PREDICTED, TRUE_CLASS
from app.learned import learned_view
from app.models import UNTRAINED, load_models, synth_classes
from vlp_core.commands import main as vlp
from vlp_core.data.synthworld import get_suite
from vlp_core.engine.metrics import patch_coverage, pointing_hits
from vlp_core.data.synthworld import BACKGROUND, render_objects
from vlp_core.methods.ood import fpr95_point
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
    """One definition of "on the object": any pixel of it. Patches 5 and 6 are all object, patch 7 a
    fifth: three patches are on the object, for pointing, IoU and the top-k test alike."""
    coverage = torch.zeros(16)
    coverage[[5, 6]], coverage[7] = 1.0, 0.2
    scores = torch.arange(16.0)
    scores[5], scores[6] = 100.0, 99.0
    # the 3 most salient patches: 5, 6, 15; on the object 5, 6, 7: IoU 2 / 4
    assert handlers.grounding(scores, None, coverage) == pytest.approx(
        {"pointing": True, "iou": 0.5, "object_patches": 3, "touches": True, "on_object": 2 / 3})
    scores[7] = 98.0  # now the top 3 are exactly the object's patches
    assert handlers.grounding(scores, None, coverage)["iou"] == 1.0
    selected = torch.zeros(16, dtype=torch.bool)
    selected[[6, 7, 8]] = True  # 6 and 7 on the object: IoU 2 / |{5, 6, 7, 8}|
    found = handlers.grounding(scores, selected, coverage)
    assert found["iou"] == pytest.approx(2 / 4) and found["on_object"] == pytest.approx(2 / 3) and found["touches"]
    scores[7] = 0.0
    scores[15] = 1000.0  # the top patch off the object, the second on it
    assert not handlers.grounding(scores, None, coverage)["pointing"]
    selected[:] = False
    selected[[0, 15]] = True
    assert not handlers.grounding(scores, selected, coverage)["touches"]


def test_ood_view_equals_the_method_and_thresholds(models, session):
    view = ood.ood_view(session, "GL-MCM", 0.5, 1.0)
    gallop = models.methods["gallop"]
    gallop.set_classes(session.classes)
    scratch = gallop.ood_scores(session.disa.image, temperature=0.5)
    for name, key in ood.OOD_SCORES.items():
        assert view["scores"][name] == pytest.approx(float(scratch[key][0]), rel=1e-5)
    assert view["chance"]["GL-MCM"] == pytest.approx(2 / C)
    assert view["in_distribution"]  # a score is never below its chance level
    assert not ood.ood_view(session, "MCM", 0.5, C + 0.1)["in_distribution"]  # (C + 0.1) x 1/C > 1
    with pytest.raises(ValueError, match="score must be one of"):
        ood.ood_view(session, "energy", 1.0, 1.0)


def test_the_default_ood_threshold_is_fpr95s(session):
    """The default keeps at least 95 % of the suite's ID images, one slider step more keeps fewer:
    it is FPR95's threshold (vlp_core's `fpr95_point`) on the slider's grid."""
    for score, temperature in (("GL-MCM", 1.0), ("MCM", 0.5), ("L-MCM", 1.0)):
        threshold = ood.default_threshold(session, score, temperature)
        view = ood.ood_view(session, score, temperature, threshold)
        found = view["reference"]
        at95, tpr95, fpr95 = fpr95_point(found["id"], found["ood"])
        assert found["fpr95"] == (at95 / view["chance"][score], tpr95, fpr95)
        assert view["cutoff"] <= at95 and found["id_kept"] == tpr95 and found["ood_kept"] == fpr95
        higher = ood.ood_view(session, score, temperature, threshold + ood.THRESHOLD_STEP)
        assert higher["cutoff"] > at95 and higher["reference"]["id_kept"] < 0.95
        fpr, tpr = found["roc"]
        assert fpr[-1] == tpr[-1] == 1.0 and (fpr[np.argmax(tpr >= 0.95)], tpr[np.argmax(tpr >= 0.95)]) == (fpr95, tpr95)


def test_slider_handlers_reuse_the_cache(models, session):
    """Sliders run no text pass; GalLoP/OOD/predictions/learned no image pass; DiSa only its two masked forwards,
    which share one run of the stem (none while DiSa still holds the image's stem tokens)."""
    visual = models.bundle.model.visual
    passes, stem_runs = [], []
    hooks = [visual.ln_pre.register_forward_hook(lambda *_: passes.append(1)),  # once per image-tower pass
             visual.conv1.register_forward_hook(lambda *_: stem_runs.append(1))]
    text_calls = models.methods["zeroshot"].frozen_text.encoder_calls
    try:
        handlers.gallop_view(session, PREDICTED, 3)
        ood.ood_view(session, "MCM", 1.0, ood.default_threshold(session, "MCM", 1.0))
        handlers.predictions_view(models, session, 3)
        learned_view(models, session, TRUE_CLASS)
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
    model = models.methods[method]
    with torch.no_grad():
        image = session.disa.image
        gap = model.logits(image)[0, gradients["class_index"]] - model.logits(torch.zeros_like(image))[0, gradients["class_index"]]
    assert gradients["gap"] == pytest.approx(float(gap), rel=1e-4, abs=1e-6)  # what the attributions add up to
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
    masked = render.hatch_patches(render.upscale(session.pixels, grid), np.array([0, 5]), grid)
    dark, light = render.HATCH
    rows, cols = np.indices((cell, cell))  # in each masked cell: dark, and light on its diagonal
    diagonal = (cols - rows >= 0) & (cols - rows < render.HATCH_WIDTH)
    for cells in (np.s_[:cell, :cell], np.s_[:cell, 5 * cell:6 * cell]):
        assert (masked[cells][diagonal] == light).all() and (masked[cells][~diagonal] == dark).all()
    assert (masked[:cell, cell:2 * cell] == render.upscale(session.pixels, grid)[:cell, cell:2 * cell]).all()
    boxed = render.outline_patches(picture, np.eye(1, grid * grid, 3, dtype=bool)[0], grid)
    assert (boxed[:cell, 3 * cell] == render.SELECTED).all()  # left border of patch 3
    assert (boxed[cell // 2, 3 * cell + cell // 2] == picture[cell // 2, 3 * cell + cell // 2]).all()  # inside


# ---------------------------------------------------------------- a user's own images (--data PATH)


@pytest.fixture
def own_data(tmp_path, monkeypatch):
    """A folder of two drawn classes (10 images each: 3 test images each after the split), shown in the app."""
    from fakes import write_folder
    from vlp_core.data.datasets import open_dataset

    monkeypatch.setattr(inputs, "OWN_DATA", {})
    folder = write_folder(tmp_path / "drawings", {"red_circle": 10, "blue_square": 10})
    data = open_dataset(str(folder), splits=("test",))
    inputs.add_own_data(data)
    return data


def test_own_images_open_first_labelled_in_their_class_names(models, own_data):
    keys = inputs.sample_keys()
    own = [key for key in keys if key.startswith("drawings/")]
    assert keys[:4] == own and len(own) == 4 and handlers.landing_sample(models) == own[0]  # 2 of each class's 3
    tests = own_data.split("test")
    assert sorted(tests[int(key.split("/")[2])].label for key in own) == [0, 0, 1, 1]
    assert inputs.sample_classes(own[0]) == own_data.classnames == ["blue square", "red circle"]
    image = inputs.read_sample(own[0], 64)
    first = tests[int(own[0].split("/")[2])]
    assert image.pixels.shape == (64, 64, 3) and image.mask is None
    assert image.label == own_data.classnames[first.label] and inputs.thumbnail_caption(own[0]).startswith(image.label)
    session = handlers.load_sample(models, own[0], ", ".join(own_data.classnames)).session
    assert session.label == image.label and session.classes == own_data.classnames
    from app.layout import gallery_heading
    assert gallery_heading().startswith("**Your images** (test split)")


def test_own_data_named_like_a_suite_or_missing_is_refused(tmp_path, monkeypatch, capsys):
    from fakes import write_folder
    from app.main import main
    from vlp_core.data.datasets import open_dataset

    monkeypatch.setattr(inputs, "OWN_DATA", {})
    folder = write_folder(tmp_path / "shapes", {"red_circle": 6, "blue_square": 6})
    with pytest.raises(inputs.InputError, match="like a SynthWorld suite: rename its folder"):
        inputs.add_own_data(open_dataset(str(folder), splits=("test",)))
    assert main(["--data", str(tmp_path / "nowhere")]) == 2  # refused before any model loads
    assert "no such folder or file; give a folder of class folders" in capsys.readouterr().err and inputs.OWN_DATA == {}


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
    assert ood.ood_view(session, "MCM", 1.0, 1.0)["reference"] is None
    assert ood.default_threshold(session, "MCM", 1.0) is None


def test_trust_numbers_in_the_views(models, session):
    disa = handlers.disa_view(models, session, PREDICTED, 0.3, 0.5, 0)
    assert disa["reference"] == session.reference.pointing()
    gallop = handlers.gallop_view(session, PREDICTED, [1, 2, 3, 4])
    touched, random = session.reference.touch((1, 2, 3, 4))
    np.testing.assert_array_equal(gallop["reference"][0], touched)
    assert all(found["touches"] == (found["on_object"] > 0) for found in gallop["grounding"])
    view = ood.ood_view(session, "GL-MCM", 1.0, 1.2)
    found = view["reference"]
    assert found["suite"] == "shapes" and len(found["id"]) == len(found["ood"]) == reference.REFERENCE_IMAGES
    assert found["id_kept"] == pytest.approx(float((found["id"] >= view["cutoff"]).mean()))
    assert found["ood_kept"] == pytest.approx(float((found["ood"] >= view["cutoff"]).mean()))


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


# ---------------------------------------------------------------- true labels, base / novel, what prompts learned


def test_a_sample_knows_its_true_label_and_marks_every_prediction(models, session):
    assert session.label == inputs.sample_label("shapes/test/3") == handlers.DEFAULT_CLASSES[3 % C]
    assert session.true_index == 3 % C
    view = handlers.predictions_view(models, session, 3)
    for name, probabilities in session.probabilities.items():
        predicted = int(probabilities.argmax())
        assert view["predicted"][name] == session.classes[predicted]
        assert view["right"][name] == (predicted == session.true_index)
    assert [note.startswith("true class") for note in view["notes"]] == [row[0] == session.label for row in view["rows"]]
    ood_sample = handlers.load_sample(models, "ood/test/3", DEFAULT_TEXT).session
    assert ood_sample.label == "flower" and ood_sample.true_index is None  # not a class of the list
    assert set(handlers.predictions_view(models, ood_sample, 3)["right"].values()) == {None}


def test_the_query_defaults_to_the_true_class_and_can_be_the_prediction(models, session):
    assert handlers.default_query(session) == TRUE_CLASS
    wrong = next(name for name in session.probabilities if not session.right(name))  # a random tiny model errs
    assert handlers.resolve_class(session, TRUE_CLASS, wrong) == session.true_index
    assert handlers.resolve_class(session, PREDICTED, wrong) == session.predicted(wrong) != session.true_index
    disa = handlers.disa_view(models, session, TRUE_CLASS, 0.3, 0.5, 0)
    assert disa["class_index"] == session.true_index
    upload = handlers.ImageInput(session.pixels, None, "upload: x.png")
    unlabelled = handlers.encode(models, upload, inputs.ClassList(session.classes))
    assert unlabelled.label is None and handlers.default_query(unlabelled) == PREDICTED
    assert handlers.resolve_class(unlabelled, TRUE_CLASS, "disa") == unlabelled.predicted("disa")


def test_classes_the_prompts_were_trained_on_are_base(models, prompts):
    trained = json.loads((prompts / "coop" / "checkpoint.json").read_text())["classes"]
    assert set(models.trained_classes) == {"coop"} and trained == list(handlers.DEFAULT_CLASSES[:len(trained)])
    assert [models.class_part(name) for name in handlers.DEFAULT_CLASSES] == (
        ["base"] * len(trained) + ["novel"] * (C - len(trained)))
    assert models.class_part(trained[0].upper()) == "base" and models.class_part("red circle") == "novel"
    assert models.seen_by(trained[1]) == ["coop"]


def test_a_scenes_sample_is_checked_against_both_of_its_shapes(models):
    key = "scenes/test/3"
    session = handlers.load_sample(models, key, ", ".join(inputs.sample_classes(key))).session
    suite = get_suite("scenes", image_size=models.bundle.image_size)
    _, objects = render_objects(suite.scene("test", 3), models.bundle.image_size)
    assert np.array_equal(session.mask, objects != BACKGROUND) and set(np.unique(objects)) == {BACKGROUND, 0, 1}
    coverage = patch_coverage(session.mask, models.grid)
    found = handlers.disa_view(models, session, TRUE_CLASS, 0.3, 0.5, 0)["grounding"]
    assert found["object_patches"] == int((coverage > 0).sum())  # the patches of both shapes
    main_only = patch_coverage(objects == 0, models.grid)
    assert found["object_patches"] > int((main_only > 0).sum())
    ref = session.reference
    assert ref.suite == "scenes" and float((ref.coverage > 0).float().mean()) == pytest.approx(ref.pointing()[1])


def test_what_the_prompts_learned(models, session):
    view = learned_view(models, session, TRUE_CLASS)
    assert list(view["maps"]) == ["disa", "gallop"]
    for name, maps in view["maps"].items():
        assert maps["class_index"] == session.true_index
        for side in ("zero_shot", "learned", "difference"):
            assert maps[side].shape == (models.num_patches,)
        np.testing.assert_allclose(maps["difference"], maps["learned"] - maps["zero_shot"], atol=1e-7)
        coverage = patch_coverage(session.mask, models.grid)
        assert maps["grounding"]["learned"] == handlers.grounding(torch.from_numpy(maps["learned"]), None, coverage)
    np.testing.assert_allclose(view["maps"]["disa"]["zero_shot"], handlers.disa_view(
        models, session, TRUE_CLASS, 0.3, 0.5, 0)["saliency"], rtol=1e-6)
    # GalLoP is untrained here: its prompts are its initial words, every local prompt the same
    np.testing.assert_allclose(view["maps"]["gallop"]["learned"], view["maps"]["gallop"]["zero_shot"], atol=1e-5)
    np.testing.assert_allclose(view["local_prompts"]["context"], np.ones(4))
    np.testing.assert_allclose(view["local_prompts"]["text"], np.ones(4), atol=1e-6)
    words = models.context_words
    assert set(words) == {"coop", "ivlp", "promptsrc", "disa", "gallop"}
    assert [w for w, _ in (position[0] for position in words["gallop"]["local 1"])] == ["a", "photo", "of", "a"]
    assert all(distance == pytest.approx(0.0, abs=1e-5) for position in words["gallop"]["local 1"]
               for _, distance in position[:1])  # the initial prompt is those words' embeddings


def test_a_one_class_list_says_why_it_shows_100_percent(models):
    cleaned = inputs.parse_classes("circle", models.bundle.tokenizer, models.name_token_budget)
    assert cleaned.names == ["circle"] and "100 %" in cleaned.notices[-1]


# ---------------------------------------------------------------- every view as a PNG and the Python that redraws it


@pytest.mark.parametrize("view, controls", [
    ("disa", (TRUE_CLASS, 0.3, 0.5, 2)),
    ("gallop", (PREDICTED, False, 10, 3, 4, 5, 6)),
    ("ood", ("GL-MCM", 1.0, 1.2)),
    ("predictions", (3,)),
    ("learned", (TRUE_CLASS, "GalLoP")),
    ("attribution", ("CoOp", TRUE_CLASS, "Grad-CAM (penultimate block)", 8)),
])
def test_a_view_exports_a_png_and_the_python_that_recomputes_it(models, session, tmp_path, monkeypatch, view,
                                                                 controls):
    from app import export

    png, script = export.export_view(models, session, view, *controls)
    assert Image.open(png).format == "PNG" and Image.open(png).size[0] > 200
    monkeypatch.chdir(tmp_path)
    namespace = runpy.run_path(script)
    assert (tmp_path / f"{view}_redrawn.png").stat().st_size > 0
    index = session.true_index
    if view == "disa":
        expected = handlers.disa_view(models, session, TRUE_CLASS, 0.3, 0.5, 2)
        np.testing.assert_allclose(namespace["out"]["saliency"].numpy(), expected["saliency"], rtol=1e-5, atol=1e-7)
        np.testing.assert_array_equal(namespace["out"]["masked"].numpy(), expected["masked"])
    elif view == "gallop":
        expected = handlers.gallop_view(session, PREDICTED, [3, 4, 5, 6])
        np.testing.assert_allclose(namespace["out"]["maps"].numpy(), expected["maps"], rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(namespace["out"]["selected"].numpy(), expected["selected"])
    elif view == "ood":
        expected = ood.ood_view(session, "GL-MCM", 1.0, 1.2)
        assert namespace["value"] == pytest.approx(expected["scores"]["GL-MCM"], rel=1e-5)
        assert namespace["fpr95"] == pytest.approx(expected["reference"]["fpr95"][2], abs=1 / 100)
    elif view == "predictions":
        for name, probabilities in session.probabilities.items():
            np.testing.assert_allclose(namespace["probabilities"][name].numpy(), probabilities, rtol=1e-4, atol=1e-6)
    elif view == "learned":
        expected = learned_view(models, session, TRUE_CLASS)["maps"]
        for name in ("disa", "gallop"):
            np.testing.assert_allclose(namespace["maps"][name]["learned"].numpy(), expected[name]["learned"],
                                       rtol=1e-5, atol=1e-6)
    else:
        expected = attribution_view(models, session, "coop", TRUE_CLASS, "gradcam")
        assert expected["class_index"] == index
        np.testing.assert_allclose(namespace["values"].numpy(), expected["map"], rtol=1e-4, atol=1e-6)


def test_an_uploaded_image_is_exported_with_the_input_its_script_reads(models, session, tmp_path, monkeypatch):
    from app import export

    upload = handlers.encode(models, handlers.ImageInput(session.pixels[::-1].copy(), None, "upload: x.png"),
                             inputs.ClassList(session.classes))
    png, script, model_input = export.export_view(models, upload, "disa", PREDICTED, 0.3, 0.5, 0)
    assert np.array_equal(np.asarray(Image.open(model_input)), upload.pixels)
    monkeypatch.chdir(Path(model_input).parent)
    namespace = runpy.run_path(script)
    expected = handlers.disa_view(models, upload, PREDICTED, 0.3, 0.5, 0)
    np.testing.assert_allclose(namespace["out"]["saliency"].numpy(), expected["saliency"], rtol=1e-5, atol=1e-7)


def test_chart_ticks_and_colour_bars_by_hand():
    assert charts.nice_ticks(0.178, 0.242, 5) == [0.18, 0.2, 0.22, 0.24]  # steps of 0.02 >= 0.064 / 5
    assert charts.nice_ticks(0.0, 0.37, 3) == [0.0, 0.2]  # steps of 0.2 >= 0.37 / 3
    assert charts.nice_ticks(1.0, 1.0) == [1.0]
    picture = np.zeros((120, 100, 3), np.uint8)
    barred = render.with_colour_bar(picture, (-2.0, 6.0), label="cosine")
    assert barred.shape == (120, 100 + render.BAR_WIDTH, 3) and (barred[:, :100] == 0).all()
    x, top, bottom = 100 + 6 + render.BAR_STRIPE // 2, 8, 120 - 22 - 1  # the ramp runs from the top to the label
    ends = (colormaps[render.HEAT_CMAP]([1.0, 0.0])[:, :3] * 255).round()
    assert (barred[top, x] == ends[0]).all() and (barred[bottom, x] == ends[1]).all()  # high on top
    values = np.array([[-5.0, 0.0], [2.0, 9.0]])  # outside the span: its end colours
    colours = render.colorize(values, span=(0.0, 2.0))
    assert (colours[0, 0] == colours[0, 1]).all() and (colours[1, 0] == colours[1, 1]).all()
    assert render.symmetric_range(np.array([-0.2, 0.5]), np.array([0.1])) == (-0.5, 0.5)


def test_roc_chart_marks_the_operating_points():
    fpr, tpr = np.array([0.0, 0.5, 1.0]), np.array([0.5, 1.0, 1.0])
    picture = charts.roc_chart(fpr, tpr, (0.5, 1.0), (1.0, 1.0), auroc=0.875)
    width, height = charts.ROC_SIZE
    assert picture.shape == (height, width, 3)
    left, top, right, bottom = 44, 8, width - 12, height - 46  # the plot box: (0, 0) bottom left, (1, 1) top right
    x, y = round(left + 0.5 * (right - left)), top  # the threshold's point (FPR 0.5, TPR 1.0)
    assert tuple(picture[y, x]) == charts.MARK_COLOUR
    histogram = charts.histogram(np.array([0.2, 0.3]), np.array([0.1, 0.15]), cutoff=0.25, value=0.3)
    assert histogram.shape == (charts.HISTOGRAM_SIZE[1], charts.HISTOGRAM_SIZE[0], 3)
