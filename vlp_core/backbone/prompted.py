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

from vlp_core.backbone.tokens import TemplateFiller

PLACEHOLDER = "X"


def prompt_token_ids(tokenizer, class_names: list[str], n_ctx: int, template: str = "{}.") -> Tensor:
    """Token ids of `[SOT] X*n_ctx <template filled with the class name> [EOT] pad` -> (C, L).

    Positions 1..n_ctx hold placeholders that the prompted text forward replaces. Composed from
    the template's and the names' own tokens where that is exact (`TemplateFiller`).
    """
    prefix = " ".join([PLACEHOLDER] * n_ctx)
    return TemplateFiller(tokenizer).fill(f"{prefix} {template}".strip(), class_names)


def check_context_room(model: nn.Module, n_ctx: int, option: str) -> None:
    """Raise a ValueError when `n_ctx` learned text tokens leave no room for a class name in the
    model's text context: a sequence needs [SOT], the context, a name token and [EOT] (the
    tokenizer cuts longer ones at the context length). `option` names the setting, e.g. "coop.n_ctx"."""
    length = model.positional_embedding.shape[0]
    if n_ctx + 3 > length:
        raise ValueError(f"{option}={n_ctx} learned text tokens leave no room for a class name in this model's text "
                         f"context of {length} tokens ([SOT], context, name, [EOT]): set {option} to at most "
                         f"{length - 3}")


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
    *,
    all_pairs: bool = False,
    share_prefix: bool = True,
) -> Tensor:
    """Text features of prompted sequences -> (N, D), not normalised.

    token_ids: (N, L) from `prompt_token_ids` (placeholders at 1..n) or plain tokenizer output.
    ctx: (n, Dt) shared or (N, n, Dt) per sequence; replaces the embeddings at positions 1..n
        before the positional embedding is added.
    deep_ctx: (J-1, n, Dt) or (J-1, N, n, Dt); entry j-1 replaces the tokens at 1..n at the input
        of block j, for j = 1..J-1.
    all_pairs: ctx is (M, n, Dt) and deep_ctx (J-1, M, n, Dt): M prompts, each used with every
        row of token_ids (C, L), so N = C·M and row c·M + m is the sequence (class c, prompt m).
        Or, without ctx and deep_ctx, token_ids (C, M, L): M sequences per row (e.g. one template
        each, filled with class name c), so row c·M + m is token_ids[c, m]; the leading positions
        that column m has in all rows are its shared prefix.
    hidden: if a list is given, the input of every block (N, L', Dt) is appended to it, where L'
        ends at the batch's last EOT token (see `_trim_to_eot`).
    share_prefix: run the leading positions that every sequence of a prompt has in common once
        per prompt (see `_encode_shared`); False runs every sequence whole. Both give the same
        features up to round-off; a per-sequence context, or forward hooks on a block, always run
        whole sequences.
    """
    token_ids, attn_mask = _trim_to_eot(model, token_ids)
    if token_ids.dim() == 3 and (not all_pairs or ctx is not None or deep_ctx is not None):
        raise ValueError("token ids (C, M, L) are M prompt-free sequences per row: pass all_pairs=True, no ctx")
    if not all_pairs:
        if (ctx is not None and ctx.dim() == 3) or (deep_ctx is not None and deep_ctx.dim() == 4):
            return _encode_whole(model, token_ids, ctx, deep_ctx, attn_mask, hidden)
        ctx = None if ctx is None else ctx[None]  # one prompt, used with every row
        deep_ctx = None if deep_ctx is None else deep_ctx[:, None]
    watched = any(_hooked(block) for block in model.transformer.resblocks)  # hooks see whole sequences
    prefix = _shared_prefix_length(model, token_ids) if share_prefix and not watched else 0
    if len(token_ids) > 1 and prefix > next((t.shape[-2] for t in (ctx, deep_ctx) if t is not None), 0):
        return _encode_shared(model, token_ids, ctx, deep_ctx, prefix, attn_mask, hidden)
    if token_ids.dim() == 3:
        return _encode_whole(model, token_ids.flatten(0, 1), None, None, attn_mask, hidden)
    return _encode_whole(model, *_every_pair(token_ids, ctx, deep_ctx), attn_mask, hidden)


