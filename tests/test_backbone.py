"""The prompted forwards equal open_clip where they should and differ only where they should."""

import copy
import dataclasses
import functools
import math

import open_clip
import pytest
import torch
from open_clip.transformer import QuickGELU
from safetensors.torch import save_file

from vlp_core.backbone import (
    FrozenTextFeatures,
    WeightsNotFoundError,
    encode_image_prompted,
    encode_text_prompted,
    init_context,
    keep_indices,
    load_clip,
    prompt_token_ids,
)
from vlp_core.backbone import loading, prompted, text_cache
from vlp_core.methods.coop import CoOp, CoOpConfig
from vlp_core.methods.disa import DiSa, DiSaConfig
from vlp_core.methods.gallop import GalLoP, GalLoPConfig
from vlp_core.methods.ivlp import IVLP, IVLPConfig
from vlp_core.methods.promptsrc import PromptSRC, PromptSRCConfig
from vlp_core.backbone.tokens import TemplateFiller, seam_is_safe
from vlp_core.methods.templates import COOP_TEMPLATES, IMAGENET_80_TEMPLATES, IMAGENET_TEMPLATES

from tolerances import FLOAT32, assert_equivalent

CLASSES = ["red circle", "blue square", "a very long class name with many words"]


def _random_prompts(n_layers, n_ctx, width, seed=1):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(n_layers, n_ctx, width, generator=generator) * 0.02


# ---------------------------------------------------------------- equivalence with open_clip


def test_text_without_prompts_equals_encode_text(tiny):
    ids = tiny.tokenizer(CLASSES)
    ours = encode_text_prompted(tiny.model, ids)
    assert_equivalent(ours, tiny.model.encode_text(ids))


def test_image_without_prompts_equals_encode_image(tiny, images):
    out = encode_image_prompted(tiny.model, images)
    assert_equivalent(out.pooled, tiny.model.encode_image(images))


def test_vit_b16_without_prompts_equals_open_clip():
    bundle = load_clip("ViT-B-16-quickgelu")  # random weights, the real architecture
    model = bundle.model
    assert isinstance(model.visual.transformer.resblocks[0].mlp.gelu, QuickGELU)
    image = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    ids = bundle.tokenizer(["a photo of a dog."])
    assert_equivalent(encode_image_prompted(model, image).pooled, model.encode_image(image))
    assert_equivalent(encode_text_prompted(model, ids), model.encode_text(ids))


def test_context_equal_to_the_words_it_replaces_changes_nothing(tiny):
    """Learned context initialised from "a photo of a" reproduces the plain prompt exactly."""
    ctx = init_context(tiny.model, tiny.tokenizer, "a photo of a", 4)
    ids = prompt_token_ids(tiny.tokenizer, CLASSES, n_ctx=4)
    plain = tiny.model.encode_text(tiny.tokenizer([f"a photo of a {c}." for c in CLASSES]))
    assert_equivalent(encode_text_prompted(tiny.model, ids, ctx=ctx), plain)


def test_init_context_rejects_wrong_length(tiny):
    with pytest.raises(ValueError, match="n_ctx is 2"):
        init_context(tiny.model, tiny.tokenizer, "a photo of a", 2)


# ---------------------------------------------------------------- token dropping


def test_dropping_no_tokens_equals_plain_forward(tiny, images):
    empty = torch.empty(2, 0, dtype=torch.long)
    dropped = encode_image_prompted(tiny.model, images, drop=empty, patches=True)
    plain = encode_image_prompted(tiny.model, images, patches=True)
    torch.testing.assert_close(dropped.pooled, plain.pooled, atol=0, rtol=0)
    torch.testing.assert_close(dropped.patches, plain.patches, atol=0, rtol=0)


def test_dropping_tokens_changes_output_and_shapes(tiny, images):
    drop = torch.tensor([[0, 5, 9], [63, 1, 2]])
    out = encode_image_prompted(tiny.model, images, drop=drop, patches=True, local=True)
    plain = encode_image_prompted(tiny.model, images)
    assert out.patches.shape == (2, 61, 64) and out.local.shape == (2, 61, 64)
    assert (out.pooled - plain.pooled).abs().max() > 1e-3


