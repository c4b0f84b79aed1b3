"""Prompted forward passes through open_clip's own CLIP modules.

Both towers run block by block so learned tokens can replace (never grow) the token sequence at
any layer. With no prompts and no dropped patches the outputs equal open_clip's `encode_text` /
`encode_image`. Notation: N text sequences of length L, B images with P patch tokens, Dt / Dv the
text / vision widths, D the joint embedding size, n the number of prompt tokens, J the depth.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from open_clip.transformer import text_global_pool
from torch import Tensor, nn

PLACEHOLDER = "X"


def prompt_token_ids(tokenizer, class_names: list[str], n_ctx: int, template: str = "{}.") -> Tensor:
    """Token ids of `[SOT] X*n_ctx <template filled with the class name> [EOT] pad` -> (C, L).

    Positions 1..n_ctx hold placeholders that the prompted text forward replaces.
    """
    prefix = " ".join([PLACEHOLDER] * n_ctx)
    texts = [f"{prefix} {template.format(name)}".strip() for name in class_names]
    return tokenizer(texts)


def init_context(model: nn.Module, tokenizer, text: str, n_ctx: int) -> Tensor:
    """The token embeddings of `text` (e.g. "a photo of a") as initial context -> (n_ctx, Dt).

    `text` must tokenise to exactly n_ctx tokens.
    """
    ids = tokenizer([text])[0]
    n_tokens = int(ids.argmax()) - 1  # tokens between SOT and EOT
    if n_tokens != n_ctx:
        raise ValueError(f"context init {text!r} has {n_tokens} tokens but n_ctx is {n_ctx}")
    with torch.no_grad():
        return model.token_embedding(ids[1 : 1 + n_ctx].to(model.token_embedding.weight.device)).clone()


def _replace_span(x: Tensor, start: int, tokens: Tensor) -> Tensor:
    """Tokens x[:, start:start+n] replaced by `tokens` ((n, W) shared or (N, n, W)) -> (N, T, W)."""
    n = tokens.shape[-2]
    tokens = tokens.to(x.dtype).expand(x.shape[0], n, x.shape[-1])
    return torch.cat([x[:, :start], tokens, x[:, start + n :]], dim=1)


def encode_text_prompted(
    model: nn.Module,
    token_ids: Tensor,
    ctx: Tensor | None = None,
    deep_ctx: Tensor | None = None,
    hidden: list[Tensor] | None = None,
) -> Tensor:
    """Text features of prompted sequences -> (N, D), not normalised.

    token_ids: (N, L) from `prompt_token_ids` (placeholders at 1..n) or plain tokenizer output.
    ctx: (n, Dt) shared or (N, n, Dt) per sequence; replaces the embeddings at positions 1..n
        before the positional embedding is added.
    deep_ctx: (J-1, n, Dt) or (J-1, N, n, Dt); entry j-1 replaces the tokens at 1..n at the input
        of block j, for j = 1..J-1.
    hidden: if a list is given, the input of every block (N, L', Dt) is appended to it, where L'
        ends at the batch's last EOT token (see `_trim_to_eot`).
    """
    token_ids, attn_mask = _trim_to_eot(model, token_ids)
    length = token_ids.shape[1]
    x = model.token_embedding(token_ids)
    if ctx is not None:
        x = _replace_span(x, 1, ctx)
    x = x + model.positional_embedding[:length].to(x.dtype)
    for j, block in enumerate(model.transformer.resblocks):
        if deep_ctx is not None and 1 <= j <= deep_ctx.shape[0]:
            x = _replace_span(x, 1, deep_ctx[j - 1])
        if hidden is not None:
            hidden.append(x)
        x = block(x, attn_mask=attn_mask)
    x = model.ln_final(x)
    pooled = text_global_pool(x, token_ids, model.text_pool_type, getattr(model, "text_eos_id", None))
    return pooled @ model.text_projection


def _trim_to_eot(model: nn.Module, token_ids: Tensor) -> tuple[Tensor, Tensor | None]:
    """Drop the padding after the last EOT of the batch: (N, L) -> (N, L') and the (L', L') mask.

    With a causal mask no token attends to later ones, so the EOT features are unchanged while the
    encoder runs on L' (about 15 for class names) instead of the context length (77).
    """
    mask = model.attn_mask
    if mask is None or model.text_pool_type != "argmax":
        return token_ids, mask
    length = int(token_ids.argmax(dim=-1).max()) + 1
    return token_ids[:, :length], mask[:length, :length]


@dataclass
class VisionOutput:
    """What a prompted image forward returns (P' = patch tokens kept)."""

    pooled: Tensor  # (B, D) projected CLS feature, not normalised
    patches: Tensor | None = None  # (B, P', D) ln_post + proj of the output patch tokens
    local: Tensor | None = None  # (B, P', D) value-only path of the last block (GalLoP local features)
    attentions: list[Tensor] | None = None  # per block (B, H, T, T)


def keep_indices(drop: Tensor, num_patches: int) -> Tensor:
    """Patch indices kept when the (B, M) indices `drop` are removed -> (B, P - M), ascending."""
    keep = torch.ones(drop.shape[0], num_patches, dtype=torch.bool, device=drop.device)
    keep.scatter_(1, drop, False)
    if not (keep.sum(1) == num_patches - drop.shape[1]).all():
        raise ValueError("each row of `drop` must hold distinct patch indices")
    return keep.nonzero()[:, 1].view(drop.shape[0], -1)


def patch_tokens(visual: nn.Module, images: Tensor) -> Tensor:
    """CLS + patch tokens with positional embedding, before ln_pre -> (B, 1 + P, Dv)."""
    x = visual.conv1(images.to(visual.class_embedding.dtype))
    x = x.flatten(2).transpose(1, 2)
    cls = visual.class_embedding.to(x.dtype).view(1, 1, -1).expand(x.shape[0], 1, -1)
    return torch.cat([cls, x], dim=1) + visual.positional_embedding.to(x.dtype)


def value_only_block(block: nn.Module, h: Tensor) -> Tensor:
    """The block with attention replaced by each token's own value (self-attention to itself only).

    z = h + out_proj(v_proj(ln_1(h))); z = z + mlp(ln_2(z)). h: (B, T, Dv) -> (B, T, Dv).
    """
    width = h.shape[-1]
    attn = block.attn
    v = F.linear(block.ln_1(h), attn.in_proj_weight[2 * width :], attn.in_proj_bias[2 * width :])
    z = h + block.ls_1(attn.out_proj(v))
    return z + block.ls_2(block.mlp(block.ln_2(z)))


def _attention_weights(block: nn.Module, x: Tensor) -> Tensor:
    """Per-head attention probabilities of a block for input x (B, T, Dv) -> (B, H, T, T)."""
    y = block.ln_1(x)
    return block.attn(y, y, y, need_weights=True, average_attn_weights=False)[1]


def encode_image_prompted(
    model: nn.Module,
    images: Tensor,
    ctx: Tensor | None = None,
    deep_ctx: Tensor | None = None,
    drop: Tensor | None = None,
    *,
    patches: bool = False,
    local: bool = False,
    local_proj: nn.Module | None = None,
    attentions: bool = False,
    hidden: list[Tensor] | None = None,
) -> VisionOutput:
    """Prompted image forward; tokens are `[CLS, kept patches, prompts]`.

    images: (B, 3, S, S) normalised pixels.
    ctx: (n, Dv) prompts appended after the patch tokens before ln_pre (shallow / layer 0).
    deep_ctx: (J-1, n, Dv); entry j-1 replaces the last n tokens at the input of block j.
    drop: (B, M) patch indices (0..P-1) removed after the positional embedding, before prompts.
    patches / local / attentions: also return the patch embeddings in the joint space, the
        value-only local features of the last block (through `local_proj` before `proj` when
        given), and every block's attention maps.
    hidden: if a list is given, the input of every block (B, T, Dv) is appended to it.
    """
    if deep_ctx is not None and ctx is None:
        raise ValueError("deep vision prompts replace the prompt tokens that `ctx` appends: pass `ctx` too")
    visual = model.visual
    x = patch_tokens(visual, images)
    num_patches = x.shape[1] - 1
    if drop is not None:
        kept = keep_indices(drop, num_patches)
        x = torch.cat([x[:, :1], x[:, 1:].gather(1, kept[..., None].expand(-1, -1, x.shape[-1]))], dim=1)
    num_kept = x.shape[1] - 1
    x = visual.patch_dropout(x)
    if ctx is not None:
        x = torch.cat([x, ctx.to(x.dtype).expand(x.shape[0], -1, -1)], dim=1)
    x = visual.ln_pre(x)

    maps: list[Tensor] = []
    blocks = visual.transformer.resblocks
    last_input = x
    for j, block in enumerate(blocks):
        if deep_ctx is not None and 1 <= j <= deep_ctx.shape[0]:
            x = _replace_span(x, x.shape[1] - deep_ctx.shape[1], deep_ctx[j - 1])
        if hidden is not None:
            hidden.append(x)
        if attentions:
            maps.append(_attention_weights(block, x))
        last_input = x
        x = block(x)

    x = visual.ln_post(x)
    out = VisionOutput(pooled=x[:, 0] @ visual.proj)
    if patches:
        out.patches = x[:, 1 : 1 + num_kept] @ visual.proj
    if local:
        z = visual.ln_post(value_only_block(blocks[-1], last_input))[:, 1 : 1 + num_kept]
        out.local = (local_proj(z) if local_proj is not None else z) @ visual.proj
    if attentions:
        out.attentions = maps
    return out
