"""The Explainable capability: declared by DiSa and GalLoP, and each cache's prediction is the method's."""

import torch

from vlp_core.methods.base import ExplainCache, Explainable
from vlp_core.methods.registry import build_method, method_classes


def test_explainable_is_declared_by_disa_and_gallop_only():
    declared = [name for name, cls in method_classes().items() if issubclass(cls, Explainable)]
    assert declared == ["disa", "gallop"]


def test_a_cache_predicts_what_the_method_predicts(tiny, images):
    names = ["circle", "square", "red star"]
    for name in ("disa", "gallop"):
        method = build_method(name, tiny).eval()
        method.set_classes(names)
        with torch.no_grad():
            expected = torch.softmax(method.logits(images[:1]), dim=-1)[0]
            cache = method.explain_cache(images[:1])
        assert isinstance(cache, ExplainCache)
        torch.testing.assert_close(cache.probabilities, expected, rtol=1e-5, atol=1e-6)
