"""IVLP, PromptSRC and DiSa: loss terms against hand computations, equivalences, masks, caching."""

import math

import pytest
import torch
import torch.nn.functional as F

from vlp_core.backbone import encode_image_prompted, encode_text_prompted, keep_indices, load_clip, prompt_token_ids
from vlp_core.methods import ivlp as ivlp_module
from vlp_core.methods import promptsrc as promptsrc_module
from vlp_core.methods.disa import DiSa, DiSaConfig, class_prototypes, cir_kl, directional_loss
from vlp_core.methods.ivlp import IVLP, IVLPConfig
from vlp_core.methods.promptsrc import PromptSRC, PromptSRCConfig, gaussian_epoch_weights, sr_logits_kl
from vlp_core.methods.templates import IMAGENET_TEMPLATES

from tolerances import assert_equivalent

CLASSES = ["red circle", "blue square", "green star"]
OFF = dict(use_sr=False, use_cir=False, use_dir=False)


@pytest.fixture(scope="module")
def batch():
    """Four images of the tiny model's size (64 patches) and their labels, every class present."""
    generator = torch.Generator().manual_seed(5)
    return torch.randn(4, 3, 64, 64, generator=generator), torch.tensor([0, 1, 2, 1])


@pytest.fixture(scope="module")
def teacher_by_hand(tiny):
    """ĝ_o by hand: per class, the normalised mean over the 60 templates of raw features. (C, D)"""
    with torch.no_grad():
        per_template = torch.stack([tiny.model.encode_text(
            tiny.tokenizer([t.format(c) for c in CLASSES])) for t in IMAGENET_TEMPLATES])
    return F.normalize(per_template.mean(0), dim=-1)  # PromptSRC: mean of raw features, then normalise


def _disa(tiny, batch, **options):
    method = DiSa(tiny, DiSaConfig(**options))
    method.set_classes(CLASSES)
    method.prepare_training([batch])
    return method


# ---------------------------------------------------------------- pure loss functions


def _softmax(row):
    exps = [math.exp(v - max(row)) for v in row]
    return [e / sum(exps) for e in exps]


def _kl(p_logits, q_logits):
    """KL(softmax p ‖ softmax q) of two lists of logits, in plain Python."""
    p, q = _softmax(p_logits), _softmax(q_logits)
    return sum(pi * math.log(pi / qi) for pi, qi in zip(p, q))


LOGITS_A = [[2.0, -1.0, 0.5], [0.0, 3.0, 1.0]]
LOGITS_B = [[1.0, 1.0, -2.0], [0.5, 0.0, 2.5]]


def test_sr_logits_is_kl_frozen_to_prompted_summed_over_b_times_c():
    prompted, frozen = torch.tensor(LOGITS_A), torch.tensor(LOGITS_B)
    expected = (_kl(LOGITS_B[0], LOGITS_A[0]) + _kl(LOGITS_B[1], LOGITS_A[1])) / 6
    assert sr_logits_kl(prompted, frozen).item() == pytest.approx(expected, abs=1e-6)
    # PromptSRC's own expression of the same quantity
    theirs = F.kl_div(F.log_softmax(prompted, 1), F.log_softmax(frozen, 1), reduction="sum",
                      log_target=True) / prompted.numel()
    assert sr_logits_kl(prompted, frozen).item() == pytest.approx(theirs.item(), abs=1e-6)


@pytest.mark.parametrize("direction", ["a||b", "b||a", "symmetric"])
@pytest.mark.parametrize("reduction,divisor", [("batchmean", 2), ("mean", 6), ("sum", 1)])
def test_cir_kl_directions_and_reductions(direction, reduction, divisor):
    ab = [_kl(LOGITS_A[b], LOGITS_B[b]) for b in range(2)]
    ba = [_kl(LOGITS_B[b], LOGITS_A[b]) for b in range(2)]
    rows = {"a||b": ab, "b||a": ba, "symmetric": [(x + y) / 2 for x, y in zip(ab, ba)]}[direction]
    value = cir_kl(torch.tensor(LOGITS_A), torch.tensor(LOGITS_B), direction, reduction)
    assert value.item() == pytest.approx(sum(rows) / divisor, abs=1e-6)


