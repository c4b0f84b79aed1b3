"""Mixed precision: constant features (the 60-template teacher, DiSa's prototypes, zero-shot classifiers)
are computed once, outside autocast, in the model's own precision; the trainer's autocast path."""

import copy

import pytest
import torch
import torch.nn.functional as F

from vlp_core.backbone import encode_text_prompted, load_clip
from vlp_core.data.loaders import eval_transform, make_loader, train_transform
from vlp_core.data.synthworld import get_suite
from vlp_core.engine.trainer import TrainConfig, train
from vlp_core.methods.disa import DiSa, DiSaConfig
from vlp_core.methods.promptsrc import PromptSRC
from vlp_core.methods.templates import IMAGENET_TEMPLATES

from tolerances import assert_equivalent

CLASSES = ["red circle", "blue square", "green star"]


@pytest.fixture(scope="module")
def batch():
    generator = torch.Generator().manual_seed(5)
    return torch.randn(4, 3, 64, 64, generator=generator), torch.tensor([0, 1, 2, 1])


def _teacher(tiny) -> torch.Tensor:
    """ĝ_o by hand in float32: normalised mean over the 60 templates of raw text features (C, D)."""
    with torch.no_grad():
        raw = torch.stack([tiny.model.encode_text(tiny.tokenizer([t.format(c) for c in CLASSES]))
                           for t in IMAGENET_TEMPLATES])
    return F.normalize(raw.mean(0), dim=-1)


def test_text_encoded_under_bf16_autocast_is_off_by_about_1e_3(tiny):
    """The hazard: a teacher computed inside an autocast step (as it once was, lazily) is not the
    float32 teacher."""
    ids = tiny.tokenizer([IMAGENET_TEMPLATES[0].format(c) for c in CLASSES])
    with torch.no_grad():
        exact = F.normalize(encode_text_prompted(tiny.model, ids), dim=-1)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = F.normalize(encode_text_prompted(tiny.model, ids).float(), dim=-1)
    assert (low - exact).abs().max() > 1e-3


def test_teacher_first_asked_for_inside_autocast_is_the_float32_teacher(tiny, batch):
    method = PromptSRC(tiny)
    method.set_classes(CLASSES)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        terms = method.loss(*batch)  # the first use of ĝ_o, inside autocast
    assert method.teacher_text.dtype == torch.float32
    assert_equivalent(method.teacher_text, _teacher(tiny))
    assert torch.isfinite(terms["sr_text"])


def test_prepare_training_computes_the_constants_before_the_first_step(tiny, batch):
    method = DiSa(tiny)
    method.set_classes(CLASSES)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # as the trainer never does: still exact
        method.prepare_training([batch])
    calls = method.frozen_text.encoder_calls
    assert calls > 0  # the teacher, eagerly (its passes are counted in tests/test_disa.py)
    assert_equivalent(method.teacher_text, _teacher(tiny))
    with torch.no_grad():
        frozen = F.normalize(tiny.model.encode_image(batch[0]), dim=-1)
    expected = F.normalize(torch.stack([frozen[batch[1] == c].mean(0) for c in range(3)]), dim=-1)
    assert method.prototypes.dtype == torch.float32
    assert_equivalent(method.prototypes, expected)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        method.loss(*batch)
    assert method.frozen_text.encoder_calls == calls


def test_a_float64_model_keeps_float64_constants(batch):
    model64 = copy.deepcopy(load_clip("vlp-tiny", seed=0))
    model64.model.double()
    method = DiSa(model64, DiSaConfig(text_depth=1, vision_depth=1))
    method.set_classes(CLASSES)
    images, labels = batch[0].double(), batch[1]
    method.prepare_training([(images, labels)])
    assert method.teacher_text.dtype == torch.float64 and method.prototypes.dtype == torch.float64
    terms = method.loss(images, labels)
    assert all(value.dtype == torch.float64 for value in terms.values())
    terms["total"].backward()


def test_the_trainer_runs_bf16_autocast_on_the_cpu(tiny):
    suite = get_suite("shapes", image_size=tiny.image_size, n_train=2)
    mean, std = tiny.image_mean_std
    items = suite.split("train")
    method = DiSa(tiny)
    method.set_classes(suite.classnames)
    before = method.text_ctx.detach().clone()
    loader = make_loader(suite, items, train_transform(tiny.image_size, mean, std), 8, shuffle=True)
    prepare = make_loader(suite, items, eval_transform(tiny.image_size, mean, std), 8)
    result = train(method, loader, TrainConfig(epochs=1, batch_size=8, precision="bf16", progress=False),
                   prepare_loader=prepare)
    assert result.epochs_run == 1 and all(torch.isfinite(torch.tensor(v)) for v in result.history[0].values())
    assert (method.text_ctx.detach() - before).abs().max() > 0
    assert method.teacher_text.dtype == torch.float32 and method.prototypes.dtype == torch.float32
