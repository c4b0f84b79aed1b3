"""GalLoP: top-k and dropout helpers, features, loss, logits, OOD scores and explanations, each
checked against numbers computed here from the formulas of docs/methods.md."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.testing import assert_close

from vlp_core.backbone import (
    encode_image_prompted,
    encode_text_prompted,
    init_context,
    load_clip,
    prompt_token_ids,
)
from vlp_core.methods import gallop as gallop_module
from vlp_core.methods.gallop import GalLoP, GalLoPConfig
from vlp_core.methods.topk import dropout_global, kept_prompt_count, topk_local_scores, topk_patch_mask

from tolerances import assert_equivalent

CLASSES = ["red circle", "blue square", "green triangle"]


def _randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _sorted_topk_mean(values, k):
    """Mean of the k largest entries of a 1-D tensor (k clipped to its length)."""
    return values.sort(descending=True).values[: min(k, len(values))].mean()


def _hand_topk(local, ks):
    """Lk[b, c, n] = mean of the top-k_n of L[b, :, c, n], written with loops -> (B, C, Ml)."""
    batch, _, classes, prompts = local.shape
    return torch.tensor([[[_sorted_topk_mean(local[b, :, c, n], ks[n]).item() for n in range(prompts)]
                          for c in range(classes)] for b in range(batch)])


def _hand_ce(logits, labels):
    """Mean over rows of log(sum_j exp(z_j)) - z_y, with Python floats."""
    total = 0.0
    for row, y in zip(logits.tolist(), labels.tolist()):
        total += math.log(sum(math.exp(z) for z in row)) - row[y]
    return total / len(labels)


@pytest.fixture
def method(tiny):
    """GalLoP on the tiny CLIP with prompts and local_proj moved away from their (symmetric) init."""
    gallop = GalLoP(tiny, GalLoPConfig(seed=3))
    gallop.set_classes(CLASSES)
    with torch.no_grad():
        gallop.global_prompts.add_(0.05 * _randn(*gallop.global_prompts.shape, seed=1))
        gallop.local_prompts.add_(0.05 * _randn(*gallop.local_prompts.shape, seed=2))
        gallop.local_proj.weight.add_(0.1 * _randn(64, 64, seed=3))
    return gallop


def _text_one_by_one(bundle, prompts):
    """Normalised features of each (class, prompt) sequence encoded alone -> (C, M, D)."""
    rows = []
    for name in CLASSES:
        ids = prompt_token_ids(bundle.tokenizer, [name], 4, "{}")
        rows.append(torch.cat([encode_text_prompted(bundle.model, ids, ctx=p) for p in prompts]))
    return F.normalize(torch.stack(rows), dim=-1)


def _last_block_input(model, images):
    """Input of the last visual block, written out: conv patches, CLS, positions, ln_pre, blocks[:-1]."""
    visual = model.visual
    x = visual.conv1(images).flatten(2).transpose(1, 2)
    x = torch.cat([visual.class_embedding.expand(x.shape[0], 1, -1), x], dim=1) + visual.positional_embedding
    x = visual.ln_pre(x)
    for block in visual.transformer.resblocks[:-1]:
        x = block(x)
    return x


def _local_by_hand(model, images, local_weight):
    """Normalised value-only local features from the last block's raw weights -> (B, P, D)."""
    visual = model.visual
    block = visual.transformer.resblocks[-1]
    assert isinstance(block.ls_1, nn.Identity) and isinstance(block.ls_2, nn.Identity)
    assert isinstance(block.mlp.gelu, nn.GELU) and block.mlp.gelu.approximate == "none"
    h = _last_block_input(model, images)
    width = h.shape[-1]

    def layer_norm(x, norm):
        return F.layer_norm(x, (width,), norm.weight, norm.bias, norm.eps)

    attn = block.attn
    v = layer_norm(h, block.ln_1) @ attn.in_proj_weight[2 * width :].T + attn.in_proj_bias[2 * width :]
    z = h + v @ attn.out_proj.weight.T + attn.out_proj.bias
    hidden = F.gelu(layer_norm(z, block.ln_2) @ block.mlp.c_fc.weight.T + block.mlp.c_fc.bias)
    z = z + hidden @ block.mlp.c_proj.weight.T + block.mlp.c_proj.bias
    patches = layer_norm(z, visual.ln_post)[:, 1:]
    return F.normalize(patches @ local_weight.T @ visual.proj, dim=-1)