def test_cir_kl_rejects_unknown_options():
    with pytest.raises(ValueError, match="cir_direction"):
        cir_kl(torch.zeros(1, 2), torch.zeros(1, 2), "a|b")
    with pytest.raises(ValueError, match="cir_reduction"):
        cir_kl(torch.zeros(1, 2), torch.zeros(1, 2), "a||b", "none")


def test_directional_loss_modes():
    features = torch.tensor([[3.0, 4.0], [0.0, -2.0]])  # unit: (0.6, 0.8), (0, -1)
    targets = torch.tensor([[1.0, 0.0], [0.6, -0.8]])
    unit = [[0.6, 0.8], [0.0, -1.0]]
    cosines = [0.6, 0.8]
    diffs = [u - t for ur, tr in zip(unit, targets.tolist()) for u, t in zip(ur, tr)]
    expected = {"cosine": sum(1 - c for c in cosines) / 2,
                "mse": sum(d * d for d in diffs) / 4,
                "l1": sum(abs(d) for d in diffs) / 4}
    for mode, value in expected.items():
        assert directional_loss(features, targets, mode).item() == pytest.approx(value, abs=1e-6)
    with pytest.raises(ValueError, match="dir_loss"):
        directional_loss(features, targets, "dot")


def test_class_prototypes_by_hand():
    features = torch.tensor([[2.0, 0.0], [0.0, 5.0], [1.0, 1.0], [0.0, 3.0]])
    labels = torch.tensor([0, 0, 1, 1])
    s = 1 / math.sqrt(2)
    mean0, mean1 = [0.5, 0.5], [s / 2, (s + 1) / 2]
    expected = torch.tensor([[v / math.hypot(*mean0) for v in mean0], [v / math.hypot(*mean1) for v in mean1]])
    assert_equivalent(class_prototypes(features, labels, 2), expected)
    with pytest.raises(ValueError, match=r"classes \[2\]"):
        class_prototypes(features, labels, 3)
    with pytest.raises(ValueError, match="labels"):
        class_prototypes(features, torch.tensor([0, 1, 2, 1]), 2)


def test_gaussian_epoch_weights():
    def density(x, mu, sigma):
        return math.exp(-0.5 * ((x - mu) / sigma) ** 2) / (sigma * math.sqrt(2 * math.pi))

    raw = [density(e, 15, 1) for e in range(1, 21)]
    expected = torch.tensor([r / sum(raw) for r in raw], dtype=torch.float64)
    torch.testing.assert_close(gaussian_epoch_weights(20, 15, 1), expected, atol=1e-12, rtol=0)
    assert gaussian_epoch_weights(20, 15, 1).argmax().item() == 14  # epoch 15, 1-based
    short = gaussian_epoch_weights(2, 15, 1)  # far-off mean: no 0/0, weight on the last epoch
    assert short[1].item() == pytest.approx(1 / (1 + math.exp(-13.5)), abs=1e-12)


# ---------------------------------------------------------------- IVLP structure


def test_ivlp_trainable_size_for_vit_b16_widths():
    bundle = load_clip("ViT-B-16-quickgelu")  # random weights, the real architecture; no forward
    method = IVLP(bundle)
    sizes = {name: p.numel() for name, p in method.named_parameters()}
    assert sizes["vision_ctx"] + sizes["vision_deep"] == 9 * 4 * 768 == 27_648
    assert sizes["text_ctx"] + sizes["text_deep"] == 9 * 4 * 512 == 18_432
    assert sum(sizes.values()) == 46_080
    assert method.text_depth == method.vision_depth == 9


def test_ivlp_depth_is_clipped_to_the_model_and_prompts_initialised(tiny):
    method = IVLP(tiny)
    assert method.text_depth == method.vision_depth == 3  # vlp-tiny has 3 blocks per tower
    assert method.text_deep.shape == (2, 4, 64) and method.vision_deep.shape == (2, 4, 64)
    words = tiny.model.token_embedding(tiny.tokenizer(["a photo of a"])[0, 1:5])
    torch.testing.assert_close(method.text_ctx.detach(), words, atol=0, rtol=0)
    for random_init in (method.text_deep, method.vision_ctx, method.vision_deep):
        assert 0.01 < random_init.std().item() < 0.03
    shallow = IVLP(tiny, IVLPConfig(text_depth=1, vision_depth=2))
    assert shallow.text_deep.shape == (0, 4, 64) and shallow.vision_deep.shape == (1, 4, 64)
    with pytest.raises(ValueError, match="vision_depth must be >= 1"):
        IVLP(tiny, IVLPConfig(vision_depth=0))


