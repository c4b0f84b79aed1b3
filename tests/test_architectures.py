"""Every open_clip ViT the loader serves (`SUPPORTED_VITS`) runs every method, and every other
architecture is refused before it is built.

Each architecture runs with random weights at reduced widths and depths and its own structure:
patch and image size, heads per tower (every width and head width divided by one factor), context
length, vocabulary, activation, MLP ratio, layer scale, pooling in both towers and projections.
"""

import copy
import functools
import json
import re
from pathlib import Path
from typing import NamedTuple

import open_clip
import pytest
import torch
import torch.nn.functional as F
from open_clip.transform import PreprocessCfg, image_transform_v2
from safetensors.torch import save_file

from vlp_core.backbone import (
    SUPPORTED_VITS,
    ClipBundle,
    FrozenTextFeatures,
    encode_image_prompted,
    encode_text_prompted,
    load_clip,
    unsupported_reasons,
)
from vlp_core.backbone.loading import _quiet_logging
from vlp_core.methods.registry import build_method, method_names

from tolerances import FLOAT32, assert_equivalent

CLASSES = ["red circle", "blue square", "a very long class name with many words"]
LABELS = torch.tensor([0, 1, 2])
TEXT_VARIANTS = {  # text towers unlike those of open_clip's ViTs (context 77, vocabulary 49408, causal)
    "context 32": {"context_length": 32},  # as the bundled synth-clip
    "vocabulary 50000": {"vocab_size": 50000},
    "bidirectional": {"no_causal_mask": True},
}
VARIANT_BASE = "ViT-B-16"  # the image tower and the rest of the text tower of every variant
CASES = [*SUPPORTED_VITS, *(f"{VARIANT_BASE} text: {variant}" for variant in TEXT_VARIANTS)]