# ---------------------------------------------------------------- top-k reduce


def test_topk_local_scores_by_hand():
    local = torch.zeros(1, 4, 2, 2)  # B=1, P=4, C=2, Ml=2
    local[0, :, 0, 0] = torch.tensor([0.1, 0.9, 0.5, 0.3])
    local[0, :, 1, 0] = torch.tensor([-0.2, 0.4, 0.0, 0.8])
    local[0, :, 0, 1] = torch.tensor([0.6, 0.2, 0.7, 0.1])
    local[0, :, 1, 1] = torch.tensor([0.3, 0.3, -0.5, 0.9])
    scores = topk_local_scores(local, (2, 10))  # k = 10 > P = 4: the mean of all four
    expected = torch.tensor([[[(0.9 + 0.5) / 2, (0.6 + 0.2 + 0.7 + 0.1) / 4],
                              [(0.8 + 0.4) / 2, (0.3 + 0.3 - 0.5 + 0.9) / 4]]])
    assert_close(scores, expected)


def test_topk_local_scores_single_prompt():
    local = torch.tensor([[0.2, -0.1, 0.7], [0.0, 0.4, 0.1]]).view(2, 3, 1, 1)  # B=2, P=3, C=1, Ml=1
    assert_close(topk_local_scores(local, (1,)), torch.tensor([0.7, 0.4]).view(2, 1, 1))
    assert_close(topk_local_scores(local, 2), torch.tensor([0.45, 0.25]).view(2, 1, 1))


def test_topk_local_scores_and_mask_match_sorting():
    local = _randn(2, 7, 3, 4)
    ks = (1, 3, 5, 9)
    assert_close(topk_local_scores(local, ks), _hand_topk(local, ks))
    mask = topk_patch_mask(local, ks)
    for b in range(2):
        for c in range(3):
            for n, k in enumerate(ks):
                chosen = mask[b, :, c, n]
                assert chosen.sum() == min(k, 7)
                expected = local[b, :, c, n].sort(descending=True).indices[: min(k, 7)]
                assert set(chosen.nonzero()[:, 0].tolist()) == set(expected.tolist())


def test_topk_rejects_wrong_number_of_ks():
    with pytest.raises(ValueError, match="2 values of k given for 4 local prompts"):
        topk_local_scores(_randn(1, 5, 2, 4), (1, 2))


# ---------------------------------------------------------------- prompt dropout


@pytest.mark.parametrize("num_prompts, p, keep",
                         [(4, 0.0, 4), (4, 0.5, 2), (4, 0.75, 1), (4, 1.0, 1), (8, 0.75, 2)])
def test_kept_prompt_count(num_prompts, p, keep):
    assert kept_prompt_count(num_prompts, p) == keep


def test_dropout_zero_without_replacement_is_the_mean_of_all_prompts():
    sims = _randn(3, 5, 4)
    out = dropout_global(sims, 0.0, "without_replacement", torch.Generator().manual_seed(0))
    expected = (sims[..., 0] + sims[..., 1] + sims[..., 2] + sims[..., 3]) / 4
    assert_equivalent(out, expected)


def test_dropout_zero_with_replacement_draws_mg_prompts_with_repeats():
    sims = _randn(3, 5, 4)
    out = dropout_global(sims, 0.0, "with_replacement", torch.Generator().manual_seed(7))
    drawn = torch.randint(0, 4, (3, 4), generator=torch.Generator().manual_seed(7))
    assert any(len(set(row.tolist())) < 4 for row in drawn)  # the official quirk: not all prompts
    expected = torch.stack([torch.stack([sims[b, :, m] for m in drawn[b].tolist()], -1).mean(-1)
                            for b in range(3)])
    assert_close(out, expected)
    assert (out - sims.mean(-1)).abs().max() > 1e-3


def _coded_sims(batch=6, classes=3, prompts=4):
    """G[b, c, m] = 100 b + 10 c + m, so the drawn prompt can be read back from the output."""
    b, c, m = torch.meshgrid(torch.arange(batch), torch.arange(classes), torch.arange(prompts), indexing="ij")
    return (100 * b + 10 * c + m).float()