def test_ivlp_logits_and_ce_by_hand(tiny, batch):
    images, labels = batch
    method = IVLP(tiny)
    method.set_classes(CLASSES)
    model = tiny.model
    ids = tiny.tokenizer([f"X X X X {c}." for c in CLASSES])
    text = F.normalize(encode_text_prompted(model, ids, method.text_ctx, method.text_deep), dim=-1)
    image = F.normalize(encode_image_prompted(model, images, method.vision_ctx, method.vision_deep).pooled, dim=-1)
    logits = model.logit_scale.exp() * image @ text.T
    assert_equivalent(method.logits(images), logits)
    ce = sum(torch.logsumexp(logits[b], 0) - logits[b, labels[b]] for b in range(4)) / 4
    terms = method.loss(images, labels)
    assert set(terms) == {"ce", "total"}
    assert_equivalent(terms["total"], ce)


# ---------------------------------------------------------------- DiSa end to end, by hand


@pytest.mark.parametrize("mask_mode", ["drop_tokens", "zero_pixels"])
def test_disa_terms_by_hand(tiny, batch, teacher_by_hand, mask_mode):
    images, labels = batch
    method = _disa(tiny, batch, mask_ratio=0.25, mask_pool=0.25, mask_mode=mask_mode)  # deterministic mask
    terms = method.loss(images, labels)
    model, s = tiny.model, tiny.model.logit_scale.exp()
    with torch.no_grad():
        ids = prompt_token_ids(tiny.tokenizer, CLASSES, 4)
        g_p = F.normalize(encode_text_prompted(model, ids, method.text_ctx, method.text_deep), dim=-1)
        f_p = F.normalize(encode_image_prompted(model, images, method.vision_ctx, method.vision_deep).pooled, dim=-1)
        f_o = F.normalize(model.encode_image(images), dim=-1)
        g_o = teacher_by_hand
        frozen_patches = encode_image_prompted(model, images, patches=True).patches  # (4, 64, D)
        # saliency by hand -> the 16 least-salient patches of each image
        cosine = F.normalize(frozen_patches, dim=-1) @ g_o[labels].unsqueeze(-1)
        saliency = torch.softmax(cosine.squeeze(-1) / 0.01, dim=-1)
        bottom = torch.stack([torch.tensor(sorted(sorted(range(64), key=lambda p: (saliency[b, p].item(), p))[:16]))
                              for b in range(4)])
        if mask_mode == "drop_tokens":
            masked = encode_image_prompted(model, images, method.vision_ctx, method.vision_deep, drop=bottom)
        else:
            blanked = images.clone()
            for b in range(4):
                for p in bottom[b].tolist():
                    row, col = divmod(p, 8)
                    blanked[b, :, 8 * row : 8 * row + 8, 8 * col : 8 * col + 8] = 0
            masked = encode_image_prompted(model, blanked, method.vision_ctx, method.vision_deep)
        f_p_masked = F.normalize(masked.pooled, dim=-1)
        # prototypes by hand: the batch is the whole training split here
        prototypes = F.normalize(torch.stack([f_o[labels == c].mean(0) for c in range(3)]), dim=-1)

    logits = s * f_p @ g_p.T
    q_a, q_b = torch.softmax(s * f_p_masked @ g_o.T, -1), torch.softmax(s * f_o @ g_p.T, -1)
    p_o, p_p = torch.softmax(s * f_o @ g_o.T, -1), torch.softmax(logits, -1)
    expected = {
        "ce": -torch.log(p_p[torch.arange(4), labels]).mean(),
        "sr_text": 25 * (g_p - g_o).abs().mean(),
        "sr_image": 10 * (f_p - f_o).abs().mean(),
        "sr_logits": (p_o * (p_o.log() - p_p.log())).sum() / 12,
        "cir": (q_a * (q_a.log() - q_b.log())).sum() / 4,
        "dir": (1 - (f_p * prototypes[labels]).sum(-1)).mean(),
    }
    expected["total"] = sum(expected.values())
    assert set(terms) == set(expected)
    for name, value in expected.items():
        torch.testing.assert_close(terms[name], value, atol=2e-5, rtol=1e-4, msg=lambda m: f"{name}: {m}")
    assert terms["cir"] > 0 and terms["dir"] > 0