def test_dropping_equals_running_on_the_kept_tokens(tiny, images):
    """Patch i of the dropped forward is the kept patch keep[i] (positions travel with tokens)."""
    drop = torch.tensor([[3, 7], [0, 63]])
    hidden_dropped, hidden_plain = [], []
    encode_image_prompted(tiny.model, images, drop=drop, hidden=hidden_dropped)
    encode_image_prompted(tiny.model, images, hidden=hidden_plain)
    kept = keep_indices(drop, 64)
    assert kept[0].tolist() == [i for i in range(64) if i not in (3, 7)]
    first_plain = hidden_plain[0][:, 1:]
    expected = torch.stack([first_plain[b, kept[b]] for b in range(2)])
    assert_equivalent(hidden_dropped[0][:, 1:], expected)


def test_keep_indices_rejects_repeated_drops():
    with pytest.raises(ValueError, match="distinct"):
        keep_indices(torch.tensor([[1, 1]]), 8)


# ---------------------------------------------------------------- deep prompts


@pytest.mark.parametrize("j", [1, 2])
def test_text_deep_prompt_at_layer_j_leaves_earlier_layers_untouched(tiny, j):
    ids = prompt_token_ids(tiny.tokenizer, CLASSES, n_ctx=2)
    ctx = _random_prompts(1, 2, 64)[0]
    deep = _random_prompts(2, 2, 64, seed=2)
    changed = deep.clone()
    changed[j - 1] += 1.0
    h_a, h_b = [], []
    encode_text_prompted(tiny.model, ids, ctx=ctx, deep_ctx=deep, hidden=h_a)
    encode_text_prompted(tiny.model, ids, ctx=ctx, deep_ctx=changed, hidden=h_b)
    for layer in range(j):
        torch.testing.assert_close(h_a[layer], h_b[layer], atol=0, rtol=0)
    assert (h_a[j] - h_b[j]).abs().max() > 0.5
    # the replaced span is exactly the prompt, the sequence length never changes
    torch.testing.assert_close(h_b[j][:, 1:3], changed[j - 1].expand(3, -1, -1), atol=0, rtol=0)
    assert all(h.shape == h_a[0].shape for h in h_a)


@pytest.mark.parametrize("j", [1, 2])
def test_vision_deep_prompt_at_layer_j_leaves_earlier_layers_untouched(tiny, images, j):
    ctx = _random_prompts(1, 4, 64)[0]
    deep = _random_prompts(2, 4, 64, seed=3)
    changed = deep.clone()
    changed[j - 1] -= 1.0
    h_a, h_b = [], []
    encode_image_prompted(tiny.model, images, ctx=ctx, deep_ctx=deep, hidden=h_a)
    encode_image_prompted(tiny.model, images, ctx=ctx, deep_ctx=changed, hidden=h_b)
    for layer in range(j):
        torch.testing.assert_close(h_a[layer], h_b[layer], atol=0, rtol=0)
    assert (h_a[j] - h_b[j]).abs().max() > 0.5
    torch.testing.assert_close(h_b[j][:, -4:], changed[j - 1].expand(2, -1, -1), atol=0, rtol=0)
    assert all(h.shape == (2, 1 + 64 + 4, 64) for h in h_a)


def _vision_reference(model, images, ctx, deep, drop):
    """open_clip's own blocks, whole, on [CLS, kept patches, prompts], the last n tokens replaced by
    deep[j - 1] at the input of block j -> (pooled (B, D), patch embeddings (B, P', D))."""
    visual = model.visual
    x = prompted.patch_tokens(visual, images)
    kept = keep_indices(drop, x.shape[1] - 1)
    patches = torch.stack([x[b, 1:][kept[b]] for b in range(len(x))])
    x = torch.cat([x[:, :1], patches, ctx.expand(len(x), -1, -1)], dim=1)
    x = visual.ln_pre(x)
    for j, block in enumerate(visual.transformer.resblocks):
        if 1 <= j <= len(deep):
            x = torch.cat([x[:, : -ctx.shape[0]], deep[j - 1].expand(len(x), -1, -1)], dim=1)
        x = block(x)
    x = visual.ln_post(x) @ visual.proj
    return x[:, 0], x[:, 1 : 1 + kept.shape[1]]


