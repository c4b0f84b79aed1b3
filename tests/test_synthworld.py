"""SynthWorld: determinism, masks, domains, held-out combinations, suites and captions."""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

from vlp_core.data.base import SPLITS, ClassificationData
from vlp_core.data.fewshot import base_novel_labels
from vlp_core.data.synthworld import (
    ALL_SHAPES,
    BACKGROUND,
    COLOURS,
    HELD_OUT_COMBOS,
    OOD_SHAPES,
    PATTERNS,
    SHAPES,
    STYLES,
    caption,
    get_suite,
    item_rng,
    list_suites,
    pretraining_batch,
    pretraining_example,
    render,
    render_objects,
    sample_pair_scene,
    sample_scene,
)
from vlp_core.data.synthworld.attributes import SEEN_COMBOS, article
from vlp_core.data.synthworld.captions import SHAPE_LOOK_ALIKES, WORD_RANKS, CaptionRates
from vlp_core.data.synthworld.geometry import SDF
from vlp_core.data.synthworld.pretraining import IGNORE, scene_factors
from vlp_core.data.synthworld.suites import SCENE_PAIRS

SMALL = {"n_train": 4, "n_val": 2, "n_test": 3}
DOMAINS = [style for style in STYLES if style != "photo"]


def _simple_scene(shape: str, index: int = 0, style: str = "photo"):
    """A solid main object on a plain background with no distractors, upright."""
    spec = sample_scene(item_rng(0, "test", "test", index), shape=shape, pattern="solid")
    main = replace(spec.main, rotation=0.0)
    return replace(spec, main=main, background="plain", distractors=(), style=style)


def test_every_shape_has_a_distance_function_and_ood_shapes_are_extra():
    assert set(SDF) == set(ALL_SHAPES)
    assert len(SHAPES) >= 12 and 3 <= len(OOD_SHAPES) <= 4
    assert not set(SHAPES) & set(OOD_SHAPES)


@pytest.mark.parametrize("name", ["shapes", "scenes", "shapes@noisy"])
def test_same_address_gives_identical_pixels_and_mask(name):
    first = get_suite(name, seed=3, **SMALL).render_item("train", 5)
    again = get_suite(name, seed=3, **SMALL).render_item("train", 5)
    assert np.array_equal(first[0], again[0])
    assert np.array_equal(first[1], again[1])
    assert first[2] == again[2]


def test_other_seed_or_index_gives_other_pixels():
    suite = get_suite("shapes", seed=0, **SMALL)
    image = suite.render_item("test", 0)[0]
    assert not np.array_equal(image, get_suite("shapes", seed=1, **SMALL).render_item("test", 0)[0])
    assert not np.array_equal(image, suite.render_item("test", 12)[0])  # same label, next item
    assert not np.array_equal(image, suite.render_item("val", 0)[0])


@pytest.mark.parametrize("shape", SHAPES + OOD_SHAPES)
def test_mask_is_the_object_and_it_stands_out(shape):
    spec = _simple_scene(shape)
    image, mask = render(spec, 64)
    assert mask.dtype == bool and mask.shape == (64, 64)
    assert mask.sum() >= 20
    inside = image[mask].astype(float).mean(axis=0)
    outside = image[~mask].astype(float).mean(axis=0)
    assert np.linalg.norm(inside - outside) > 60
    # The object colour (shaded) is what shows under the mask, the background colour outside.
    assert np.linalg.norm(inside - np.array(spec.main.rgb)) < np.linalg.norm(inside - outside)


def test_circle_mask_has_the_circle_area():
    spec = _simple_scene("circle")
    _, mask = render(spec, 128)
    radius_px = 0.82 * spec.main.radius * 128  # the circle's radius in its unit disk
    assert mask.sum() == pytest.approx(math.pi * radius_px**2, rel=0.04)


@pytest.mark.parametrize("style", STYLES)
def test_every_style_keeps_the_mask_of_the_main_object(style):
    suite = get_suite("shapes", **SMALL)
    for index in range(6):
        spec = suite.scene("test", index).with_style(style)
        image, mask = render(spec, 64)
        assert image.dtype == np.uint8 and image.shape == (64, 64, 3)
        assert mask.sum() >= 10
        # The main object lies inside the image, so its mask never touches the border.
        assert not (mask[0].any() or mask[-1].any() or mask[:, 0].any() or mask[:, -1].any())


def test_sketch_is_outlines_on_light_paper():
    spec = _simple_scene("square", style="sketch")
    image, mask = render(spec, 64)
    brightness = image.astype(float).mean(axis=2)
    cy, cx = int(spec.main.y * 64), int(spec.main.x * 64)
    assert mask[cy, cx] and brightness[cy - 2 : cy + 3, cx - 2 : cx + 3].min() > 200  # no fill
    assert brightness[[0, 0, -1, -1], [0, -1, 0, -1]].min() > 200  # paper
    assert brightness[mask].min() < 170  # an ink line runs along the object's edge


