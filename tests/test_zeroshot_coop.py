"""Zero-shot CLIP, the templates and CoOp against open_clip and hand computations."""

import dataclasses

import open_clip
import pytest
import torch
import torch.nn.functional as F

from vlp_core.methods.coop import CoOp, CoOpConfig
from vlp_core.methods.templates import IMAGENET_TEMPLATES, SINGLE_TEMPLATE
from vlp_core.methods.zeroshot import ZeroShotCLIP, ZeroShotConfig

from tolerances import assert_equivalent

CLASSES = ["red circle", "blue square", "green star"]


def test_templates_are_promptsrc_60_of_clips_80():
    openai = [template("{}") for template in open_clip.zero_shot_metadata.OPENAI_IMAGENET_TEMPLATES]
    assert len(IMAGENET_TEMPLATES) == 60 and len(set(IMAGENET_TEMPLATES)) == 60
    assert set(IMAGENET_TEMPLATES) <= set(openai)
    assert IMAGENET_TEMPLATES[0] == SINGLE_TEMPLATE == "a photo of a {}."
    assert IMAGENET_TEMPLATES[-1] == "itap of the {}."


@pytest.mark.parametrize("template,templates", [("single", [SINGLE_TEMPLATE]), ("ensemble", IMAGENET_TEMPLATES)])
def test_zero_shot_equals_open_clip_zero_shot(tiny, images, template, templates):
    method = ZeroShotCLIP(tiny, ZeroShotConfig(template=template))
    method.set_classes(CLASSES)
    weights = open_clip.build_zero_shot_classifier(tiny.model, tiny.tokenizer, CLASSES, list(templates),
                                                   num_classes_per_batch=None)  # (D, C)
    image = F.normalize(tiny.model.encode_image(images), dim=-1)
    expected = tiny.model.logit_scale.exp() * image @ weights
    assert_equivalent(method.logits(images), expected)
    assert list(method.parameters()) == [] and method.trainable_state_dict() == {}


def test_zero_shot_text_features_are_computed_once(tiny, images):
    method = ZeroShotCLIP(tiny)
    method.set_classes(CLASSES)
    method.logits(images)
    calls = method.frozen_text.encoder_calls
    method.logits(images)
    assert calls == 1 and method.frozen_text.encoder_calls == 1
    with pytest.raises(TypeError, match="nothing to train"):
        method.loss(images, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="template"):
        ZeroShotCLIP(tiny, ZeroShotConfig(template="many"))


def _photo_coop(tiny):
    method = CoOp(tiny, CoOpConfig(n_ctx=4, ctx_init="a photo of a"))
    method.set_classes(CLASSES)
    return method


def test_coop_initialised_from_the_words_equals_zero_shot(tiny, images):
    coop = _photo_coop(tiny)
    zero_shot = ZeroShotCLIP(tiny)
    zero_shot.set_classes(CLASSES)
    assert_equivalent(coop.logits(images), zero_shot.logits(images))


def test_coop_cross_entropy_by_hand(tiny, images):
    coop = _photo_coop(tiny)
    labels = torch.tensor([2, 0])
    model, scale = tiny.model, tiny.model.logit_scale.exp()
    text = model.encode_text(tiny.tokenizer([f"a photo of a {c}." for c in CLASSES]))
    image = model.encode_image(images)
    logits = scale * (image / image.norm(dim=-1, keepdim=True)) @ (text / text.norm(dim=-1, keepdim=True)).T
    expected = sum(torch.logsumexp(logits[b], 0) - logits[b, labels[b]] for b in range(2)) / 2
    terms = coop.loss(images, labels)
    assert set(terms) == {"ce", "total"}
    assert_equivalent(terms["ce"], expected)
    torch.testing.assert_close(terms["total"], terms["ce"], atol=0, rtol=0)


def test_coop_default_is_16_random_context_tokens_from_the_seed(tiny):
    first, again, other = CoOp(tiny), CoOp(tiny), CoOp(tiny, CoOpConfig(seed=1))
    assert first.text_ctx.shape == (16, 64)
    assert 0.015 < first.text_ctx.std().item() < 0.025 and abs(first.text_ctx.mean().item()) < 0.005
    assert torch.equal(first.text_ctx, again.text_ctx) and not torch.equal(first.text_ctx, other.text_ctx)
    assert [name for name, _ in first.named_parameters()] == ["text_ctx"]
    with pytest.raises(ValueError, match="n_ctx is 16"):
        CoOp(tiny, CoOpConfig(ctx_init="a photo of a"))


def test_coop_gradients_reach_only_the_context(tiny, images):
    coop = CoOp(tiny)
    coop.set_classes(CLASSES)
    coop.loss(images, torch.tensor([0, 1]))["total"].backward()
    assert coop.text_ctx.grad is not None and coop.text_ctx.grad.abs().sum() > 0
    assert all(p.grad is None for p in tiny.model.parameters())