@pytest.mark.parametrize("dtype, tolerance", [(torch.float32, FLOAT32), (torch.float64, 1e-10)])
@pytest.mark.parametrize("depth", [1, 2, 3])
def test_deep_vision_prompts_equal_open_clip_blocks_run_whole(tiny, images, dtype, tolerance, depth):
    """The prompted forward skips the prompt tokens' outputs that the next block's deep prompts
    replace; features and gradients equal open_clip's blocks run on the whole sequence."""
    model = copy.deepcopy(tiny.model).to(dtype)
    images = images.to(dtype)
    drop = torch.tensor([[3, 7, 40], [0, 63, 12]])
    results = []
    for forward in ("ours", "reference"):
        ctx = _random_prompts(1, 4, 64)[0].to(dtype).requires_grad_()
        deep = _random_prompts(depth - 1, 4, 64, seed=2).to(dtype).requires_grad_()
        if forward == "ours":
            out = encode_image_prompted(model, images, ctx, deep, drop, patches=True)
            pooled, patches = out.pooled, out.patches
        else:
            pooled, patches = _vision_reference(model, images, ctx, deep, drop)
        (pooled.sin().sum() + patches.cos().sum()).backward()
        results.append((pooled, patches, ctx.grad, deep.grad if depth > 1 else torch.zeros(())))
    for ours, reference in zip(*results):
        assert_equivalent(ours, reference, rel=tolerance)


def test_vision_prompts_sit_after_the_patches_and_are_not_patch_outputs(tiny, images):
    ctx = _random_prompts(1, 4, 64)[0]
    out = encode_image_prompted(tiny.model, images, ctx=ctx, patches=True, local=True)
    assert out.patches.shape == (2, 64, 64) and out.local.shape == (2, 64, 64)
    plain = encode_image_prompted(tiny.model, images)
    assert (out.pooled - plain.pooled).abs().max() > 1e-4


def test_deep_vision_prompts_need_input_prompts(tiny, images):
    with pytest.raises(ValueError, match="pass `ctx`"):
        encode_image_prompted(tiny.model, images, deep_ctx=_random_prompts(2, 4, 64))


# ---------------------------------------------------------------- outputs


def test_patch_embeddings_and_attention_maps(tiny, images):
    out = encode_image_prompted(tiny.model, images, patches=True, attentions=True)
    visual = tiny.model.visual
    hidden = []
    encode_image_prompted(tiny.model, images, hidden=hidden)
    final = visual.transformer.resblocks[-1](hidden[-1])
    assert_equivalent(out.patches, visual.ln_post(final)[:, 1:] @ visual.proj)
    assert len(out.attentions) == 3 and out.attentions[0].shape == (2, 1, 65, 65)
    assert_equivalent(out.attentions[0].sum(-1), torch.ones(2, 1, 65))


# ---------------------------------------------------------------- gradients


def test_gradients_reach_only_prompts_and_local_map(tiny, images):
    model = tiny.model
    assert not any(p.requires_grad for p in model.parameters())
    text_ctx = _random_prompts(1, 2, 64)[0].requires_grad_()
    text_deep = _random_prompts(2, 2, 64).requires_grad_()
    vis_ctx = _random_prompts(1, 2, 64)[0].requires_grad_()
    vis_deep = _random_prompts(2, 2, 64).requires_grad_()
    local_proj = torch.nn.Linear(64, 64, bias=False)
    ids = prompt_token_ids(tiny.tokenizer, CLASSES, n_ctx=2)
    text = encode_text_prompted(model, ids, ctx=text_ctx, deep_ctx=text_deep)
    out = encode_image_prompted(model, images, ctx=vis_ctx, deep_ctx=vis_deep, local=True, local_proj=local_proj)
    loss = (out.pooled @ text.T).sum() + (out.local @ text.T).sum()
    loss.backward()
    for tensor in (text_ctx, text_deep, vis_ctx, vis_deep, local_proj.weight):
        assert tensor.grad is not None and tensor.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.parameters())


# ---------------------------------------------------------------- frozen text cache


def test_frozen_text_features_are_computed_once(tiny):
    frozen = FrozenTextFeatures(tiny.model, tiny.tokenizer)
    templates = ("a photo of a {}.", "a drawing of a {}.")
    first = frozen(CLASSES, templates)
    calls = frozen.encoder_calls
    second = frozen(list(CLASSES), templates)
    assert frozen.encoder_calls == calls == 1 and second is first  # 5 tokens before the name in both: one pass
    per_template = [torch.nn.functional.normalize(
        tiny.model.encode_text(tiny.tokenizer([t.format(c) for c in CLASSES])), dim=-1) for t in templates]
    expected = torch.nn.functional.normalize((per_template[0] + per_template[1]) / 2, dim=-1)
    assert_equivalent(first, expected)


