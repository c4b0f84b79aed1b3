"""GalLoP: global and local prompts for CLIP (Lafon et al., ECCV 2024), as docs/methods.md describes it.

Learned: Mg global and Ml local text prompts (shallow, n_ctx tokens each, initialised to "a photo
of a") and `local_proj`, a bias-free Dv x Dv map (identity at init) applied to the value-only local
features of the last visual block before CLIP's `proj`. Global prompts score the CLS embedding
(prompt dropout in training); each local prompt n scores the mean of its top-k_n patches.

Notation: B images, C classes, P patch tokens, Dv vision width, Dt text width, D joint size,
Mg / Ml global / local prompts, G (B, C, Mg) and L (B, P, C, Ml) raw cosines, s the frozen logit
scale (100 for OpenAI weights).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from vlp_core.backbone import (
    ClipBundle,
    FrozenTextFeatures,
    check_context_room,
    encode_image_prompted,
    encode_text_prompted,
    init_context,
    prompt_token_ids,
)
from vlp_core.choices import check_choice
from vlp_core.methods.base import Explainable, ExplainCache, PromptMethod, readable
from vlp_core.methods.ood import gl_mcm, l_mcm, mcm
from vlp_core.methods.registry import register
from vlp_core.methods.topk import (
    DROPOUT_SAMPLINGS,
    DropoutSampling,
    clip_ks,
    dropout_global,
    topk_local_scores,
    topk_patch_mask,
)


@dataclass
class GalLoPConfig:
    """GalLoP options; defaults are the paper's ViT-B/16 settings and the official code's behaviour."""

    n_global: int = 4  # Mg
    n_local: int = 4  # Ml
    n_ctx: int = 4  # learned tokens per prompt
    ctx_init: str = "a photo of a"  # must tokenise to n_ctx tokens
    topk: tuple[int, ...] = (5, 10, 15, 20)  # k_n per local prompt, clipped to P
    dropout: float = 0.75  # global prompt dropout p (training loss only)
    dropout_sampling: DropoutSampling = "with_replacement"  # official; see `dropout_global`
    template: str = "{}"  # text after the prompt: the bare class name, no period (official code)
    learn_local_proj: bool = True  # False: no local projection (the identity, not learned), its ablation
    text_chunk_size: int = 1024  # sequences per text-encoder call (whole classes: at least Mg + Ml)
    text_checkpoint: bool = False  # recompute text activations per chunk in backward (less memory)
    seed: int = 0  # seeds the prompt-dropout draws (in training: one generator per image, see PromptMethod)

    def __post_init__(self) -> None:
        self.topk = tuple(int(k) for k in self.topk)
        if len(self.topk) != self.n_local:
            raise ValueError(f"topk has {len(self.topk)} values but n_local is {self.n_local}")
        check_choice("dropout_sampling", self.dropout_sampling, DROPOUT_SAMPLINGS)
        if min(self.n_global, self.n_local, self.text_chunk_size, *self.topk) < 1:
            raise ValueError("n_global, n_local, text_chunk_size and every k must be at least 1")


def gallop_logits(global_sims: Tensor, local_scores: Tensor, scale: Tensor | float) -> dict[str, Tensor]:
    """Inference logits of the two heads and their combination -> each (B, C).

    global_sims: G (B, C, Mg); local_scores: Lk (B, C, Ml) from `topk_local_scores`.
    "global" = s * mean_m G, "local" = s * mean_n Lk, "combined" = s * (g + l) / 2.
    """
    global_logits = scale * global_sims.mean(-1)
    local_logits = scale * local_scores.mean(-1)
    return {"global": global_logits, "local": local_logits, "combined": (global_logits + local_logits) / 2}


def gallop_ood_scores(global_sims: Tensor, local_sims: Tensor, temperature: float = 1.0) -> dict[str, Tensor]:
    """ID-ness scores (higher = in-distribution) -> each (B,).

    global_sims G (B, C, Mg) and local_sims L (B, P, C, Ml) are averaged over prompts first:
    MCM on mean_m G, L-MCM on mean_n L (every patch), GL-MCM their sum.
    """
    global_cos, local_cos = global_sims.mean(-1), local_sims.mean(-1)
    return {
        "mcm": mcm(global_cos, temperature),
        "l_mcm": l_mcm(local_cos, temperature),
        "gl_mcm": gl_mcm(global_cos, local_cos, temperature),
    }


@dataclass
class GalLoPExplainCache(ExplainCache):
    """Everything `explain` needs about one image, so a new k or class re-thresholds without an
    encoder pass: its cosines with every (class, prompt) text feature of the current class list."""

    global_sims: Tensor  # (C, Mg)
    local_sims: Tensor  # (P, C, Ml)
    frozen_local_sims: Tensor  # (P, C) frozen CLIP's value-only local features . the frozen text of the initial prompt
    scale: float  # s
    grid: tuple[int, int]  # patch grid (rows, columns), rows * columns = P
    default_ks: tuple[int, ...]  # the method's k_n

    @property
    def probabilities(self) -> Tensor:
        """(C,) GalLoP's prediction on the full image: softmax of the combined logits at the method's ks."""
        local = self.local_sims[None]
        ks = clip_ks(self.default_ks, local.shape[-1], local.shape[1])
        logits = gallop_logits(self.global_sims[None], topk_local_scores(local, ks), self.scale)["combined"]
        return torch.softmax(logits[0], dim=-1)

    def zero_shot_vs_learned(self, class_index: int) -> dict:
        """The local map of class `class_index` before and after learning: "zero_shot" (P,) the
        cosine of frozen CLIP's value-only local features with the frozen text of GalLoP's initial
        prompt (`GalLoP.zero_shot_template`: what an untrained GalLoP computes), "learned" (P,) the
        mean over the local prompts of their cosine maps (`explain`'s "maps"), and "difference"
        (P,) learned - zero_shot."""
        zero_shot = self.frozen_local_sims[:, class_index]
        learned = self.local_sims[:, class_index].mean(-1)
        return {"zero_shot": zero_shot, "learned": learned, "difference": learned - zero_shot, "values": "cosine"}

    def explain(self, class_index: int, ks: int | Sequence[int] | None = None) -> dict:
        """Local-prompt maps and selections for one class, and the logits of every class.

        ks: k_n per local prompt (or one int for all; default: the method's), clipped to P.
        Returns
          "maps": (Ml, P) cosine of each patch with local prompt n of the class,
          "selected": bool (Ml, P), the top-k_n patches of each map (exactly k_n True per row),
          "prompt_scores": (Ml,) mean of the selected cosines (Lk of the class),
          "global_logits" / "local_logits" / "logits": (C,) as in `gallop_logits` with these ks,
          "ks": the clipped ks, "grid": (rows, columns) to reshape a map to the image's patch grid.
        """
        num_classes = self.global_sims.shape[0]
        if not 0 <= class_index < num_classes:
            raise ValueError(f"class_index {class_index} is outside 0..{num_classes - 1}")
        local = self.local_sims[None]  # (1, P, C, Ml)
        ks = clip_ks(self.default_ks if ks is None else ks, local.shape[-1], local.shape[1])
        scores = topk_local_scores(local, ks)  # (1, C, Ml)
        logits = gallop_logits(self.global_sims[None], scores, self.scale)
        class_map = local[:, :, class_index : class_index + 1]  # (1, P, 1, Ml)
        return {
            "maps": class_map[0, :, 0].T,
            "selected": topk_patch_mask(class_map, ks)[0, :, 0].T,
            "prompt_scores": scores[0, class_index],
            "global_logits": logits["global"][0],
            "local_logits": logits["local"][0],
            "logits": logits["combined"][0],
            "ks": ks,
            "grid": self.grid,
        }


@register
class GalLoP(PromptMethod, Explainable):
    """Global and local prompts over a frozen CLIP (ViT image tower)."""

    name = "gallop"
    title = "GalLoP"
    order = 50
    config_class = GalLoPConfig

    def __init__(self, clip: ClipBundle, config: GalLoPConfig | None = None,
                 frozen_text: FrozenTextFeatures | None = None):
        super().__init__(clip, frozen_text)
        self.config = config or GalLoPConfig()
        cfg, model = self.config, clip.model
        check_context_room(model, cfg.n_ctx, f"{self.name}.n_ctx")
        ctx = init_context(model, clip.tokenizer, cfg.ctx_init, cfg.n_ctx)  # (n_ctx, Dt)
        self.global_prompts = nn.Parameter(ctx.repeat(cfg.n_global, 1, 1))  # (Mg, n_ctx, Dt)
        self.local_prompts = nn.Parameter(ctx.repeat(cfg.n_local, 1, 1))  # (Ml, n_ctx, Dt)
        self.local_proj: nn.Linear | None = None
        if cfg.learn_local_proj:
            width = model.visual.proj.shape[0]
            self.local_proj = nn.Linear(width, width, bias=False, device=ctx.device, dtype=model.visual.proj.dtype)
            with torch.no_grad():
                self.local_proj.weight.copy_(torch.eye(width))
        self.reseed(cfg.seed)
        self._class_ids: Tensor | None = None  # (C, L) prompt token ids, set per class list
        self._text_cache: tuple[tuple, tuple[Tensor, Tensor]] | None = None

    @property
    def zero_shot_template(self) -> str:
        """The frozen text template that GalLoP's initial prompts spell ("a photo of a {}"): with it,
        frozen CLIP computes what an untrained GalLoP does."""
        return f"{self.config.ctx_init} {self.config.template}"

    def text_contexts(self) -> dict[str, Tensor]:
        """Each global and local prompt's context (n_ctx, Dt): "global 1".."global Mg", "local 1".."local Ml"."""
        return {**{f"global {n + 1}": ctx for n, ctx in enumerate(self.global_prompts)},
                **{f"local {n + 1}": ctx for n, ctx in enumerate(self.local_prompts)}}

    # ------------------------------------------------------------------ text side

    def set_classes(self, class_names: Iterable[str]) -> None:
        """Tokenise a new class list (each class is then read with each of the Mg + Ml prompts).

        The same list again changes nothing (its token ids and cached text features are kept).
        """
        names = [readable(name) for name in class_names]
        if names == self.class_names and self._class_ids is not None:
            return
        super().set_classes(names)
        ids = prompt_token_ids(self.clip.tokenizer, self.class_names, self.config.n_ctx, self.config.template)
        self._class_ids = ids.to(self.device)
        self._text_cache = None

    def text_features(self) -> tuple[Tensor, Tensor]:
        """Normalised text features t_g (C, Mg, D) and t_l (C, Ml, D) of the current class list.

        With gradients enabled they are recomputed (one batched pass, the graph reaching the prompts);
        otherwise they are cached until the prompts or the class list change.
        """
        prompts = (self.global_prompts, self.local_prompts)
        if torch.is_grad_enabled() and any(p.requires_grad for p in prompts):
            return self._encode_text()
        key = tuple((p.data_ptr(), p.device, p._version) for p in prompts)
        if self._text_cache is None or self._text_cache[0] != key:
            with torch.no_grad():
                self._text_cache = (key, self._encode_text())
        return self._text_cache[1]

    def _encode_text(self) -> tuple[Tensor, Tensor]:
        """All C * (Mg + Ml) prompted sequences in one pass (chunks of whole classes, at most
        `text_chunk_size` sequences each when Mg + Ml <= text_chunk_size)."""
        if self._class_ids is None:
            raise RuntimeError("call set_classes(class_names) before computing text features")
        cfg = self.config
        prompts = torch.cat([self.global_prompts, self.local_prompts])  # (M, n_ctx, Dt)
        classes_per_chunk = max(1, cfg.text_chunk_size // len(prompts))
        chunks = [self._encode_chunk(self._class_ids[start : start + classes_per_chunk], prompts)
                  for start in range(0, len(self._class_ids), classes_per_chunk)]
        features = F.normalize(torch.cat(chunks), dim=-1).view(len(self.class_names), len(prompts), -1)
        return features[:, : cfg.n_global], features[:, cfg.n_global :]

    def _encode_chunk(self, ids: Tensor, prompts: Tensor) -> Tensor:
        """Text features of every class ids (C', L) with every prompt (M, n_ctx, Dt) -> (C' * M, D),
        row c * M + m; the [SOT] + prompt prefix runs once per prompt (see `encode_text_prompted`)."""
        if self.config.text_checkpoint and torch.is_grad_enabled():
            return checkpoint(encode_text_prompted, self.clip.model, ids, prompts, all_pairs=True,
                              use_reentrant=False)
        return encode_text_prompted(self.clip.model, ids, prompts, all_pairs=True)

    # ------------------------------------------------------------------ image side and scores

    def image_features(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """Normalised global f_g (B, D) and local f_l (B, P, D) features from one image forward.

        images: (B, 3, S, S). f_l is the last block's value-only path through `local_proj` (when learned).
        """
        images = images.to(self.device)
        out = encode_image_prompted(self.clip.model, images, local=True, local_proj=self.local_proj)
        return F.normalize(out.pooled, dim=-1), F.normalize(out.local, dim=-1)

    def similarities(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """Cosines G (B, C, Mg) = f_g . t_g and L (B, P, C, Ml) = f_l . t_l for images (B, 3, S, S)."""
        global_feats, local_feats = self.image_features(images)
        text_global, text_local = self.text_features()
        global_sims = torch.einsum("bd,cmd->bcm", global_feats, text_global.to(global_feats.dtype))
        local_sims = torch.einsum("bpd,cnd->bpcn", local_feats, text_local.to(local_feats.dtype))
        return global_sims, local_sims

    def loss(self, images: Tensor, labels: Tensor) -> dict[str, Tensor]:
        """CE(s * dropout_mean(G), y) + mean_n CE(s * Lk[:, :, n], y); images (B, 3, S, S), labels (B,)."""
        cfg = self.config
        global_sims, local_sims = self.similarities(images)
        labels = labels.to(global_sims.device)
        global_mean = dropout_global(global_sims, cfg.dropout, cfg.dropout_sampling, self.step_generators())
        local_scores = topk_local_scores(local_sims, cfg.topk)  # (B, C, Ml)
        global_ce = F.cross_entropy(self.logit_scale * global_mean, labels)
        local_ce = F.cross_entropy(self.logit_scale * local_scores, labels[:, None].expand(-1, cfg.n_local))
        return {"global_ce": global_ce, "local_ce": local_ce, "total": global_ce + local_ce}

    def head_logits(self, images: Tensor) -> dict[str, Tensor]:
        """Logits of each head, "global", "local" and "combined", each (B, C); see `gallop_logits`."""
        global_sims, local_sims = self.similarities(images)
        return gallop_logits(global_sims, topk_local_scores(local_sims, self.config.topk), self.logit_scale)

    def logits(self, images: Tensor) -> Tensor:
        """s * (mean_m G + mean_n Lk) / 2 -> (B, C)."""
        return self.head_logits(images)["combined"]

    def ood_scores(self, images: Tensor, temperature: float = 1.0) -> dict[str, Tensor]:
        """ID-ness scores "mcm", "l_mcm" and "gl_mcm", each (B,); see `gallop_ood_scores`."""
        return gallop_ood_scores(*self.similarities(images), temperature)

    # ------------------------------------------------------------------ explanations

    @torch.no_grad()
    def explain_cache(self, image: Tensor) -> GalLoPExplainCache:
        """Encode one image (1, 3, S, S) against the current class list, for repeated `explain` calls:
        its cosines with every prompt's text, and frozen CLIP's local cosines with the frozen text of
        `zero_shot_template` (for `zero_shot_vs_learned`)."""
        if image.shape[0] != 1:
            raise ValueError(f"explain takes one image (1, 3, S, S), got a batch of {image.shape[0]}")
        global_sims, local_sims = self.similarities(image)
        frozen = encode_image_prompted(self.clip.model, image.to(self.device), local=True)
        frozen_text = self.frozen_text(self.class_names, (self.zero_shot_template,))
        return GalLoPExplainCache(
            global_sims=global_sims[0],
            local_sims=local_sims[0],
            frozen_local_sims=F.normalize(frozen.local[0], dim=-1) @ frozen_text.T.to(frozen.local.dtype),
            scale=float(self.logit_scale),
            grid=tuple(self.clip.model.visual.grid_size),
            default_ks=self.config.topk,
        )

    def explain(self, image: Tensor, class_index: int, ks: int | Sequence[int] | None = None) -> dict:
        """Local-prompt maps of one image for one class; see `GalLoPExplainCache.explain`.

        For a slider, keep `explain_cache(image)` and call its `explain` with each new k.
        """
        return self.explain_cache(image).explain(class_index, ks)