def _every_pair(token_ids: Tensor, prompts: Tensor | None, deep: Tensor | None) -> tuple:
    """Each (row, prompt) pair as a sequence of its own: token_ids (C, L'), prompts (M, n, Dt),
    deep (J-1, M, n, Dt) -> (C·M, L'), (C·M, n, Dt), (J-1, C·M, n, Dt), row c·M + m."""
    num_prompts = next((t.shape[-3] for t in (prompts, deep) if t is not None), 1)
    rows = token_ids.shape[0]
    return (token_ids.repeat_interleave(num_prompts, 0), None if prompts is None else prompts.repeat(rows, 1, 1),
            None if deep is None else deep.repeat(1, rows, 1, 1))


def _shared_prefix_length(model: nn.Module, token_ids: Tensor) -> int:
    """How many leading positions all rows of token_ids (N, L) share (for (C, M, L): that every
    column shares across the rows), at most up to the first EOT of any sequence; 0 when the tower
    is not causal with EOT pooling (nothing can be shared then)."""
    if model.attn_mask is None or model.text_pool_type != "argmax":
        return 0
    same = (token_ids == token_ids[:1]).all(dim=0)  # (L,) or (M, L)
    return min(int(same.long().cumprod(-1).sum(-1).min()), int(token_ids.argmax(dim=-1).min()))


def _encode_whole(model: nn.Module, token_ids: Tensor, ctx: Tensor | None, deep_ctx: Tensor | None,
                  attn_mask: Tensor | None, hidden: list[Tensor] | None) -> Tensor:
    """Every sequence through every block: token_ids (N, L'), ctx (n, Dt) or (N, n, Dt), deep_ctx
    (J-1, n, Dt) or (J-1, N, n, Dt), attn_mask (L', L') -> (N, D)."""
    x = model.token_embedding(token_ids)
    if ctx is not None:
        x = _replace_span(x, 1, ctx)
    x = x + model.positional_embedding[: x.shape[1]].to(x.dtype)
    eot = token_ids.argmax(dim=-1) if model.text_pool_type == "argmax" else None
    blocks = model.transformer.resblocks
    for j, block in enumerate(blocks):
        if deep_ctx is not None and 1 <= j <= deep_ctx.shape[0]:
            x = _replace_span(x, 1, deep_ctx[j - 1])
        if hidden is not None:
            hidden.append(x)
        x = residual_block(block, x, attn_mask, rows=eot if j == len(blocks) - 1 else None)
    x = model.ln_final(x)
    if eot is not None:  # the last block ran the EOT tokens only
        return x[:, 0] @ model.text_projection
    return text_global_pool(x, token_ids, model.text_pool_type, getattr(model, "text_eos_id", None)) @ model.text_projection