@pytest.mark.parametrize("sampling", ["with_replacement", "without_replacement"])
def test_dropout_075_keeps_one_prompt_per_image(sampling):
    sims = _coded_sims()
    out = dropout_global(sims, 0.75, sampling, torch.Generator().manual_seed(1))
    base = 100 * torch.arange(6)[:, None] + 10 * torch.arange(3)[None, :]
    chosen = out - base  # the index of the single kept prompt, the same for every class
    assert torch.equal(chosen, chosen.round()) and ((chosen >= 0) & (chosen <= 3)).all()
    assert (chosen == chosen[:, :1]).all()
    if sampling == "with_replacement":
        drawn = torch.randint(0, 4, (6, 1), generator=torch.Generator().manual_seed(1))
        assert torch.equal(chosen[:, 0].long(), drawn[:, 0])


def test_dropout_without_replacement_draws_distinct_prompts():
    sims = (2.0 ** torch.arange(4)).expand(50, 2, 4)  # G[..., m] = 2^m: the sum names the prompts
    doubled = 2 * dropout_global(sims, 0.5, "without_replacement", torch.Generator().manual_seed(0))
    assert set(doubled.flatten().round().long().tolist()) <= {3, 5, 6, 9, 10, 12}  # two distinct bits


def test_dropout_is_deterministic_given_a_seed():
    sims = _randn(8, 5, 4)
    for sampling in ("with_replacement", "without_replacement"):
        first = dropout_global(sims, 0.75, sampling, torch.Generator().manual_seed(5))
        again = dropout_global(sims, 0.75, sampling, torch.Generator().manual_seed(5))
        assert torch.equal(first, again)


def test_dropout_rejects_bad_options():
    with pytest.raises(ValueError, match="sampling"):
        dropout_global(_randn(1, 2, 4), 0.5, "sometimes")
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        dropout_global(_randn(1, 2, 4), 1.5)


# ---------------------------------------------------------------- construction and text side


def test_prompts_start_as_a_photo_of_a_and_local_proj_as_identity(tiny):
    gallop = GalLoP(tiny)
    ctx = init_context(tiny.model, tiny.tokenizer, "a photo of a", 4)
    assert gallop.global_prompts.shape == gallop.local_prompts.shape == (4, 4, 64)
    assert torch.equal(gallop.global_prompts.data, ctx.expand(4, -1, -1))
    assert torch.equal(gallop.local_prompts.data, ctx.expand(4, -1, -1))
    assert torch.equal(gallop.local_proj.weight.data, torch.eye(64)) and gallop.local_proj.bias is None
    gallop.set_classes(CLASSES)
    with torch.no_grad():
        text_global, text_local = gallop.text_features()
        plain = F.normalize(tiny.model.encode_text(tiny.tokenizer([f"a photo of a {c}" for c in CLASSES])), dim=-1)
    for m in range(4):  # the bare class name, no period
        assert_equivalent(text_global[:, m], plain)
        assert_equivalent(text_local[:, m], plain)


def test_trainable_sizes_for_vit_b16():
    bundle = load_clip("ViT-B-16-quickgelu")  # random weights, the real widths
    sizes = {k: v.numel() for k, v in GalLoP(bundle).trainable_state_dict().items()}
    assert sizes == {"global_prompts": 4 * 4 * 512, "local_prompts": 4 * 4 * 512, "local_proj.weight": 768 * 768}
    assert sizes["local_proj.weight"] == 589_824 and sizes["global_prompts"] + sizes["local_prompts"] == 16_384


def test_config_validation():
    with pytest.raises(ValueError, match="n_local is 4"):
        GalLoPConfig(topk=(5, 10))
    with pytest.raises(ValueError, match="dropout_sampling"):
        GalLoPConfig(dropout_sampling="sometimes")


@pytest.mark.parametrize("chunk", [1024, 5])
def test_batched_text_pass_equals_one_sequence_at_a_time(tiny, method, chunk):
    method.config.text_chunk_size = chunk  # 24 sequences: one pass, or five chunks
    text_global, text_local = method.text_features()
    expected = _text_one_by_one(tiny, torch.cat([method.global_prompts, method.local_prompts]).detach())
    assert text_global.shape == (3, 4, 64) and text_local.shape == (3, 4, 64)
    assert_equivalent(text_global, expected[:, :4])
    assert_equivalent(text_local, expected[:, 4:])