# ---------------------------------------------------------------- loading


def test_safetensors_round_trip(tiny, images, tmp_path):
    source = load_clip("vlp-tiny", seed=7).model  # weights unlike the seed-0 default
    path = tmp_path / "tiny.safetensors"
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(path))
    loaded = load_clip("vlp-tiny", pretrained=str(path)).model
    assert (source.encode_image(images) - tiny.model.encode_image(images)).abs().max() > 1e-3
    torch.testing.assert_close(loaded.encode_image(images), source.encode_image(images), atol=0, rtol=0)
    ids = tiny.tokenizer(CLASSES)
    torch.testing.assert_close(loaded.encode_text(ids), source.encode_text(ids), atol=0, rtol=0)


def test_openai_torchscript_file_loads_with_quick_gelu(tiny, images, tmp_path):
    """vlp-tiny's config uses plain GELU; an OpenAI TorchScript archive must come back with QuickGELU."""
    assert not isinstance(tiny.model.visual.transformer.resblocks[0].mlp.gelu, QuickGELU)
    reference = open_clip.create_model("vlp-tiny", force_quick_gelu=True)
    reference.load_state_dict(tiny.model.state_dict())
    path = tmp_path / "ViT-tiny.pt"
    torch.jit.save(torch.jit.script(reference), str(path))
    loaded = load_clip("vlp-tiny", pretrained=str(path)).model
    for block in loaded.visual.transformer.resblocks:
        assert isinstance(block.mlp.gelu, QuickGELU)
    assert_equivalent(loaded.encode_image(images), reference.encode_image(images))


def test_openai_tag_forces_quick_gelu(tmp_path, monkeypatch, tiny):
    """open_clip builds plain GELU for ViT-B-16 + openai; the tag's cached weights get QuickGELU here."""
    assert open_clip.get_pretrained_cfg("ViT-B-16", "openai")["quick_gelu"] is True
    snapshot = tmp_path / "models--org--tiny" / "snapshots" / "abc"
    snapshot.mkdir(parents=True)
    (tmp_path / "models--org--tiny" / "refs").mkdir()
    (tmp_path / "models--org--tiny" / "refs" / "main").write_text("abc")
    save_file({k: v.contiguous() for k, v in tiny.model.state_dict().items()},
              str(snapshot / "open_clip_model.safetensors"))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path))
    model = loading._load_tag("vlp-tiny", "openai", {"hf_hub": "org/tiny/", "quick_gelu": True})
    assert isinstance(model.visual.transformer.resblocks[-1].mlp.gelu, QuickGELU)


def test_missing_local_file_names_the_path(tmp_path):
    missing = tmp_path / "nowhere" / "ViT-B-16.pt"
    with pytest.raises(WeightsNotFoundError) as info:
        load_clip("ViT-B-16-quickgelu", pretrained=str(missing))
    message = str(info.value)
    assert str(missing) in message and "--pretrained" in message and "openai" in message


def test_uncached_tag_without_network_fails_fast(tmp_path, monkeypatch):
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setattr(loading, "_reachable", lambda host, timeout=3.0: False)
    with pytest.raises(WeightsNotFoundError) as info:
        load_clip("ViT-B-16", pretrained="openai")
    message = str(info.value)
    assert "timm/vit_base_patch16_clip_224.openai" in message
    assert str(tmp_path / ".cache" / "clip" / "ViT-B-16.pt") in message
    assert "--pretrained /path/to/weights" in message


def test_unknown_model_lists_the_choices():
    with pytest.raises(ValueError, match="vlp-tiny"):
        load_clip("no-such-model")