def _encode_shared(model: nn.Module, token_ids: Tensor, prompts: Tensor | None, deep: Tensor | None,
                   prefix: int, attn_mask: Tensor, hidden: list[Tensor] | None) -> Tensor:
    """`_encode_whole` of every (row, prompt) pair, with the shared prefix run once per prompt.

    token_ids (C, L') agree on their first `prefix` positions (T0, all before any EOT); prompts
    (M, n, Dt) and deep (J-1, M, n, Dt), n < T0. Under the causal mask the prefix never sees the
    rest, so its states depend on the prompt only: they run as M sequences of length T0, and the
    C·M suffixes (length L' - T0) attend to their prompt's prefix keys and values, layer by layer.
    Or token_ids (C, M, L'), no prompts: column m's first T0 positions are the same in every row
    and are its prefix (M prefixes of different words, e.g. one per template).
    -> (C·M, D), row c·M + m.
    """
    num_classes = token_ids.shape[0]
    embedded = model.token_embedding(token_ids)
    position = model.positional_embedding[: token_ids.shape[-1]].to(embedded.dtype)
    if token_ids.dim() == 3:  # (C, M, L'): M prefixes of their own
        head = embedded[0, :, :prefix] + position[:prefix]  # (M, T0, Dt)
        tail = embedded[:, :, prefix:].flatten(0, 1) + position[prefix:]  # (C·M, L' - T0, Dt)
        eot = token_ids[:, :, prefix:].flatten(0, 1).argmax(dim=-1)
    else:
        head = embedded[:1, :prefix]  # (1, T0, Dt)
        if prompts is not None:
            head = _replace_span(head.expand(prompts.shape[0], -1, -1), 1, prompts)
        elif deep is not None:
            head = head.expand(deep.shape[1], -1, -1)
        head = head + position[:prefix]  # (M, T0, Dt)
        tail = (embedded[:, prefix:] + position[prefix:]).repeat_interleave(head.shape[0], 0)  # (C·M, L' - T0, Dt)
        eot = token_ids[:, prefix:].argmax(dim=-1).repeat_interleave(head.shape[0])  # positions in the tail
    blocks = model.transformer.resblocks
    for j, block in enumerate(blocks):
        if deep is not None and 1 <= j <= deep.shape[0]:
            head = _replace_span(head, 1, deep[j - 1])
        if hidden is not None:
            hidden.append(torch.cat([head.repeat(num_classes, 1, 1), tail], dim=1))
        if j == len(blocks) - 1:  # only the EOT tokens are read after the last block
            tail = residual_block(block, tail, attn_mask[prefix:], prefix=head, rows=eot)
        else:
            head, tail = (residual_block(block, head, attn_mask[:prefix, :prefix]),
                          residual_block(block, tail, attn_mask[prefix:], prefix=head))
    return model.ln_final(tail)[:, 0] @ model.text_projection


def residual_block(block: nn.Module, x: Tensor, attn_mask: Tensor | None = None,
                   prefix: Tensor | None = None, rows: Tensor | None = None, queries: int | None = None) -> Tensor:
    """open_clip's `ResidualAttentionBlock` on x (N, T, W), written out batch-first around
    `scaled_dot_product_attention` (no head transposes of nn.MultiheadAttention) -> (N, T, W).

    prefix: (M, T0, W), the block's input at T0 earlier positions that row n of x continues
        (prefix n mod M): x's tokens also attend to its keys and values; attn_mask is (T, T0 + T).
    rows: (N,) one position per sequence: only that token is computed (the others serve as keys
        and values) -> (N, 1, W), for a last block of which only the pooled token is read.
    queries: only the first `queries` tokens are computed (all T serve as keys and values) ->
        (N, queries, W), for a block whose successor replaces the tokens after them (deep prompts).
    A block watched by forward hooks (e.g. captum's layer attributions) runs as open_clip's module,
    whole, so that the hooks see its input and output (see `_hooked`).
    """
    attn, width = block.attn, x.shape[-1]
    if not isinstance(attn, nn.MultiheadAttention) or hasattr(block, "ln_1_kv"):
        raise TypeError(f"prompted forwards run open_clip's ResidualAttentionBlock, not {type(block).__name__}")
    if _hooked(block):
        if prefix is not None:
            raise ValueError("a block watched by hooks runs whole sequences, not suffixes of a shared prefix")
        out = block(x, attn_mask=attn_mask)
        if queries is not None:
            return out[:, :queries]
        return out if rows is None else out[torch.arange(x.shape[0], device=x.device), rows][:, None]
    weight, bias = attn.in_proj_weight, attn.in_proj_bias
    h = block.ln_1(x)
    k, v = F.linear(h, weight[width:], bias[width:]).chunk(2, dim=-1)
    if rows is not None:
        picked = torch.arange(x.shape[0], device=x.device), rows
        x, h = x[picked][:, None], h[picked][:, None]
        attn_mask = None if attn_mask is None else attn_mask[rows][:, None, None]  # (N, 1, 1, T0 + T)
    if queries is not None:
        x, h = x[:, :queries], h[:, :queries]
    q = F.linear(h, weight[:width], bias[:width])
    if prefix is not None:
        k_pre, v_pre = F.linear(block.ln_1(prefix), weight[width:], bias[width:]).chunk(2, dim=-1)
        repeats = k.shape[0] // prefix.shape[0]
        k, v = torch.cat([k_pre.repeat(repeats, 1, 1), k], dim=1), torch.cat([v_pre.repeat(repeats, 1, 1), v], dim=1)
    q, k, v = (t.unflatten(-1, (attn.num_heads, -1)).transpose(1, 2) for t in (q, k, v))
    mask = None if attn_mask is None else attn_mask.to(q.dtype)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask).transpose(1, 2).flatten(2)
    x = x + block.ls_1(attn.out_proj(out))
    return x + block.ls_2(block.mlp(block.ln_2(x)))