@pytest.mark.parametrize("style", DOMAINS)
def test_domains_share_labels_and_scenes_with_shapes_but_not_pixels(style):
    source = get_suite("shapes", **SMALL)
    domain = get_suite(f"shapes@{style}", **SMALL)
    assert domain.classnames == source.classnames
    source_items, domain_items = source.split("test"), domain.split("test")
    assert [d.label for d in domain_items] == [d.label for d in source_items]
    assert {d.domain for d in domain_items} == {style}
    for index in (0, 7):
        image, mask, spec = domain.render_item("test", index)
        source_image, _, source_spec = source.render_item("test", index)
        assert spec == source_spec.with_style(style)
        assert not np.array_equal(image, source_image)


def test_held_out_combos_cover_every_word_elsewhere():
    assert 12 <= len(HELD_OUT_COMBOS) <= 16
    assert len(set(HELD_OUT_COMBOS)) == len(HELD_OUT_COMBOS)
    assert not set(HELD_OUT_COMBOS) & set(SEEN_COMBOS)
    assert {c for c, _ in SEEN_COMBOS} == set(COLOURS)
    assert {s for _, s in SEEN_COMBOS} == set(SHAPES)
    assert {s for _, s in HELD_OUT_COMBOS} == set(SHAPES)


def test_pretraining_never_draws_a_held_out_combo():
    held_out = set(HELD_OUT_COMBOS)
    phrases = [re.compile(rf"\b{c} {s}\b") for c, s in HELD_OUT_COMBOS]
    styles, shapes = Counter(), Counter()
    for index in range(400):
        spec, text = pretraining_example(index, seed=0)
        for obj in (spec.main, *spec.distractors):
            assert (obj.colour, obj.shape) not in held_out
        assert not any(phrase.search(text) for phrase in phrases)
        styles[spec.style] += 1
        shapes[spec.main.shape] += 1
    assert set(styles) == set(STYLES)
    assert set(OOD_SHAPES) <= set(shapes)


def test_pretraining_batch_is_the_stream_rendered():
    images, captions, factors = pretraining_batch(10, 6, seed=2, size=32)
    assert images.shape == (6, 32, 32, 3) and images.dtype == np.uint8 and factors is None
    for i in range(6):
        spec, text = pretraining_example(10 + i, seed=2)
        assert captions[i] == text
        assert np.array_equal(images[i], render(spec, 32)[0])
    again, _, _ = pretraining_batch(12, 2, seed=2, size=32)
    assert np.array_equal(again, images[2:4])


def test_object_map_marks_each_visible_object_and_agrees_with_the_mask():
    spec = replace(_simple_scene("square"), distractors=(replace(_simple_scene("circle", 1).main, x=0.15, y=0.15,
                                                                radius=0.1),))
    image, objects = render_objects(spec, 64)
    assert np.array_equal(objects == 0, render(spec, 64)[1])
    assert set(np.unique(objects)) == {BACKGROUND, 0, 1}
    ys, xs = np.nonzero(objects == 1)  # the distractor sits where it was placed
    assert abs(xs.mean() / 64 - 0.15) < 0.02 and abs(ys.mean() / 64 - 0.15) < 0.02


def test_scene_factors_by_hand():
    main = replace(_simple_scene("square").main, x=0.5, y=0.5, radius=0.3, colour="blue", pattern="striped")
    spec = replace(_simple_scene("square"), main=main, size="large", style="photo", background="plain")
    objects = np.full((8, 8), BACKGROUND, np.int8)
    objects[2:6, 2:6] = 0  # a 4x4 object on an 8x8 map: on a 4x4 grid the 2x2 middle patches are
    objects[2, 4] = BACKGROUND  # the object, except that one patch is only 3/4 object
    objects[0, 0:2] = 0  # and the top-left patch 2/4 object: shows the object (>= 1/4)
    factors = scene_factors(spec, objects, grid=4)
    assert factors["shape"] == ALL_SHAPES.index("square") and factors["colour"] == list(COLOURS).index("blue")
    assert factors["pattern"] == PATTERNS.index("striped") and factors["size"] == 2
    assert factors["style"] == STYLES.index("photo") and factors["background"] == 0
    assert factors["present"].tolist() == [float(s == "square") for s in ALL_SHAPES]
    square, background = ALL_SHAPES.index("square"), len(ALL_SHAPES)
    expected = np.full((4, 4), background)
    expected[1:3, 1:3] = square
    expected[0, 0] = square
    assert factors["patch_shape"].reshape(4, 4).tolist() == expected.tolist()

    sketch = scene_factors(replace(spec, style="sketch"), objects, grid=4)
    assert sketch["pattern"] == IGNORE and sketch["background"] == IGNORE