def test_frozen_text_kept_per_name_encodes_only_new_pairs(tiny):
    """With keep_per_name, a request encodes only the (template, name) pairs no earlier request
    encoded, whatever their normalisation, and gives the features of a fresh cache."""
    kept = FrozenTextFeatures(tiny.model, tiny.tokenizer, keep_per_name=True)
    templates = ("a photo of a {}.", "a drawing of a {}.")
    done = []
    kept.warm(CLASSES[:2], templates, progress=lambda i, n: done.append((i, n)))
    assert done == [(2, 2)] and kept.encoder_calls == 1  # both templates in one pass
    teacher = kept(CLASSES, templates, normalize_each=False)  # one new name: one more pass
    single = kept(CLASSES, templates[:1])  # inside the ensemble: no pass
    assert kept.encoder_calls == 2
    fresh = FrozenTextFeatures(tiny.model, tiny.tokenizer)
    assert_equivalent(teacher, fresh(CLASSES, templates, normalize_each=False))
    assert_equivalent(single, fresh(CLASSES, templates[:1]))
    with pytest.raises(ValueError, match="keep_per_name"):
        fresh.warm(CLASSES, templates)
    encoded = []
    counting = copy.copy(tiny.tokenizer)
    counting.encode = lambda text: encoded.append(text) or tiny.tokenizer.encode(text)
    mixed = FrozenTextFeatures(tiny.model, counting, keep_per_name=True)
    mixed.warm(CLASSES, templates)
    assert mixed.encoder_calls == 1  # names of 2 and of 8 tokens, both templates, in one pass
    assert sorted(encoded) == sorted([*CLASSES, "a photo of a ", ".", "a drawing of a "])  # each part once
    assert_equivalent(mixed(CLASSES, templates, normalize_each=False), teacher)


NAMES_AT_SEAMS = ["st. bernard's", "o'neill", "it's", "mr. x.", "3d printer", "a&w root beer", "café",
                  "<end_of_text>", "  spaced   name ", "x" * 90, "don't", "'s", "''", "...", "Great White Shark",
                  "t-shirt", "(parenthesis)", "name{}", "500", "a.b", "tab\tname", "'quoted'", "", " "]
TEMPLATES_AT_SEAMS = ["{}", "{}'s photo", "a photo of a {}, a type of pet.", "x{}y", "'{}'", "a {{}} {}",
                      "it's a {}", "a photo of a {}s.", "a {}.!"]


@pytest.mark.parametrize("context_length", [77, 32])
def test_template_filler_equals_the_tokenizer(context_length):
    """Composed ids equal the tokenizer's on every template of the ensembles and CoOp, on names
    that meet the templates at letters, digits, apostrophes, punctuation, markup and spaces, and
    where the tokenizer cuts at the context length."""
    tokenizer = open_clip.tokenizer.SimpleTokenizer(context_length=context_length)
    filler = TemplateFiller(tokenizer)
    for template in (*IMAGENET_80_TEMPLATES, *COOP_TEMPLATES.values(), *TEMPLATES_AT_SEAMS):
        expected = tokenizer([template.format(name) for name in NAMES_AT_SEAMS])
        assert torch.equal(filler.fill(template, NAMES_AT_SEAMS), expected), template
    assert filler.fill("a photo of a {}.", []).shape == (0, context_length)


def test_template_filler_seams_and_fallback():
    assert seam_is_safe("a photo of a ", "cat") and seam_is_safe("cat", ".") and seam_is_safe("a ", "3d")
    assert not seam_is_safe("x", "y") and not seam_is_safe("st.", ".") and not seam_is_safe("'", "s")
    assert seam_is_safe("dog", "'s")  # a contraction starts at the apostrophe either way
    plain = lambda texts: torch.tensor([[len(t)] for t in texts])  # not CLIP's tokenizer: texts filled whole
    torch.testing.assert_close(TemplateFiller(plain).fill("a {}.", ["cat", "horse"]), torch.tensor([[6], [8]]))


def test_logit_scale_is_frozen_and_finite(tiny):
    assert not tiny.model.logit_scale.requires_grad
    assert math.isfinite(tiny.model.logit_scale.exp().item())


def test_frozen_text_raw_feature_average_for_promptsrc(tiny):
    frozen = FrozenTextFeatures(tiny.model, tiny.tokenizer)
    templates = ("a photo of a {}.", "art of the {}.")
    raw = [tiny.model.encode_text(tiny.tokenizer([t.format(c) for c in CLASSES])) for t in templates]
    expected = torch.nn.functional.normalize((raw[0] + raw[1]) / 2, dim=-1)
    assert_equivalent(frozen(CLASSES, templates, normalize_each=False), expected)
    assert (frozen(CLASSES, templates) - expected).abs().max() > 1e-6  # the unit-vector mean differs


def test_unsupported_image_towers_are_refused_at_load():
    with pytest.raises(ValueError, match="ModifiedResNet image tower"):
        load_clip("RN50")
    config = open_clip.get_model_config("vlp-tiny")
    config["vision_cfg"]["pool_type"] = "avg"
    with pytest.raises(ValueError, match="'avg' pooling.*class token"):
        loading._check_supported(config, "vlp-tiny-avg")
    config["vision_cfg"].update(pool_type="tok", attentional_pool=True)
    with pytest.raises(ValueError, match="attentional pooling"):
        loading._check_supported(config, "vlp-tiny-attn")


