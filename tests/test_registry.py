"""One registry of methods, the declared method interface, and typed method options."""

from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F

from app.models import METHOD_TITLES
from vlp_core.commands import build_parser
from vlp_core.commands.common import RegisteredNames
from vlp_core.methods import registry
from vlp_core.methods.base import PromptMethod, kl_rows
from vlp_core.methods.ood import mcm
from vlp_core.methods.registry import build_method, method_classes, method_config, method_names

from tolerances import assert_equivalent

ALL = ["zeroshot", "coop", "ivlp", "promptsrc", "disa", "gallop"]


def test_the_six_methods_in_order_and_what_derives_from_them():
    assert method_names() == ALL
    assert method_names(trainable=True) == ALL[1:] and method_names(trainable=False) == ["zeroshot"]
    assert METHOD_TITLES == {"zeroshot": "Zero-shot CLIP", "coop": "CoOp", "ivlp": "IVLP", "promptsrc": "PromptSRC",
                             "disa": "DiSa", "gallop": "GalLoP"}
    assert list(RegisteredNames("methods")) == ALL and list(RegisteredNames("methods", trainable=True)) == ALL[1:]
    assert build_parser().parse_args(["train", "--method", "disa", "--out", "x"]).method == "disa"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--method", "zeroshot", "--out", "x"])  # not trainable


@dataclass
class EchoConfig:
    scale: float = 2.0


class Echo(PromptMethod):
    """A seventh method for the test: zero-shot features times a learned scalar."""

    name, title, order, config_class = "echo", "Echo", 60, EchoConfig

    def __init__(self, clip, config=None, frozen_text=None):
        super().__init__(clip, frozen_text)
        self.config = config or EchoConfig()
        self.weight = torch.nn.Parameter(torch.tensor(self.config.scale))

    def text_features(self):
        return self.frozen_text(self.class_names)

    def image_features(self, images):
        return F.normalize(self.clip.model.encode_image(images), dim=-1)

    def logits(self, images):
        return self.weight * self.image_features(images) @ self.text_features().T

    def loss(self, images, labels):
        ce = F.cross_entropy(self.logits(images), labels)
        return {"ce": ce, "total": ce}


def test_a_seventh_method_is_one_registered_class(tiny, images, monkeypatch):
    monkeypatch.setattr(registry, "_REGISTERED", dict(registry._REGISTERED))
    registry.register(Echo)
    assert method_names() == [*ALL, "echo"] and "echo" in RegisteredNames("methods", trainable=True)
    method = build_method("echo", tiny, {"scale": 3})
    assert method.config.scale == 3.0 and isinstance(method.config.scale, float)
    method.set_classes(["red_circle", "blue square"])
    assert method.head_logits(images).keys() == {"combined"}
    with pytest.raises(ValueError, match="two methods are named 'echo'"):
        registry.register(type("Echo2", (Echo,), {}))


def test_the_interface_is_declared_not_probed(tiny):
    class Partial(PromptMethod):
        name, title, order, config_class = "partial", "Partial", 99, EchoConfig

        def loss(self, images, labels):
            return {}

        def logits(self, images):
            return images

    with pytest.raises(TypeError, match="image_features.*text_features|text_features.*image_features"):
        Partial(tiny)


def test_default_heads_and_ood_scores_by_hand(tiny, images):
    method = build_method("coop", tiny, {"n_ctx": 4, "ctx_init": "a photo of a"})
    method.set_classes(["red circle", "blue square", "green star"])
    logits = method.logits(images)
    torch.testing.assert_close(method.head_logits(images)["combined"], logits, atol=0, rtol=0)
    cosines = logits / tiny.model.logit_scale.exp()
    expected = torch.tensor([max(torch.softmax(row, 0).tolist()) for row in cosines])
    assert_equivalent(method.ood_scores(images)["mcm"], expected)
    assert_equivalent(mcm(cosines), expected)


def test_kl_rows_by_hand():
    p, q = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])
    pp, qq = torch.softmax(p, -1)[0], torch.softmax(q, -1)[0]
    expected = float(pp[0] * (pp[0] / qq[0]).log() + pp[1] * (pp[1] / qq[1]).log())
    assert kl_rows(p, q).item() == pytest.approx(expected, abs=1e-7)


@pytest.mark.parametrize("name", ALL)
def test_every_method_reads_underscores_as_spaces(tiny, images, name):
    method = build_method(name, tiny)
    method.set_classes(["red_circle", "blue square"])
    assert method.class_names == ["red circle", "blue square"]
    with torch.no_grad():
        underscored = method.logits(images)
        method.set_classes(["red circle", "blue square"])
        torch.testing.assert_close(method.logits(images), underscored, atol=0, rtol=0)


@pytest.mark.parametrize("method, options, message", [
    ("gallop", {"topk": 5}, "gallop.topk takes a list of integers"),
    ("disa", {"mask_ratio": "abc"}, "disa.mask_ratio takes a number, got 'abc'"),
    ("disa", {"use_cir": "yes"}, "disa.use_cir takes true or false"),
    ("disa", {"dir_loss": "huber"}, "disa.dir_loss takes one of 'cosine', 'mse', 'l1'"),
    ("coop", {"ctx_init": 4}, "coop.ctx_init takes a string or null"),
    ("ivlp", {"text_depth": 2.5}, "ivlp.text_depth takes an integer"),
    ("disa", {"mask_ratios": 0.2}, "disa has no option mask_ratios"),
    ("foo", {"x": 1}, "unknown method 'foo'"),
])
def test_bad_options_name_the_option_and_its_type(method, options, message):
    with pytest.raises(ValueError, match=message.replace("(", "\\(").replace("[", "\\[")):
        method_config(method, options)


def test_options_are_converted_to_their_declared_types():
    config = method_config("gallop", {"topk": [1, 2, 3, 4], "dropout": 0})
    assert config.topk == (1, 2, 3, 4) and config.dropout == 0.0 and isinstance(config.dropout, float)
    assert method_config("coop", {"ctx_init": None}).ctx_init is None
    assert method_classes()["disa"].config_class is type(method_config("disa"))