@pytest.mark.parametrize("dir_loss", ["mse", "l1"])
def test_disa_distance_alignment_by_hand(tiny, batch, dir_loss):
    images, labels = batch
    method = _disa(tiny, batch, dir_loss=dir_loss, dir_weight=2.0)
    with torch.no_grad():
        f_p = F.normalize(encode_image_prompted(tiny.model, images, method.vision_ctx,
                                                method.vision_deep).pooled, dim=-1)
        f_o = F.normalize(tiny.model.encode_image(images), dim=-1)
        prototypes = F.normalize(torch.stack([f_o[labels == c].mean(0) for c in range(3)]), dim=-1)
    diff = f_p - prototypes[labels]
    expected = 2.0 * (diff.pow(2).mean() if dir_loss == "mse" else diff.abs().mean())
    torch.testing.assert_close(method.loss(images, labels)["dir"], expected, atol=1e-6, rtol=1e-5)


def test_cir_without_mask_uses_the_full_prompted_image(tiny, batch, teacher_by_hand):
    images, labels = batch
    method = _disa(tiny, batch, use_sr=False, use_dir=False, cir_use_mask=False,
                   cir_direction="symmetric", cir_weight=0.5)
    s = tiny.model.logit_scale.exp()
    with torch.no_grad():
        g_p = method.text_features()
        f_p = F.normalize(encode_image_prompted(tiny.model, images, method.vision_ctx,
                                                method.vision_deep).pooled, dim=-1)
        f_o = F.normalize(tiny.model.encode_image(images), dim=-1)
    log_a, log_b = F.log_softmax(s * f_p @ teacher_by_hand.T, -1), F.log_softmax(s * f_o @ g_p.T, -1)
    kl_ab = (log_a.exp() * (log_a - log_b)).sum() / 4
    kl_ba = (log_b.exp() * (log_b - log_a)).sum() / 4
    terms = method.loss(images, labels)
    assert set(terms) == {"ce", "cir", "total"}
    torch.testing.assert_close(terms["cir"], 0.5 * (kl_ab + kl_ba) / 2, atol=1e-6, rtol=1e-4)


# ---------------------------------------------------------------- equivalences


def test_all_regularisers_off_equals_ivlp(tiny, batch):
    images, labels = batch
    disa = DiSa(tiny, DiSaConfig(**OFF))
    disa.set_classes(CLASSES)
    ivlp = IVLP(tiny)
    ivlp.set_classes(CLASSES)
    promptsrc = PromptSRC(tiny, PromptSRCConfig(use_sr=False))
    promptsrc.set_classes(CLASSES)
    expected = ivlp.loss(images, labels)
    for method in (disa, promptsrc):
        terms = method.loss(images, labels)
        assert set(terms) == {"ce", "total"} and torch.equal(terms["total"], expected["total"])


def test_cir_and_dir_off_equals_promptsrc(tiny, batch):
    images, labels = batch
    disa = _disa(tiny, batch, use_cir=False, use_dir=False)
    promptsrc = PromptSRC(tiny)
    promptsrc.set_classes(CLASSES)
    ours, theirs = disa.loss(images, labels), promptsrc.loss(images, labels)
    assert set(ours) == set(theirs) == {"ce", "sr_text", "sr_image", "sr_logits", "total"}
    assert torch.equal(ours["total"], theirs["total"])