def test_the_bundled_model_missing_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setattr(loading, "ASSETS_DIR", tmp_path / "site-packages" / "assets")
    with pytest.raises(WeightsNotFoundError, match="pip install -e .*VLP_ASSETS"):
        load_clip("synth-clip")


# ---------------------------------------------------------------- shared prompt prefix


def _double(bundle):
    """The bundle with a float64 copy of its model (the shared `tiny` fixture stays float32)."""
    return dataclasses.replace(bundle, model=copy.deepcopy(bundle.model).double())


def _both_paths(model, ids, tensors, **kwargs):
    """Features and gradients (of a fixed cubic function) with the prefix shared and unshared."""
    results = []
    for share in (True, False):
        features = encode_text_prompted(model, ids, *tensors, share_prefix=share, **kwargs)
        grads = torch.autograd.grad(features.pow(3).sum(), [t for t in tensors if t is not None]) if any(
            t is not None for t in tensors) else ()
        results.append((features, grads))
    return results


@pytest.mark.parametrize("dtype,tol", [(torch.float32, FLOAT32), (torch.float64, 1e-10)])
@pytest.mark.parametrize("prompts", ["none", "shallow", "deep", "deep_only"])
def test_shared_prefix_equals_whole_sequences(tiny, dtype, tol, prompts):
    model = tiny.model if dtype == torch.float32 else _double(tiny).model
    ids = prompt_token_ids(tiny.tokenizer, CLASSES, n_ctx=2)
    ctx = (_random_prompts(1, 2, 64)[0] * 20).to(dtype).requires_grad_()
    deep = (_random_prompts(2, 2, 64, seed=2) * 20).to(dtype).requires_grad_()
    tensors = {"none": (None, None), "shallow": (ctx, None), "deep": (ctx, deep), "deep_only": (None, deep)}[prompts]
    (shared, shared_grads), (whole, whole_grads) = _both_paths(model, ids, tensors)
    assert shared.dtype == dtype and shared.shape == (3, 64)
    assert_equivalent(shared, whole, rel=tol)
    for a, b in zip(shared_grads, whole_grads):
        assert a.abs().max() > 1e-3
        assert_equivalent(a, b, rel=tol)


@pytest.mark.parametrize("dtype,tol", [(torch.float32, FLOAT32), (torch.float64, 1e-10)])
def test_every_prompt_with_every_class_equals_each_prompt_alone(tiny, dtype, tol):
    """all_pairs: M prompts x C classes, row c * M + m, the prefix run once per prompt."""
    model = tiny.model if dtype == torch.float32 else _double(tiny).model
    ids = prompt_token_ids(tiny.tokenizer, CLASSES, n_ctx=2, template="{}")
    prompts = (_random_prompts(3, 2, 64) * 20).to(dtype).requires_grad_()
    deep = (_random_prompts(2, 3 * 2, 64, seed=4).view(2, 3, 2, 64) * 20).to(dtype).requires_grad_()
    (shared, shared_grads), (whole, whole_grads) = _both_paths(model, ids, (prompts, deep), all_pairs=True)
    alone = torch.stack([encode_text_prompted(model, ids[[c]], prompts[m], deep[:, m])[0]
                         for c in range(3) for m in range(3)])
    assert_equivalent(shared, alone, rel=tol)
    assert_equivalent(whole, alone, rel=tol)
    for a, b in zip(shared_grads, whole_grads):
        assert_equivalent(a, b, rel=tol)


def test_per_sequence_context_runs_whole_sequences(tiny, monkeypatch):
    """A context per sequence (e.g. class-specific) has no common prefix: the plain path runs."""
    ids = prompt_token_ids(tiny.tokenizer, CLASSES, n_ctx=2)
    per_class = _random_prompts(3, 2, 64) * 20
    expected = torch.cat([encode_text_prompted(tiny.model, ids[[c]], per_class[c]) for c in range(3)])

    def no_sharing(*args, **kwargs):
        raise AssertionError("a per-sequence context was shared")

    monkeypatch.setattr(prompted, "_encode_shared", no_sharing)
    assert_equivalent(encode_text_prompted(tiny.model, ids, per_class), expected)
    deep = _random_prompts(2, 3 * 2, 64).view(2, 3, 2, 64)
    encode_text_prompted(tiny.model, ids, per_class[0], deep)  # per-sequence deep prompts: whole too