def test_a_patch_that_is_neither_object_nor_background_is_ignored():
    objects = np.full((4, 4), BACKGROUND, np.int8)  # 2x2 patches of 2x2 pixels
    objects[0, 0] = 0  # top-left patch: 1/4 object -> the object
    objects[2:4, 0:2] = 0  # bottom-left: all object
    factors = scene_factors(_simple_scene("circle"), objects, grid=2)
    circle, background = ALL_SHAPES.index("circle"), len(ALL_SHAPES)
    assert factors["patch_shape"].tolist() == [circle, background, circle, background]

    fine = np.kron(objects, np.ones((2, 2), np.int8))  # the same map at 8x8 pixels
    fine[0:2, 0:2] = BACKGROUND
    fine[0, 0] = 0  # top-left patch now 1/16 object: neither object (< 1/4) nor background (< 3/4 free)
    fine[1, 1] = fine[0, 1] = fine[1, 0] = 0  # 4/16 object -> the object again
    assert scene_factors(_simple_scene("circle"), fine, grid=2)["patch_shape"][0] == circle
    fine[1, 1] = fine[0, 1] = BACKGROUND  # 2/16 object and 14/16 free: background
    assert scene_factors(_simple_scene("circle"), fine, grid=2)["patch_shape"][0] == background
    fine[2, 0:3] = 1  # plus 3/16 of a distractor: no object >= 1/4, 11/16 free < 3/4: ignored
    with_distractor = replace(_simple_scene("circle"), distractors=(_simple_scene("star").main,))
    assert scene_factors(with_distractor, fine, grid=2)["patch_shape"][0] == IGNORE
    fine[3, 0] = 1  # 4/16 of the distractor: the patch shows the star
    assert scene_factors(with_distractor, fine, grid=2)["patch_shape"][0] == ALL_SHAPES.index("star")


@pytest.mark.parametrize("name", list_suites())
def test_suite_classes_unique_and_labels_balanced(name):
    suite = get_suite(name, **SMALL)
    assert isinstance(suite, ClassificationData)
    names = suite.classnames
    assert len(names) == len(set(names)) >= 4
    for split in SPLITS:
        items = suite.split(split)
        counts = Counter(d.label for d in items)
        assert sorted(counts) == list(range(len(names)))
        assert set(counts.values()) == {SMALL[f"n_{split}"]}
        assert len({d.key for d in items}) == len(items)
        assert all(d.classname == names[d.label] for d in items)


def test_suite_class_counts():
    counts = {name: len(get_suite(name).classnames) for name in list_suites()}
    assert counts["shapes"] == len(SHAPES)
    assert 24 <= counts["colour_shapes"] <= 32
    assert counts["ood"] == len(OOD_SHAPES)
    assert {f"shapes@{style}" for style in DOMAINS} <= set(counts)


def _label_of(name: str, spec) -> str:
    """The class name a scene must have, read from the scene itself."""
    main = spec.main
    if name == "colour_shapes":
        return f"{main.colour} {main.shape}"
    if name == "patterns":
        return f"{main.pattern} {main.shape}"
    if name == "scenes":
        (other,) = spec.distractors
        pair = next(p for p in SCENE_PAIRS if {main.shape, other.shape} == set(p))
        return f"{pair[0]} and {article(pair[1])} {pair[1]}"
    return main.shape


@pytest.mark.parametrize("name", ["shapes", "colour_shapes", "patterns", "scenes", "ood"])
def test_labels_describe_the_scenes(name):
    suite = get_suite(name, **SMALL)
    for datum in suite.split("val"):
        split, index = datum.key.split("/")
        assert _label_of(name, suite.scene(split, int(index))) == datum.classname


def test_colour_shapes_held_out_combos_are_the_novel_half():
    suite = get_suite("colour_shapes", **SMALL)
    base, novel = base_novel_labels(suite.split("train"))
    held_out = {f"{c} {s}" for c, s in HELD_OUT_COMBOS}
    assert held_out <= {suite.classnames[i] for i in novel}
    assert not held_out & {suite.classnames[i] for i in base}


def test_ood_suite_uses_only_ood_shapes():
    ood = get_suite("ood", **SMALL)
    assert ood.classnames == list(OOD_SHAPES)
    assert not set(ood.classnames) & set(get_suite("shapes").classnames)
    for index in range(8):
        spec = ood.scene("test", index)
        assert spec.main.shape in OOD_SHAPES
        assert all(d.shape in SHAPES for d in spec.distractors)


@pytest.mark.parametrize("size", [32, 48, 96])
def test_load_image_is_rgb_of_the_requested_size(size):
    suite = get_suite("patterns", image_size=size, **SMALL)
    datum = suite.split("test")[3]
    image = suite.load_image(datum)
    assert isinstance(image, Image.Image) and image.mode == "RGB" and image.size == (size, size)
    mask = suite.load_mask(datum)
    assert mask.shape == (size, size) and mask.dtype == bool and mask.any()