@pytest.mark.parametrize("mask_mode", ["drop_tokens", "zero_pixels"])
def test_a_step_runs_the_frozen_stem_once_and_gives_the_same_loss_and_gradients(tiny, batch, monkeypatch, mask_mode):
    """The prompted, frozen and masked passes of a DiSa step share one run of the stem (its tokens
    do not depend on the prompts), bit for bit what each pass running it again gives."""
    images, labels = batch
    stem_runs = []
    handle = tiny.model.visual.conv1.register_forward_hook(lambda *_: stem_runs.append(1))
    try:
        shared = _disa(tiny, batch, mask_mode=mask_mode)
        stem_runs.clear()
        terms = shared.loss(images, labels)
        assert len(stem_runs) == (1 if mask_mode == "drop_tokens" else 2)  # blanked pixels: a stem of their own
        terms["total"].backward()
        alone = _disa(tiny, batch, mask_mode=mask_mode)
        monkeypatch.setattr(alone, "image_tokens", lambda images: None)
        stem_runs.clear()
        expected = alone.loss(images, labels)
        assert len(stem_runs) == 3
        expected["total"].backward()
    finally:
        handle.remove()
    assert terms.keys() == expected.keys() and all(torch.equal(terms[k], expected[k]) for k in terms)
    for (name, a), b in zip(shared.named_parameters(), alone.parameters()):
        assert b.grad.abs().max() > 0 and torch.equal(a.grad, b.grad), name
    with torch.inference_mode():  # inference tensors have no version counter: each pass runs the stem
        torch.testing.assert_close(shared.logits(images.clone()), alone.logits(images.clone()), atol=0, rtol=0)


@pytest.mark.parametrize("switch,term", [("use_sr", "sr_logits"), ("use_cir", "cir"), ("use_dir", "dir")])
def test_each_component_turns_off_alone(tiny, batch, switch, term):
    images, labels = batch
    full = _disa(tiny, batch).loss(images, labels)
    without = _disa(tiny, batch, **{switch: False}).loss(images, labels)
    assert term in full and term not in without
    for name in set(without) - {"total"}:  # the other terms are untouched
        torch.testing.assert_close(without[name], full[name], atol=0, rtol=0)
    removed = sum(full[name] for name in set(full) - set(without))
    assert_equivalent(without["total"], full["total"] - removed)


# ---------------------------------------------------------------- masking inside the forward


def test_masked_forward_keeps_cls_and_every_prompt_token(tiny, batch, monkeypatch):
    images, labels = batch
    method = _disa(tiny, batch, mask_ratio=0.3, mask_pool=0.5)
    calls = []
    original = ivlp_module.encode_image_prompted

    def recording(model, imgs, ctx=None, deep_ctx=None, drop=None, **kwargs):
        hidden = []
        calls.append((drop, hidden))
        return original(model, imgs, ctx, deep_ctx, drop, hidden=hidden, **kwargs)

    monkeypatch.setattr(ivlp_module, "encode_image_prompted", recording)
    method.loss(images, labels)
    full = [h for drop, h in calls if drop is None]
    masked = [(drop, h) for drop, h in calls if drop is not None]
    assert len(full) == 1 and len(masked) == 1
    drop, hidden = masked[0]
    kept = keep_indices(drop, 64)
    assert drop.shape == (4, 19)  # round(0.3 · 64)
    for j, (plain_j, masked_j) in enumerate(zip(full[0], hidden)):
        assert masked_j.shape == (4, 1 + 64 - 19 + 4, 64)
        if j == 0:  # CLS and kept patches are the plain forward's, the prompts follow
            assert_equivalent(masked_j[:, 0], plain_j[:, 0])
            expected = torch.stack([plain_j[b, 1 + kept[b]] for b in range(4)])
            assert_equivalent(masked_j[:, 1:46], expected)
            assert_equivalent(masked_j[:, -4:], plain_j[:, -4:])
        else:
            assert torch.equal(masked_j[:, -4:], method.vision_deep[j - 1].expand(4, -1, -1))


def test_mask_generator_is_seeded(tiny, batch):
    images, labels = batch
    first = _disa(tiny, batch).loss(images, labels)["cir"]
    again = _disa(tiny, batch).loss(images, labels)["cir"]
    reseeded = _disa(tiny, batch)
    reseeded.reseed(123)
    assert torch.equal(first, again)
    assert not torch.equal(first, reseeded.loss(images, labels)["cir"])
    reseeded.reseed(0)  # the config seed again: the first draw again
    assert torch.equal(first, reseeded.loss(images, labels)["cir"])