def test_shared_prefix_covers_the_common_template_words(tiny):
    """Zero-shot templates share their words before the class name ([SOT] a photo of a), and class
    names that start alike share those words too; the prefix never reaches an EOT."""
    template = tiny.tokenizer([f"a photo of a {c}." for c in CLASSES])
    assert prompted._shared_prefix_length(tiny.model, template) == 5
    alike = tiny.tokenizer(["red circle", "red star", "red"])
    assert prompted._shared_prefix_length(tiny.model, alike) == 2  # [SOT] red; "red" alone ends at 2
    assert_equivalent(encode_text_prompted(tiny.model, template), tiny.model.encode_text(template))
    assert_equivalent(encode_text_prompted(tiny.model, alike), tiny.model.encode_text(alike))


def test_residual_block_equals_open_clip_block(tiny):
    """The written-out block equals open_clip's, and its `rows` / `prefix` forms read the same values."""
    block = tiny.model.transformer.resblocks[1]
    x = torch.randn(3, 7, 64, generator=torch.Generator().manual_seed(0))
    mask = tiny.model.attn_mask[:7, :7]
    full = block(x, attn_mask=mask)
    assert_equivalent(prompted.residual_block(block, x, mask), full)
    rows = torch.tensor([6, 2, 4])
    picked = prompted.residual_block(block, x, mask, rows=rows)
    assert_equivalent(picked[:, 0], full[torch.arange(3), rows])
    shared = x[:1, :3].expand(3, -1, -1)  # three sequences that begin with the same three tokens
    x = torch.cat([shared, x[:, 3:]], dim=1)
    tail = prompted.residual_block(block, x[:, 3:], mask[3:], prefix=x[:1, :3])
    assert_equivalent(tail, block(x, attn_mask=mask)[:, 3:])


METHOD_CASES = {  # every learned-prompt method, with and without deep text prompts
    "coop": lambda bundle: CoOp(bundle, CoOpConfig()),
    "ivlp_shallow": lambda bundle: IVLP(bundle, IVLPConfig(text_depth=1)),
    "ivlp": lambda bundle: IVLP(bundle, IVLPConfig()),
    "promptsrc": lambda bundle: PromptSRC(bundle, PromptSRCConfig()),
    "disa": lambda bundle: DiSa(bundle, DiSaConfig()),
    "gallop": lambda bundle: GalLoP(bundle, GalLoPConfig()),
}


@pytest.mark.parametrize("dtype,tol", [(torch.float32, FLOAT32), (torch.float64, 1e-10)])
@pytest.mark.parametrize("case", list(METHOD_CASES))
def test_every_method_text_features_equal_unshared(tiny, monkeypatch, dtype, tol, case):
    """Each method's text features and their gradients, prefix shared (default) and unshared."""
    method = METHOD_CASES[case](tiny if dtype == torch.float32 else _double(tiny)).to(dtype)
    method.set_classes(CLASSES)
    with torch.no_grad():  # move the prompts away from their initial values
        for parameter in method.parameters():
            parameter.add_(0.5 * torch.randn(parameter.shape, generator=torch.Generator().manual_seed(1)))
    text_prompts = [p for name, p in method.named_parameters() if ("text" in name or "prompts" in name) and p.numel()]

    def features_and_grads():
        features = method.text_features()
        features = torch.cat([f.flatten(0, -2) for f in features]) if isinstance(features, tuple) else features
        return features, torch.autograd.grad(features.pow(3).sum(), text_prompts)

    shared, shared_grads = features_and_grads()
    unshared = functools.partial(encode_text_prompted, share_prefix=False)
    for module in ("coop", "ivlp", "gallop"):
        monkeypatch.setattr(f"vlp_core.methods.{module}.encode_text_prompted", unshared)
    whole, whole_grads = features_and_grads()
    assert_equivalent(shared, whole, rel=tol)
    for a, b in zip(shared_grads, whole_grads):
        assert b.abs().max() > 1e-3
        assert_equivalent(a, b, rel=tol)