def test_chunked_checkpointed_text_gives_the_same_gradients(tiny, method):
    def prompt_grads(config):
        gallop = GalLoP(tiny, config)
        gallop.load_trainable_state_dict(method.trainable_state_dict())
        gallop.set_classes(CLASSES)
        text_global, text_local = gallop.text_features()
        (text_global[..., 0].sum() + text_local.pow(3).sum()).backward()
        return gallop.global_prompts.grad, gallop.local_prompts.grad

    plain = prompt_grads(GalLoPConfig())
    chunked = prompt_grads(GalLoPConfig(text_chunk_size=7, text_checkpoint=True))
    for a, b in zip(plain, chunked):
        assert a.abs().sum() > 0
        assert_close(a, b, atol=1e-6, rtol=1e-5)


def test_class_list_is_tokenised_once(tiny):
    calls = []

    def counting_tokenizer(texts):
        calls.append(list(texts))
        return tiny.tokenizer(texts)

    bundle = type(tiny)(tiny.model, tiny.preprocess, counting_tokenizer, tiny.name, tiny.pretrained)
    gallop = GalLoP(bundle)
    gallop.set_classes(CLASSES)
    calls.clear()
    for _ in range(3):
        gallop.text_features()  # with gradients: encoded every time, tokenised never
    with torch.no_grad():
        cached = gallop.text_features()
        gallop.set_classes(list(CLASSES))  # the same list: nothing to redo
        assert gallop.text_features() is cached
    assert calls == []
    gallop.set_classes(CLASSES[::-1])
    assert len(calls) == 1


def test_text_features_are_cached_without_gradients_until_prompts_change(method, monkeypatch):
    calls = []

    def counting(*args, **kwargs):
        calls.append(1)
        return encode_text_prompted(*args, **kwargs)

    monkeypatch.setattr(gallop_module, "encode_text_prompted", counting)
    with torch.no_grad():
        first = method.text_features()
        assert method.text_features() is first and len(calls) == 1
        method.global_prompts.add_(0.1 * _randn(4, 4, 64, seed=5))  # an optimiser step is in place
        changed = method.text_features()
        assert len(calls) == 2 and (changed[0] - first[0]).abs().max() > 1e-4
        method.set_classes(CLASSES[:2])
        assert method.text_features()[0].shape == (2, 4, 64) and len(calls) == 3
    method.text_features()
    method.text_features()
    assert len(calls) == 5  # training: a fresh graph each time


# ---------------------------------------------------------------- image side


def test_local_features_equal_the_value_only_path_from_raw_weights(tiny, method, images):
    global_feats, local_feats = method.image_features(images)
    assert local_feats.shape == (2, 64, 64)
    assert_equivalent(local_feats, _local_by_hand(tiny.model, images, method.local_proj.weight))
    assert_equivalent(global_feats, F.normalize(tiny.model.encode_image(images), dim=-1))


def test_identity_local_proj_leaves_value_only_features_unchanged(tiny, images):
    gallop = GalLoP(tiny)
    unmapped = F.normalize(encode_image_prompted(tiny.model, images, local=True).local, dim=-1)
    assert_equivalent(gallop.image_features(images)[1], unmapped)
    assert_equivalent(unmapped, _local_by_hand(tiny.model, images, torch.eye(64)))
    with torch.no_grad():
        gallop.local_proj.weight.add_(0.1 * _randn(64, 64, seed=9))
    assert (gallop.image_features(images)[1] - unmapped).abs().max() > 1e-3


def test_similarities_are_cosines_of_independent_features(tiny, method, images):
    global_sims, local_sims = method.similarities(images)
    text = _text_one_by_one(tiny, torch.cat([method.global_prompts, method.local_prompts]).detach())
    image_global = F.normalize(tiny.model.encode_image(images), dim=-1)
    image_local = _local_by_hand(tiny.model, images, method.local_proj.weight.detach())
    expected_global = (image_global @ text[:, :4].reshape(12, 64).T).view(2, 3, 4)  # [b, c, m]
    expected_local = (image_local @ text[:, 4:].reshape(12, 64).T).view(2, 64, 3, 4)
    assert_equivalent(global_sims, expected_global)
    assert_equivalent(local_sims, expected_local)


# ---------------------------------------------------------------- loss and gradients


def test_gradients_reach_only_prompts_and_local_proj(method, images):
    terms = method.loss(images, torch.tensor([0, 2]))
    assert set(terms) == {"global_ce", "local_ce", "total"}
    assert_close(terms["total"], terms["global_ce"] + terms["local_ce"])
    terms["total"].backward()
    for tensor in (method.global_prompts, method.local_prompts, method.local_proj.weight):
        assert tensor.grad is not None and tensor.grad.abs().sum() > 0
    assert all(p.grad is None for p in method.clip.model.parameters())


