"""The bundled synth-clip: loads offline, and its measured zero-shot accuracy and grounding stay
above the floors its model card states (recomputed here on fewer images, not read from the card)."""

import time

import pytest

from vlp_core.backbone import FrozenTextFeatures, load_clip
from vlp_core.backbone.loading import ASSETS_DIR
from vlp_core.engine.synth_report import suite_report

N_IMAGES = 160


@pytest.fixture(scope="module")
def synth():
    return load_clip("synth-clip")


@pytest.fixture(scope="module")
def text(synth):
    return FrozenTextFeatures(synth.model, synth.tokenizer)


def test_loads_offline_quickly():
    start = time.perf_counter()
    bundle = load_clip("synth-clip")
    assert time.perf_counter() - start < 10  # generous: the card's figure is measured by `vlp bench`
    assert bundle.pretrained == "bundled" and bundle.image_size == 64
    assert (ASSETS_DIR / "synth-clip" / "open_clip_model.safetensors").stat().st_size < 25 * 2**20


def test_colour_shapes_zero_shot_above_floor_for_seen_and_held_out(synth, text):
    report = suite_report(synth, text, "colour_shapes", N_IMAGES)
    assert report["zero_shot"] > 25  # card: 36.0 on 200 images, chance 3.1
    assert report["zero_shot_seen"] > 20 and report["zero_shot_held_out"] > 20  # real transfer


def test_value_only_features_point_at_the_object(synth, text):
    report = suite_report(synth, text, "colour_shapes", N_IMAGES)
    assert report["pointing_hit_rate"] > 1.5 * report["object_area"]  # card: 38.5 vs 18.1
    assert report["pointing_hit_rate"] > 3 * report["pointing_hit_rate_patches"]
