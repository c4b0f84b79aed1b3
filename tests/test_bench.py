"""`vlp bench` runs every (version, method) pair in its own process and reports paired figures."""

import pytest

from vlp_core.tools.bench import Variant, bench, checkout, report

CLASSES = ["red circle", "blue square", "green star"]


def test_every_version_is_measured_with_its_spread_and_ratios():
    variants = [Variant("a"), Variant("b", options={"coop": {"n_ctx": 4}})]
    result = bench(variants, ["coop"], CLASSES, model="vlp-tiny", pretrained=None, device="cpu",
                   batch_size=2, repeats=2)
    a, b = result["rows"]
    assert (a["version"], b["version"]) == ("a", "b")
    assert a["trainable"] == 16 * 64 and b["trainable"] == 4 * 64  # each version with its own options
    for row in (a, b):
        for op in ("train", "text", "infer"):
            assert 0 < row[op]["min"] <= row[op]["median"] <= row[op]["max"]
        assert row["peak_memory_mb"] > 0 and row["vs_first"] == {"median": 1.0, "min": 1.0, "max": 1.0,
                                                                  "values": [1.0, 1.0]}  # one ratio per round
        assert len(row["train"]["values"]) == 2 and row["train"]["min"] == min(row["train"]["values"])
    (ratios,) = result["ratios"]
    assert ratios["method"] == "coop" and {"train", "text", "infer", "peak_memory"} <= set(ratios)
    table = report(result, batch_size=2)
    assert "| b | coop | 256 |" in table and "Ratios b / a" in table


def test_compare_names_what_it_could_not_read(tmp_path):
    with pytest.raises(ValueError, match="neither METHOD.OPTION=VALUE settings nor a git revision"):
        checkout("no-such-revision", tmp_path)