def _is_zero(grad):
    return grad is None or not grad.any()


def test_each_loss_term_trains_its_own_head(method, images):
    method.loss(images, torch.tensor([1, 0]))["global_ce"].backward()
    assert method.global_prompts.grad.abs().sum() > 0
    assert _is_zero(method.local_prompts.grad) and _is_zero(method.local_proj.weight.grad)
    method.zero_grad(set_to_none=True)
    method.loss(images, torch.tensor([1, 0]))["local_ce"].backward()
    assert method.local_prompts.grad.abs().sum() > 0 and method.local_proj.weight.grad.abs().sum() > 0
    assert _is_zero(method.global_prompts.grad)


def _known_sims():
    """G (B=2, C=3, Mg=4) and L (B=2, P=6, C=3, Ml=4): cosine-sized numbers with a fixed seed."""
    return 0.3 * _randn(2, 3, 4, seed=11), 0.3 * _randn(2, 6, 3, 4, seed=12)


def test_loss_by_hand_without_dropout(tiny, images, monkeypatch):
    gallop = GalLoP(tiny, GalLoPConfig(dropout=0.0, dropout_sampling="without_replacement"))
    gallop.set_classes(CLASSES)
    global_sims, local_sims = _known_sims()
    monkeypatch.setattr(gallop, "similarities", lambda _: (global_sims, local_sims))
    labels = torch.tensor([2, 0])
    s = tiny.model.logit_scale.exp().item()
    terms = gallop.loss(images, labels)
    local_scores = _hand_topk(local_sims, (5, 6, 6, 6))  # k clipped to P = 6
    expected_global = _hand_ce(s * global_sims.mean(-1), labels)
    expected_local = sum(_hand_ce(s * local_scores[:, :, n], labels) for n in range(4)) / 4
    assert math.isclose(terms["global_ce"].item(), expected_global, rel_tol=1e-5)
    assert math.isclose(terms["local_ce"].item(), expected_local, rel_tol=1e-5)
    assert math.isclose(terms["total"].item(), expected_global + expected_local, rel_tol=1e-5)


def test_loss_by_hand_with_official_dropout(tiny, images, monkeypatch):
    gallop = GalLoP(tiny, GalLoPConfig(seed=21))  # p = 0.75 with replacement: one prompt per image
    gallop.set_classes(CLASSES)
    global_sims, local_sims = _known_sims()
    monkeypatch.setattr(gallop, "similarities", lambda _: (global_sims, local_sims))
    labels = torch.tensor([1, 1])
    s = tiny.model.logit_scale.exp().item()
    drawn = torch.randint(0, 4, (2, 1), generator=torch.Generator().manual_seed(21))
    kept = torch.stack([global_sims[b, :, drawn[b, 0]] for b in range(2)])
    assert math.isclose(gallop.loss(images, labels)["global_ce"].item(), _hand_ce(s * kept, labels), rel_tol=1e-5)


def test_reseed_repeats_the_dropout_draws(tiny, images, monkeypatch):
    gallop = GalLoP(tiny, GalLoPConfig(seed=0))
    gallop.set_classes(CLASSES)
    global_sims, local_sims = 0.3 * _randn(2, 3, 4, seed=11), 0.3 * _randn(2, 6, 3, 4, seed=12)
    monkeypatch.setattr(gallop, "similarities", lambda _: (global_sims, local_sims))
    labels = torch.tensor([0, 2])
    gallop.reseed(4)
    first = [gallop.loss(images, labels)["global_ce"].item() for _ in range(3)]
    gallop.reseed(4)
    again = [gallop.loss(images, labels)["global_ce"].item() for _ in range(3)]
    assert first == again and len(set(first)) > 1


def test_logits_by_hand(tiny, method, images, monkeypatch):
    global_sims, local_sims = _known_sims()
    monkeypatch.setattr(method, "similarities", lambda _: (global_sims, local_sims))
    s = tiny.model.logit_scale.exp().item()
    heads = method.head_logits(images)
    g, l = global_sims.mean(-1), _hand_topk(local_sims, (5, 6, 6, 6)).mean(-1)  # k clipped to P = 6
    assert_close(heads["global"], s * g)
    assert_close(heads["local"], s * l)
    assert_close(heads["combined"], s * (g + l) / 2)
    assert_close(method.logits(images), s * (g + l) / 2)