def _hooked(block: nn.Module) -> bool:
    """Whether forward hooks watch `block`; then it runs whole, as the module (`residual_block`)."""
    return bool(block._forward_hooks or block._forward_pre_hooks)


def _trim_to_eot(model: nn.Module, token_ids: Tensor) -> tuple[Tensor, Tensor | None]:
    """Drop the padding after the last EOT of the batch: (..., L) -> (..., L') and the (L', L') mask.

    With a causal mask no token attends to later ones, so the EOT features are unchanged while the
    encoder runs on L' (about 15 for class names) instead of the context length (77).
    """
    mask = model.attn_mask
    if mask is None or model.text_pool_type != "argmax":
        return token_ids, mask
    length = int(token_ids.argmax(dim=-1).max()) + 1
    return token_ids[..., :length], mask[:length, :length]


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
    tokens: Tensor | None = None,
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
    tokens: `patch_tokens(model.visual, images)` (B, 1 + P, Dv) when already computed: the stem is
        frozen, so passes over the same images can share its output instead of running it again.
    """
    if deep_ctx is not None and ctx is None:
        raise ValueError("deep vision prompts replace the prompt tokens that `ctx` appends: pass `ctx` too")
    visual = model.visual
    x = patch_tokens(visual, images) if tokens is None else tokens
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
    replaced = 0 if deep_ctx is None else deep_ctx.shape[0]  # blocks 1..replaced take new prompts
    for j, block in enumerate(blocks):
        if 1 <= j <= replaced:  # the block before ran without the prompt tokens' outputs
            x = torch.cat([x, deep_ctx[j - 1].to(x.dtype).expand(x.shape[0], -1, -1)], dim=1)
        if hidden is not None:
            hidden.append(x)
        if attentions:
            maps.append(_attention_weights(block, x))
        if j < len(blocks) - 1:  # outputs that the next block's prompts replace are not computed
            x = residual_block(block, x, queries=x.shape[1] - deep_ctx.shape[1] if j + 1 <= replaced else None)

    # x is the input of the last block; each output runs only the part of it that it reads
    last, cls = blocks[-1], torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
    out = VisionOutput(pooled=visual.ln_post(residual_block(last, x, rows=cls))[:, 0] @ visual.proj)
    if patches:
        out.patches = visual.ln_post(residual_block(last, x))[:, 1 : 1 + num_kept] @ visual.proj
    if local:
        z = visual.ln_post(value_only_block(last, x))[:, 1 : 1 + num_kept]
        out.local = (local_proj(z) if local_proj is not None else z) @ visual.proj
    if attentions:
        out.attentions = maps
    return out