def test_inference_uses_the_full_image(tiny, batch):
    images, _ = batch
    method = _disa(tiny, batch)
    state = method.generator.get_state()
    with torch.no_grad():
        f_p = F.normalize(encode_image_prompted(tiny.model, images, method.vision_ctx,
                                                method.vision_deep).pooled, dim=-1)
        expected = tiny.model.logit_scale.exp() * f_p @ method.text_features().T
        assert_equivalent(method.logits(images), expected)
    assert torch.equal(method.generator.get_state(), state)


# ---------------------------------------------------------------- computed once


def test_frozen_text_and_prototypes_are_computed_once(tiny, batch, monkeypatch):
    images, labels = batch
    method = _disa(tiny, batch)
    prototypes = method.prototypes
    frozen_passes = []
    original = promptsrc_module.encode_image_prompted

    def counting(*args, **kwargs):
        frozen_passes.append(kwargs.get("patches"))
        return original(*args, **kwargs)

    monkeypatch.setattr(promptsrc_module, "encode_image_prompted", counting)
    method.loss(images, labels)
    calls = method.frozen_text.encoder_calls
    for _ in range(3):
        method.loss(images, labels)
    head_lengths = {len(tiny.tokenizer.encode(template.partition("{}")[0])) for template in IMAGENET_TEMPLATES}
    assert calls == len(head_lengths) == 8 and method.frozen_text.encoder_calls == calls  # a pass per head length
    assert method.prototypes is prototypes and method.prototypes.shape == (3, 64)
    assert frozen_passes == [True] * 4  # one frozen image pass per step, with its patch embeddings


def test_loss_needs_prototypes_of_the_current_classes(tiny, batch):
    images, labels = batch
    method = DiSa(tiny)
    method.set_classes(CLASSES)
    with pytest.raises(RuntimeError, match="prepare_training"):
        method.loss(images, labels)
    method.prepare_training([batch])
    method.set_classes(["a", "b", "c"])
    with pytest.raises(RuntimeError, match="another class list"):
        method.loss(images, labels)
    without_dir = DiSa(tiny, DiSaConfig(use_dir=False))
    without_dir.set_classes(CLASSES)
    without_dir.prepare_training([batch])
    assert without_dir.prototypes is None and "dir" not in without_dir.loss(images, labels)


def test_invalid_options_fail_at_construction(tiny):
    with pytest.raises(ValueError, match="pool"):
        DiSa(tiny, DiSaConfig(mask_ratio=0.6, mask_pool=0.5))
    with pytest.raises(ValueError, match="mask_mode"):
        DiSa(tiny, DiSaConfig(mask_mode="blur"))


# ---------------------------------------------------------------- gradients, state, classes


def test_gradients_reach_only_the_prompts_through_both_cir_sides(tiny, batch):
    images, labels = batch
    method = _disa(tiny, batch)
    method.loss(images, labels)["total"].backward()
    for name, parameter in method.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name
    assert all(p.grad is None for p in tiny.model.parameters())
    cir_only = _disa(tiny, batch, use_sr=False, use_dir=False)
    terms = cir_only.loss(images, labels)
    grads = torch.autograd.grad(terms["cir"], [cir_only.text_ctx, cir_only.vision_ctx])
    assert all(g.abs().sum() > 0 for g in grads)  # q_b's prompted text and q_a's prompted image


def test_trainable_state_holds_prompts_and_gpa_aggregate_only(tiny, batch):
    method = _disa(tiny, batch)
    assert list(method.trainable_state_dict()) == [
        "text_ctx", "text_deep", "vision_ctx", "vision_deep",
        "gpa_text_ctx", "gpa_text_deep", "gpa_vision_ctx", "gpa_vision_deep"]
    assert list(DiSa(tiny, DiSaConfig(gpa=False)).trainable_state_dict()) == [
        "text_ctx", "text_deep", "vision_ctx", "vision_deep"]