def test_a_scenes_mask_covers_both_shapes_its_label_names():
    suite = get_suite("scenes", **SMALL)
    for index in range(6):
        image, mask, spec = suite.render_item("test", index)
        rendered, objects = render_objects(spec, suite.image_size)
        assert np.array_equal(image, rendered) and len(spec.distractors) == 1
        assert (objects == 0).any() and (objects == 1).any()  # both shapes show
        assert np.array_equal(mask, objects != BACKGROUND)  # and the mask is exactly their pixels
        assert {spec.main.shape, spec.distractors[0].shape} == set(SCENE_PAIRS[index % len(SCENE_PAIRS)])
        assert np.array_equal(suite.load_mask(suite.split("test")[index]), mask)
    shapes = get_suite("shapes", **SMALL)  # one labelled object: the main one alone, distractors left out
    _, mask, spec = shapes.render_item("test", 2)
    assert spec.distractors and np.array_equal(mask, render(spec, shapes.image_size)[1])


def test_the_styles_suite_has_no_object_mask():
    suite = get_suite("styles", **SMALL)  # its label is the picture's style, not the object
    assert suite.load_mask(suite.split("test")[0]) is None
    assert get_suite("shapes@sketch", **SMALL).load_mask(suite.split("test")[0]) is not None


def test_captions_name_attributes_some_of_the_time_in_plain_english():
    rates = CaptionRates(shape_look_alike=0.0, colour_look_alike=0.0, pattern_look_alike=0.0, shape_tail=1.0,
                         colour_tail=1.0)  # every word equally common
    rng = np.random.default_rng(0)
    shape_named = colour_named = 0
    for index in range(400):
        spec, _ = pretraining_example(index, seed=5)
        text = caption(spec, rng, rates=rates)
        words = text.split()
        shape_named += spec.main.shape in words
        colour_named += spec.main.colour in words
        assert "  " not in text and " a a" not in text and not re.search(r"\ba [aeiou]", text), text
    assert 0.64 < shape_named / 400 < 0.8  # 85 % name the shape, 15 % of those with a synonym: 72 %
    assert 0.6 < colour_named / 400 < 0.76  # 75 % name the colour, 10 % of those with a synonym: 67.5 %


def test_a_long_tail_names_common_words_often_and_rare_ones_seldom():
    rates = CaptionRates(shape_tail=0.5, shape_synonym=0.0, shape_look_alike=0.0)
    rng = np.random.default_rng(0)
    named, seen = Counter(), Counter()
    for index in range(1500):
        spec, _ = pretraining_example(index, seed=5)
        seen[spec.main.shape] += 1
        named[spec.main.shape] += spec.main.shape in caption(spec, rng, rates=rates).split()
    ranks = WORD_RANKS["shape"]
    common = [s for s in seen if ranks[s] == 0]
    rare = [s for s in seen if ranks[s] >= 4]  # named at most 0.85 x 0.5^4 = 5 % of the time
    assert common and rare
    assert sum(named[s] for s in common) / sum(seen[s] for s in common) > 0.7  # 85 % expected
    assert sum(named[s] for s in rare) / sum(seen[s] for s in rare) < 0.1


def test_look_alike_names_replace_the_right_one_at_their_rate():
    rates = CaptionRates(shape_look_alike=1.0, shape_synonym=0.0, colour_look_alike=0.0, neighbour=0.0, pair=0.0)
    rng = np.random.default_rng(0)
    for index in range(200):
        spec, _ = pretraining_example(index, seed=5)
        words = caption(spec, rng, rates=rates).split()
        alikes = SHAPE_LOOK_ALIKES.get(spec.main.shape, ())  # a held-out (colour, look-alike) is never said
        if alikes and all((spec.main.colour, alike) not in HELD_OUT_COMBOS for alike in alikes):
            assert spec.main.shape not in words, (spec.main, words)


EQUALLY_COMMON = CaptionRates(shape_tail=1.0, colour_tail=1.0, pattern_tail=1.0, style_tail=1.0)  # no long tail


def test_two_object_scenes_usually_name_both():
    rng = np.random.default_rng(1)
    both = 0
    for index in range(100):
        spec = sample_pair_scene(item_rng(0, "test", "test", index), shapes=("circle", "square"))
        text = caption(spec, rng, pair_scene=True, rates=EQUALLY_COMMON)
        both += ("circle" in text or "disc" in text or "round" in text) and ("square" in text or "box" in text)
    assert both > 45  # each object's word is there ~85 % x ~85 %, the second object ~85 % of the time


def test_unknown_suite_is_an_error():
    with pytest.raises(KeyError, match="shapes"):
        get_suite("no-such-suite")