@pytest.mark.parametrize("dtype,tol", [(torch.float32, FLOAT32), (torch.float64, 1e-10)])
def test_zero_shot_template_ensemble_equals_unshared(tiny, monkeypatch, dtype, tol):
    model = tiny.model if dtype == torch.float32 else _double(tiny).model
    shared = FrozenTextFeatures(model, tiny.tokenizer)(CLASSES, IMAGENET_TEMPLATES)
    monkeypatch.setattr(text_cache, "encode_text_prompted", functools.partial(encode_text_prompted, share_prefix=False))
    whole = FrozenTextFeatures(model, tiny.tokenizer)(CLASSES, IMAGENET_TEMPLATES)
    assert_equivalent(shared, whole, rel=tol)


@pytest.mark.parametrize("dtype,tol", [(torch.float32, FLOAT32), (torch.float64, 1e-10)])
def test_template_columns_equal_each_sequence_alone(tiny, dtype, tol):
    """token_ids (C, M, L), one template per column: each column's words before the name are its
    own prefix; row c * M + m equals template m filled with name c encoded alone."""
    model = tiny.model if dtype == torch.float32 else _double(tiny).model
    templates = ["a photo of a {}.", "a drawing of the {}.", "itap of my {} in a video game."]  # 5 tokens before
    names = ["circle", "red star", "big blue wavy square"]
    ids = torch.stack([tiny.tokenizer([t.format(n) for n in names]) for t in templates], dim=1)  # (3, 3, 77)
    assert prompted._shared_prefix_length(model, ids) == 5
    hidden = []
    columns = encode_text_prompted(model, ids, all_pairs=True, hidden=hidden)
    alone = torch.cat([model.encode_text(tiny.tokenizer([t.format(n)])) for n in names for t in templates])
    assert_equivalent(columns, alone, rel=tol)
    whole_hidden = []
    encode_text_prompted(model, ids.flatten(0, 1), hidden=whole_hidden, share_prefix=False)
    for shared_input, whole_input in zip(hidden, whole_hidden):
        assert_equivalent(shared_input, whole_input, rel=tol)
    with pytest.raises(ValueError, match="all_pairs=True"):
        encode_text_prompted(model, ids)


def test_frozen_text_runs_templates_with_equal_head_lengths_together(tiny):
    """One pass per group of templates with as many tokens before the name, and per `batch_size`
    sequences; features as each template's own pass gives them."""
    templates = ("a photo of a {}.", "a {} in a video game.", "a drawing of a {}.", "art of the {}.")
    grouped = FrozenTextFeatures(tiny.model, tiny.tokenizer)
    features = grouped(CLASSES, templates, normalize_each=False)
    assert grouped.encoder_calls == 3  # 5, 2 and 4 tokens before the name
    small = FrozenTextFeatures(tiny.model, tiny.tokenizer, batch_size=2)  # one name per pass in a pair
    assert_equivalent(small(CLASSES, templates, normalize_each=False), features)
    assert small.encoder_calls == 3 + 2 + 2  # the pair: 1 name per pass; the others: 2 names per pass
    raw = torch.stack([tiny.model.encode_text(tiny.tokenizer([t.format(c) for c in CLASSES])) for t in templates])
    assert_equivalent(features, torch.nn.functional.normalize(raw.mean(0), dim=-1))
    other = FrozenTextFeatures(tiny.model, lambda texts: tiny.tokenizer(texts))  # a tokenizer of no known kind
    assert_equivalent(other(CLASSES, templates, normalize_each=False), features)
    assert other.encoder_calls == 1  # its templates are not told apart: one group


def test_forward_hooks_see_whole_blocks(tiny, images):
    """A hooked block (e.g. captum's layer attributions) runs as the module on whole sequences."""
    seen = []
    ids = prompt_token_ids(tiny.tokenizer, CLASSES, n_ctx=2)
    ctx = _random_prompts(1, 2, 64)[0]
    expected_text = encode_text_prompted(tiny.model, ids, ctx)
    expected_image = encode_image_prompted(tiny.model, images).pooled
    for block in (tiny.model.transformer.resblocks[-1], tiny.model.visual.transformer.resblocks[-2]):
        handle = block.register_forward_hook(lambda module, inputs, output: seen.append(output.shape))
        try:
            text = encode_text_prompted(tiny.model, ids, ctx)
            image = encode_image_prompted(tiny.model, images).pooled
        finally:
            handle.remove()
        assert_equivalent(text, expected_text)
        assert_equivalent(image, expected_image)
    length = int(ids.argmax(-1).max()) + 1
    assert seen == [(3, length, 64), (2, 65, 64)]