def test_set_classes_switches_to_novel_classes_without_touching_prompts(tiny, batch):
    images, labels = batch
    method = _disa(tiny, batch)
    before = {k: v.clone() for k, v in method.trainable_state_dict().items()}
    novel = ["yellow moon", "black cross"]
    method.set_classes(novel)
    assert method.logits(images).shape == (4, 2)
    assert all(torch.equal(before[k], v) for k, v in method.trainable_state_dict().items())
    ids = tiny.tokenizer([f"X X X X {c}." for c in novel])
    assert_equivalent(method.text_features(), F.normalize(encode_text_prompted(
        tiny.model, ids, method.text_ctx, method.text_deep), dim=-1))


def test_gpa_aggregates_epochs_with_gaussian_weights(tiny):
    method = PromptSRC(tiny, PromptSRCConfig(gpa_mean=2.0, gpa_std=1.0))
    raw = [math.exp(-0.5 * (e - 2.0) ** 2) for e in (1, 2, 3)]
    weights = [r / sum(raw) for r in raw]
    with torch.no_grad():
        for epoch in range(3):
            for parameter in method.parameters():
                parameter.fill_(float(epoch + 1))  # "training" leaves value e + 1 after epoch e
            method.on_epoch_end(epoch, 3)
            if epoch < 2:  # training continues from the current prompts
                assert all((p == epoch + 1).all() for p in method.parameters())
    expected = sum(w * (e + 1) for e, w in enumerate(weights))
    for parameter in method.parameters():
        assert_equivalent(parameter.detach(), torch.full_like(parameter, expected))
    without = PromptSRC(tiny, PromptSRCConfig(gpa=False))
    values = without.vision_ctx.detach().clone()
    without.on_epoch_end(0, 1)
    assert torch.equal(without.vision_ctx.detach(), values)


# ---------------------------------------------------------------- explain


def test_explain_for_the_app(tiny, batch, teacher_by_hand):
    images, _ = batch
    method = _disa(tiny, batch)
    out = method.explain(images[:1], class_index=2, ratio=0.25, pool=0.25, seed=3)
    with torch.no_grad():
        patches = encode_image_prompted(tiny.model, images[:1], patches=True).patches[0]
        saliency = torch.softmax(F.normalize(patches, dim=-1) @ teacher_by_hand[2] / 0.01, dim=0)
        f_o = F.normalize(tiny.model.encode_image(images[:1]), dim=-1)
        s = tiny.model.logit_scale.exp()
        frozen_masked = F.normalize(
            encode_image_prompted(tiny.model, images[:1], drop=out["masked"][None]).pooled, dim=-1)
    assert_equivalent(out["saliency"], saliency)
    assert out["masked"].tolist() == sorted(sorted(range(64), key=lambda p: saliency[p].item())[:16])
    assert out["grid"] == 8 and out["class_index"] == 2
    with torch.no_grad():
        assert_equivalent(out["prompted_full"], torch.softmax(method.logits(images[:1])[0], 0))
    assert_equivalent(out["frozen_full"], torch.softmax(s * f_o[0] @ teacher_by_hand.T, 0))
    assert_equivalent(out["frozen_masked"], torch.softmax(s * frozen_masked[0] @ teacher_by_hand.T, 0))
    assert out["prompted_masked"].shape == (3,) and abs(out["prompted_masked"].sum().item() - 1) < 1e-5
    predicted = method.explain(images[:1])
    assert predicted["class_index"] == int(out["prompted_full"].argmax())
    assert predicted["masked"].shape == (19,)


def test_explain_cache_reuses_the_encoding(tiny, batch):
    """A slider move (new ratio / pool / seed / class) re-draws the mask without a new frozen pass."""
    images, labels = batch
    method = DiSa(tiny)
    method.set_classes(CLASSES)
    cache = method.explain_cache(images[:1])
    first = cache.explain(class_index=1, ratio=0.25, pool=0.5, seed=3)
    torch.testing.assert_close(first["saliency"], method.explain(images[:1], 1, 0.25, 0.5, 3)["saliency"])
    calls = method.frozen_text.encoder_calls
    again = cache.explain(class_index=2, ratio=0.5, pool=0.5, seed=0)
    assert method.frozen_text.encoder_calls == calls
    assert len(again["masked"]) == round(0.5 * 64) and again["class_index"] == 2
    assert not torch.equal(first["saliency"], again["saliency"])