def test_set_classes_keeps_the_context_and_tokenises_each_list_once(tiny, images):
    calls = []

    def counting_tokenizer(texts):
        calls.append(list(texts))
        return tiny.tokenizer(texts)

    coop = CoOp(dataclasses.replace(tiny, tokenizer=counting_tokenizer))
    context = coop.text_ctx.detach().clone()
    coop.set_classes(CLASSES)
    coop.logits(images)
    coop.loss(images, torch.tensor([0, 1]))
    assert len(calls) == 1
    coop.set_classes(["yellow moon", "black cross"])
    assert coop.logits(images).shape == (2, 2) and len(calls) == 2
    coop.set_classes(CLASSES)
    coop.logits(images)
    assert len(calls) == 2
    assert torch.equal(coop.text_ctx.detach(), context)
    assert calls[1] == ["X " * 16 + "yellow moon.", "X " * 16 + "black cross."]


def _frozen_logits(tiny, images, texts):
    """s · f̂ ĝᵀ with ĝ from open_clip's own encode_text of `texts` (one per class)."""
    model = tiny.model
    text = F.normalize(model.encode_text(tiny.tokenizer(texts)), dim=-1)
    return model.logit_scale.exp() * F.normalize(model.encode_image(images), dim=-1) @ text.T


@pytest.mark.parametrize("position, sentence", [
    ("front", "{} a photo of a."),  # [SOT] name ctx . [EOT]
    ("middle", "a photo {} of a."),  # [SOT] ctx[:2] name ctx[2:] . [EOT]
    ("end", "a photo of a {}."),
])
def test_class_token_position_places_the_context_around_the_name(tiny, images, position, sentence):
    """Context initialised from the words "a photo of a": each position is open_clip on the sentence
    with the name there. Class names of different token lengths, one with an underscore."""
    names = ["red circle", "blue_square", "green five pointed star"]
    coop = CoOp(tiny, CoOpConfig(n_ctx=4, ctx_init="a photo of a", class_token_position=position))
    coop.set_classes(names)
    expected = _frozen_logits(tiny, images, [sentence.format(n.replace("_", " ")) for n in names])
    assert_equivalent(coop.logits(images), expected)
    coop.loss(images, torch.tensor([0, 2]))["total"].backward()
    assert coop.text_ctx.grad.abs().sum(-1).min() > 0  # every context vector is in every sequence


def test_class_specific_context_learns_one_context_per_class(tiny, images):
    coop = CoOp(tiny, CoOpConfig(n_ctx=4, ctx_init="a photo of a", csc=True))
    assert coop.text_ctx is None and list(coop.parameters()) == []
    coop.set_classes(CLASSES)
    assert coop.text_ctx.shape == (3, 4, 64)
    assert_equivalent(coop.logits(images), _frozen_logits(tiny, images, [f"a photo of a {c}." for c in CLASSES]))
    with torch.no_grad():
        coop.text_ctx[1] += torch.randn(4, 64, generator=torch.Generator().manual_seed(0))  # only class 1
    changed = coop.text_features() - F.normalize(tiny.model.encode_text(
        tiny.tokenizer([f"a photo of a {c}." for c in CLASSES])), dim=-1)
    assert changed[1].abs().max() > 1e-2 and changed[[0, 2]].abs().max() < 1e-5
    coop.set_classes(list(CLASSES))  # the same classes again: fine
    with pytest.raises(ValueError, match="class-specific contexts"):
        coop.set_classes(["yellow moon", "black cross", "white ring"])


def test_csc_with_middle_position_by_hand(tiny, images):
    coop = CoOp(tiny, CoOpConfig(n_ctx=4, ctx_init="a photo of a", csc=True, class_token_position="middle"))
    coop.set_classes(CLASSES)
    expected = _frozen_logits(tiny, images, [f"a photo {c} of a." for c in CLASSES])
    assert_equivalent(coop.logits(images), expected)


def test_ivlp_family_refuses_coop_only_layouts(tiny):
    from vlp_core.methods.ivlp import IVLP, IVLPConfig

    with pytest.raises(ValueError, match="class_token_position"):
        IVLP(tiny, IVLPConfig(class_token_position="front"))
    with pytest.raises(ValueError, match="csc"):
        IVLP(tiny, IVLPConfig(csc=True))


def test_zero_shot_templates_by_name_or_text(tiny, images):
    from vlp_core.methods.templates import COOP_TEMPLATES, IMAGENET_80_TEMPLATES, templates_of

    openai = [template("{}") for template in open_clip.zero_shot_metadata.OPENAI_IMAGENET_TEMPLATES]
    assert list(IMAGENET_80_TEMPLATES) == openai and len(openai) == 80
    assert templates_of("ensemble80") == IMAGENET_80_TEMPLATES
    assert COOP_TEMPLATES["EuroSAT"] == "a centered satellite photo of {}."
    assert COOP_TEMPLATES["DTD"] == "{} texture." and COOP_TEMPLATES["UCF101"] == "a photo of a person doing {}."
    method = ZeroShotCLIP(tiny, ZeroShotConfig(template=COOP_TEMPLATES["EuroSAT"]))
    method.set_classes(["forest", "sea_lake"])
    expected = _frozen_logits(tiny, images, ["a centered satellite photo of forest.",
                                             "a centered satellite photo of sea lake."])
    assert_equivalent(method.logits(images), expected)
    with pytest.raises(ValueError, match="one \\{\\} for the class name"):
        templates_of("a photo of {} and {}")