def reduced_config(name: str, vision_layers: int = 2, text_layers: int = 3) -> dict:
    """open_clip's config of `name` with every width and head width divided by the largest f in
    16, 8, 4, 2, 1 that divides them all (so each tower keeps its number of heads, and the widths
    their ratios), and `vision_layers` / `text_layers` blocks; every other entry as it is."""
    config = open_clip.get_model_config(name)
    vision, text = config["vision_cfg"], config["text_cfg"]
    head_width = vision.get("head_width", 64)
    widths = (config["embed_dim"], vision["width"], head_width, text["width"], text["width"] // text["heads"])
    f = next(f for f in (16, 8, 4, 2, 1) if all(width % f == 0 for width in widths))
    vision.update(width=vision["width"] // f, head_width=head_width // f, layers=vision_layers)
    text.update(width=text["width"] // f, layers=text_layers)
    return dict(config, embed_dim=config["embed_dim"] // f)


def _seeded(build, seed: int = 0):
    """build() with open_clip's random initialisation seeded, and its random-weights warning off."""
    with torch.random.fork_rng(devices=[]), _quiet_logging():
        torch.manual_seed(seed)
        return build()


@functools.cache
def _reduced_vit(name: str) -> ClipBundle:
    """The reduced, frozen random-weight CLIP of a supported architecture, with its tokenizer."""
    model = _seeded(lambda: open_clip.create_model(name, **reduced_config(name))).eval().requires_grad_(False)
    preprocess = image_transform_v2(PreprocessCfg(**model.visual.preprocess_cfg), is_train=False)
    return ClipBundle(model, preprocess, open_clip.get_tokenizer(name), name, None)


def _save_model_dir(model: torch.nn.Module, config: dict, folder: Path) -> Path:
    """`model` as an open_clip local-dir folder: open_clip_config.json and safetensors weights."""
    folder.mkdir(parents=True)
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": config}))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "open_clip_model.safetensors"))
    return folder


class Case(NamedTuple):
    """A reduced CLIP and its frozen text-feature cache."""

    bundle: ClipBundle
    frozen_text: FrozenTextFeatures  # shared by the case's methods (the 60-template teacher once)


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """case -> its reduced CLIP, built once per module. A text variant is a reduced ViT-B-16 with
    its text tower changed, saved as a model folder and loaded by `load_clip`, which reads the
    folder's config for the model and its tokenizer (e.g. context 32)."""
    root = tmp_path_factory.mktemp("text-variants")

    @functools.cache
    def clip(case: str) -> Case:
        if case in SUPPORTED_VITS:
            bundle = _reduced_vit(case)
        else:
            variant = case.removeprefix(f"{VARIANT_BASE} text: ")
            config = reduced_config(VARIANT_BASE)
            config["text_cfg"].update(TEXT_VARIANTS[variant])
            model = _seeded(lambda: open_clip.create_model(VARIANT_BASE, **config))
            bundle = load_clip(str(_save_model_dir(model, config, root / variant.replace(" ", "-"))))
        return Case(bundle, FrozenTextFeatures(bundle.model, bundle.tokenizer))

    return clip


def _images(bundle: ClipBundle, count: int = 3) -> torch.Tensor:
    """(count, 3, S, S) random normalised images at the model's resolution."""
    size = bundle.image_size
    return torch.randn(count, 3, size, size, generator=torch.Generator().manual_seed(0))


def structure(model: torch.nn.Module) -> dict:
    """Everything a reduced copy of a CLIP keeps: all but its widths and depths."""
    visual, text_blocks = model.visual, model.transformer.resblocks
    blocks = [*visual.transformer.resblocks, *text_blocks]
    return {
        "model": type(model), "blocks": {type(block) for block in blocks},
        "image size": visual.image_size, "patch size": visual.patch_size,
        "image tokens": visual.positional_embedding.shape[0],
        "heads": (visual.transformer.resblocks[0].attn.num_heads, text_blocks[0].attn.num_heads),
        "context length": model.positional_embedding.shape[0], "vocabulary": model.token_embedding.num_embeddings,
        "activations": {type(block.mlp.gelu) for block in blocks},
        "mlp ratios": tuple(round(tower[0].mlp.c_fc.out_features / tower[0].mlp.c_fc.in_features, 3)
                            for tower in (visual.transformer.resblocks, text_blocks)),
        "layer scale": {(type(block.ls_1), type(block.ls_2)) for block in blocks},
        "image pooling": (visual.pool_type, visual.attn_pool, visual.final_ln_after_pool, type(visual.ln_pre)),
        "text pooling": (model.text_pool_type, model.attn_mask is None),
        "projections": (type(visual.proj), type(model.text_projection)),
        "width ratios": (visual.proj.shape[0] / model.text_projection.shape[1],
                         model.text_projection.shape[0] / model.text_projection.shape[1]),
    }


def test_supported_vits_are_the_class_token_vits_with_clip_text():
    for name in ("ViT-B-32", "ViT-B-16", "ViT-L-14", "ViT-L-14-336", "ViT-H-14"):
        assert name in SUPPORTED_VITS and f"{name}-quickgelu" in SUPPORTED_VITS
    for name in ("RN50", "ViT-B-16-SigLIP", "ViT-L-14-CLIPA", "ViT-L-14-worldwide", "coca_ViT-B-32", "EVA02-B-16"):
        assert name in open_clip.list_models() and name not in SUPPORTED_VITS
    assert "vlp-tiny" not in SUPPORTED_VITS  # the project's own configs are not open_clip's


@pytest.mark.parametrize("name", SUPPORTED_VITS)
def test_reduced_model_keeps_the_architecture(name):
    with torch.device("meta"):  # the full-size model, without its memory
        full = open_clip.create_model(name, device="meta")
    reduced = _reduced_vit(name).model
    assert structure(reduced) == structure(full)
    assert full.visual.transformer.width >= 8 * reduced.visual.transformer.width  # its ratios: `structure`
    assert (len(reduced.visual.transformer.resblocks), len(reduced.transformer.resblocks)) == (2, 3)
    assert unsupported_reasons(reduced_config(name)) == []


@pytest.mark.parametrize("variant", TEXT_VARIANTS)
def test_text_variants_load_with_their_text_tower(clips, variant):
    bundle = clips(f"{VARIANT_BASE} text: {variant}").bundle
    model, change = bundle.model, TEXT_VARIANTS[variant]
    assert model.context_length == change.get("context_length", 77) == bundle.tokenizer.context_length
    assert model.positional_embedding.shape[0] == model.context_length
    assert model.token_embedding.num_embeddings == change.get("vocab_size", 49408)
    assert (model.attn_mask is None) == change.get("no_causal_mask", False)


@pytest.mark.parametrize("dtype, tolerance", [(torch.float32, FLOAT32), (torch.float64, 1e-10)])
@pytest.mark.parametrize("case", CASES)
def test_without_prompts_equals_open_clip(clips, case, dtype, tolerance):
    bundle = clips(case).bundle
    model = copy.deepcopy(bundle.model).to(dtype)
    images = _images(bundle).to(dtype)
    ids = bundle.tokenizer([f"a photo of a {name}." for name in CLASSES] + CLASSES)
    assert_equivalent(encode_image_prompted(model, images).pooled, model.encode_image(images), rel=tolerance)
    assert_equivalent(encode_text_prompted(model, ids), model.encode_text(ids), rel=tolerance)


@pytest.mark.parametrize("case", CASES)
def test_zero_shot_logits_equal_open_clip(clips, case):
    """Zero-shot CLIP through the frozen text cache (composed token ids, shared prefixes) scores
    as open_clip's encoders do."""
    bundle, frozen_text = clips(case)
    method = build_method("zeroshot", bundle, frozen_text=frozen_text)
    method.set_classes(CLASSES)
    images, model = _images(bundle), bundle.model
    text = model.encode_text(bundle.tokenizer([f"a photo of a {name}." for name in CLASSES]))
    expected = model.logit_scale.exp() * F.normalize(model.encode_image(images), dim=-1) @ F.normalize(text, dim=-1).T
    assert_equivalent(method.logits(images), expected)


@pytest.mark.parametrize("method_name", method_names())
@pytest.mark.parametrize("case", CASES)
def test_every_method_scores_every_class(clips, case, method_name):
    bundle, frozen_text = clips(case)
    method = build_method(method_name, bundle, frozen_text=frozen_text)
    method.set_classes(CLASSES)
    with torch.no_grad():
        heads = method.head_logits(_images(bundle, count=2))
    for logits in heads.values():
        assert logits.shape == (2, len(CLASSES)) and torch.isfinite(logits).all()


@pytest.mark.parametrize("method_name", method_names(trainable=True))
@pytest.mark.parametrize("case", CASES)
def test_one_training_step_moves_only_the_learned_tensors(clips, case, method_name):
    bundle, frozen_text = clips(case)
    method = build_method(method_name, bundle, frozen_text=frozen_text)
    method.set_classes(CLASSES)
    images = _images(bundle)
    method.prepare_training([(images, LABELS)])
    terms = method.loss(images, LABELS)
    assert all(torch.isfinite(value) for value in terms.values())
    terms["total"].backward()
    learned = dict(method.named_parameters())
    assert learned and all(p.grad is not None and p.grad.abs().max() > 0 for p in learned.values())
    assert all(p.grad is None for p in bundle.model.parameters())
    before = {name: p.detach().clone() for name, p in learned.items()}
    torch.optim.SGD(method.parameters(), lr=1.0).step()
    assert [name for name, p in learned.items() if torch.equal(p, before[name])] == []


def test_a_context_too_short_for_the_learned_tokens_is_refused():
    """A text context of 18 tokens holds [SOT], 4 learned tokens, a name and [EOT], not CoOp's 16."""
    config = open_clip.get_model_config("vlp-tiny")
    config["text_cfg"]["context_length"] = 18
    model = _seeded(lambda: open_clip.create_model("vlp-tiny", **config)).requires_grad_(False)
    short = ClipBundle(model, None, open_clip.tokenizer.SimpleTokenizer(context_length=18), "vlp-tiny", None)
    with pytest.raises(ValueError, match=r"coop.n_ctx=16 .* context of 18 tokens .*at most 15$"):
        build_method("coop", short)
    with pytest.raises(ValueError, match=r"gallop.n_ctx=16 .*at most 15$"):
        build_method("gallop", short, {"n_ctx": 16})
    ivlp = build_method("ivlp", short)  # 4 tokens fit
    ivlp.set_classes(CLASSES)
    assert ivlp.text_features().shape == (3, 64)


REFUSED = {  # an open_clip architecture for each reason, and what its refusal says
    "RN50": "it has a ModifiedResNet image tower (a ResNet), not a ViT",
    "ViT-B-16-SigLIP": "its image tower is timm's vit_base_patch16_siglip_224, not open_clip's VisionTransformer",
    "EVA02-L-14": "its image tower is timm's eva02_large_patch14_clip_224",
    "ViT-L-14-CLIPA": "its image tower uses 'avg' pooling, not the class token",
    "coca_ViT-B-32": "its image tower uses attentional pooling, not the class token",
    "coca_base": "it is a CoCa model",
    "ViT-L-14-worldwide": "its tokenizer is Hugging Face's google/mt5-base, not CLIP's",
    "ViT-H-14-worldwide": "its text tower pools 'eos', not 'argmax'",
    "roberta-ViT-B-32": "its text tower is the Hugging Face model roberta-base, not CLIP's TextTransformer",
}


@pytest.mark.parametrize("name", REFUSED)
def test_unsupported_architectures_are_refused_before_anything_is_built(monkeypatch, name):
    def build(*args, **kwargs):
        raise AssertionError(f"{name} was built or downloaded before it was refused")

    monkeypatch.setattr(open_clip, "create_model", build)
    tags = open_clip.list_pretrained_tags_by_model(name)
    with pytest.raises(ValueError) as info:
        load_clip(name, pretrained=tags[0] if tags else None)
    message = str(info.value)
    assert message.startswith(f"{name} cannot be prompted: ") and REFUSED[name] in message
    assert f"use one of {', '.join(SUPPORTED_VITS)} (e.g. ViT-B-16-quickgelu" in message


CONFIG_CHANGES = {  # towers no open_clip config has, as a model folder's config may give them
    "image qk_norm": ({"vision_cfg": {"qk_norm": True}},
                      "its image tower uses open_clip's CustomResidualAttentionBlock (qk_norm)"),
    "text blocks": ({"text_cfg": {"block_type": "custom"}},
                    "its text tower uses open_clip's CustomResidualAttentionBlock (block_type 'custom')"),
    "image tokens": ({"vision_cfg": {"output_tokens": True}}, "returns its patch tokens with the pooled feature"),
    "custom text": ({"custom_text": True}, "its text tower is a separate module (custom_text)"),
    "text projection bias": ({"text_cfg": {"proj_bias": True}}, "a linear layer with a bias, not a matrix"),
    "no text projection": ({"text_cfg": {"proj_type": "none"}}, "its text projection is absent"),
}


@pytest.mark.parametrize("change", CONFIG_CHANGES)
def test_unsupported_model_folders_are_refused(tmp_path, change):
    entries, reason = CONFIG_CHANGES[change]
    config = open_clip.get_model_config("vlp-tiny")
    for key, value in entries.items():
        config[key] = {**config[key], **value} if isinstance(value, dict) else value
    reasons = unsupported_reasons(config)
    assert len(reasons) == 1 and reason in reasons[0]
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": config}))
    with pytest.raises(ValueError, match=f"^{re.escape(str(folder))} cannot be prompted: {re.escape(reasons[0])}. "):
        load_clip(str(folder))