def test_ood_scores_by_hand(method, images, monkeypatch):
    global_sims, local_sims = _known_sims()
    monkeypatch.setattr(method, "similarities", lambda _: (global_sims, local_sims))
    scores = method.ood_scores(images)
    global_exp = global_sims.mean(-1).exp()  # T = 1, raw cosines
    local_exp = local_sims.mean(-1).exp()  # (B, P, C), every patch
    expected_mcm = torch.tensor([max(global_exp[b] / global_exp[b].sum()).item() for b in range(2)])
    expected_lmcm = torch.tensor([max((local_exp[b, p] / local_exp[b, p].sum()).max().item() for p in range(6))
                                  for b in range(2)])
    assert_close(scores["mcm"], expected_mcm)
    assert_close(scores["l_mcm"], expected_lmcm)
    assert_close(scores["gl_mcm"], expected_mcm + expected_lmcm)


def test_real_forward_logits_and_scores_are_consistent(method, images):
    with torch.no_grad():
        global_sims, local_sims = method.similarities(images)
        heads = method.head_logits(images)
        scores = method.ood_scores(images)
    s = method.logit_scale
    assert_close(heads["global"], s * global_sims.mean(-1))
    assert_close(heads["local"], s * _hand_topk(local_sims, (5, 10, 15, 20)).mean(-1))
    assert ((scores["mcm"] > 1 / 3) & (scores["mcm"] < 1)).all()


# ---------------------------------------------------------------- explain


def test_explain_maps_selection_and_logits(method, images):
    image = images[:1]
    out = method.explain(image, class_index=1)
    with torch.no_grad():
        _, local_sims = method.similarities(image)
        heads = method.head_logits(image)
    assert out["maps"].shape == out["selected"].shape == (4, 64) and out["grid"] == (8, 8)
    assert_close(out["maps"], local_sims[0, :, 1, :].T)
    assert out["selected"].sum(1).tolist() == [5, 10, 15, 20]
    for n, k in enumerate((5, 10, 15, 20)):
        row = out["maps"][n]
        assert row[out["selected"][n]].min() >= row[~out["selected"][n]].max()
        assert_close(out["prompt_scores"][n], row.sort(descending=True).values[:k].mean())
    assert_close(out["global_logits"], heads["global"][0])
    assert_close(out["local_logits"], heads["local"][0])
    assert_close(out["logits"], heads["combined"][0])


def test_new_k_rethresholds_the_cache_without_encoding(method, images, monkeypatch):
    cache = method.explain_cache(images[:1])
    default = cache.explain(2)

    def no_encoder(*args, **kwargs):
        raise AssertionError("an encoder ran for a cached image")

    monkeypatch.setattr(gallop_module, "encode_image_prompted", no_encoder)
    monkeypatch.setattr(gallop_module, "encode_text_prompted", no_encoder)
    out = cache.explain(2, ks=(1, 2, 3, 100))  # 100 > P = 64: every patch
    assert out["ks"] == (1, 2, 3, 64) and out["selected"].sum(1).tolist() == [1, 2, 3, 64]
    assert torch.equal(out["maps"], default["maps"])
    assert torch.equal(out["global_logits"], default["global_logits"])
    s = method.logit_scale
    local_logits = s * _hand_topk(cache.local_sims[None], (1, 2, 3, 64))[0].mean(-1)
    assert_close(out["local_logits"], local_logits)
    assert (out["local_logits"] - default["local_logits"]).abs().max() > 1e-4
    assert cache.explain(0, ks=7)["selected"].sum(1).tolist() == [7, 7, 7, 7]
    with pytest.raises(ValueError, match="class_index 3"):
        cache.explain(3)


# ---------------------------------------------------------------- presets


def test_without_a_learned_local_projection_the_local_features_are_the_value_only_path(tiny, images):
    """learn_local_proj=False (the ablation of GalLoP's local projection): no local_proj tensor is
    learned and f_l is the value-only path through the identity."""
    method = GalLoP(tiny, GalLoPConfig(learn_local_proj=False))
    assert method.local_proj is None
    assert sorted(method.trainable_state_dict()) == ["global_prompts", "local_prompts"]
    _, local_feats = method.image_features(images)
    assert_equivalent(local_feats, _local_by_hand(tiny.model, images, torch.eye(64)))
