"""CoOp (Zhou et al., IJCV 2022): a learned text context, shared by all classes ("unified") or one per
class ("class-specific", CSC), with the class name at the end, in the middle or at the front.

Text sequences are `[SOT, ctx_1..ctx_n, class name, ".", EOT]` (end, the default), `[SOT, ctx_1..ctx_n/2,
class name, ctx_n/2+1..ctx_n, ".", EOT]` (middle) or `[SOT, class name, ctx_1..ctx_n, ".", EOT]` (front);
the image tower is plain CLIP. `CoOp` also holds what every learned-prompt method here shares (the
subclasses IVLP -> PromptSRC -> DiSa add to it): prompt initialisation, token ids cached per class list,
the training step's features and the named loss terms.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vlp_core.backbone import (
    ClipBundle,
    FrozenTextFeatures,
    check_context_room,
    encode_text_prompted,
    init_context,
    prompt_token_ids,
)
from vlp_core.methods.base import PromptMethod, Step, readable
from vlp_core.methods.registry import register

CLASS_TEMPLATE = "{}."  # what follows the learned context in every text sequence
ClassTokenPosition = Literal["end", "middle", "front"]


@dataclass
class CoOpConfig:
    n_ctx: int = 16  # learned text context tokens (CoOp's default; 4 with ctx_init "a photo of a")
    ctx_init: str | None = None  # words whose embeddings initialise the context; None: random normal
    init_std: float = 0.02  # std of the random normal initialisation
    seed: int = 0  # seeds every random initialisation
    class_token_position: ClassTokenPosition = "end"  # where the class name sits relative to the context
    csc: bool = False  # class-specific context: one learned context per training class


def _tokens_before_name(n_ctx: int, position: ClassTokenPosition) -> int:
    """How many context tokens precede the class name (CoOp's middle: the first n_ctx // 2)."""
    return {"end": n_ctx, "middle": n_ctx // 2, "front": 0}[position]


def _sequence_texts(class_names: list[str], n_ctx: int, position: ClassTokenPosition) -> list[str]:
    """The text of each class's sequence with the placeholder "X" for every context token."""
    before = _tokens_before_name(n_ctx, position)
    parts = (" ".join(["X"] * before), "{}", " ".join(["X"] * (n_ctx - before)))
    template = " ".join(part for part in parts if part) + "."
    return [template.format(name) for name in class_names]


def _context_positions(tokenizer, class_names: list[str], n_ctx: int, position: ClassTokenPosition) -> Tensor:
    """Token positions of the n_ctx context vectors in each class's `_sequence_texts` -> (C, n_ctx) long.

    They follow from the number of tokens of each class name (BPE tokenises words independently).
    """
    before = _tokens_before_name(n_ctx, position)
    name_lengths = [int(ids.argmax()) - 1 for ids in tokenizer(class_names)]  # tokens between SOT and EOT
    return torch.tensor([list(range(1, 1 + before)) + list(range(1 + before + length, 1 + n_ctx + length))
                         for length in name_lengths])


@register
class CoOp(PromptMethod):
    """CoOp. Learned: `text_ctx` (n_ctx, Dt), or with `csc` (C, n_ctx, Dt), created by the first
    `set_classes` (the class list it learns for; other class lists are refused)."""

    name = "coop"
    title = "CoOp"
    order = 10
    config_class = CoOpConfig

    def __init__(self, clip: ClipBundle, config: CoOpConfig | None = None,
                 frozen_text: FrozenTextFeatures | None = None):
        super().__init__(clip, frozen_text)
        self.config = config if config is not None else CoOpConfig()
        if self.config.class_token_position not in ("end", "middle", "front"):
            raise ValueError(f"class_token_position must be end, middle or front, got "
                             f"{self.config.class_token_position!r}")
        check_context_room(clip.model, self.config.n_ctx, f"{self.name}.n_ctx")
        self._init_generator = torch.Generator().manual_seed(self.config.seed)
        self._token_ids: dict[tuple[str, ...], Tensor] = {}
        self._positions: dict[tuple[str, ...], Tensor] = {}
        if self.config.csc:
            self.register_parameter("text_ctx", None)
        else:
            self.text_ctx = nn.Parameter(self._initial_text_context())

    def _random_prompts(self, *shape: int) -> Tensor:
        """N(0, init_std²) tensor of `shape` from the method's seeded generator."""
        values = torch.randn(*shape, generator=self._init_generator) * self.config.init_std
        return values.to(self.device)

    def _initial_text_context(self, *leading: int) -> Tensor:
        """(*leading, n_ctx, Dt): the embeddings of `ctx_init` (repeated), or random normal."""
        model, config = self.clip.model, self.config
        if config.ctx_init:
            words = init_context(model, self.clip.tokenizer, config.ctx_init, config.n_ctx)
            return words.repeat(*leading, 1, 1)
        return self._random_prompts(*leading, config.n_ctx, model.token_embedding.weight.shape[1])

    def set_classes(self, class_names: Iterable[str]) -> None:
        """Switch classes; the prompt token ids are tokenised once per class list and cached.

        With `csc`, the first call creates one context per class; another class list is refused.
        """
        names = list(class_names)
        if self.config.csc:
            self._check_csc_classes(names)
        super().set_classes(names)
        key = tuple(self.class_names)
        if key not in self._token_ids:
            config, tokenizer = self.config, self.clip.tokenizer
            if config.class_token_position == "end":
                self._token_ids[key] = prompt_token_ids(tokenizer, self.class_names, config.n_ctx, CLASS_TEMPLATE)
            else:
                texts = _sequence_texts(self.class_names, config.n_ctx, config.class_token_position)
                self._token_ids[key] = tokenizer(texts)
                self._positions[key] = _context_positions(tokenizer, self.class_names, config.n_ctx,
                                                          config.class_token_position)
        if self.config.csc and self.text_ctx is None:
            self.text_ctx = nn.Parameter(self._initial_text_context(len(self.class_names)))

    def _check_csc_classes(self, names: list[str]) -> None:
        """Class-specific contexts belong to the classes they were created for."""
        if self.text_ctx is not None and [readable(n) for n in names] != self.class_names:
            raise ValueError(
                f"CoOp with class-specific contexts (csc) learned one context for each of its "
                f"{len(self.class_names)} classes and cannot score other class lists ({len(names)} names "
                f"given); use csc=false for base-to-novel or transfer protocols")

    @property
    def token_ids(self) -> Tensor:
        """(C, L) token ids of the current classes with placeholders for the context."""
        if not self.class_names:
            raise RuntimeError("no classes: call set_classes(names) first")
        key = tuple(self.class_names)
        if self._token_ids[key].device != self.device:
            self._token_ids[key] = self._token_ids[key].to(self.device)
        return self._token_ids[key]

    def text_features(self) -> Tensor:
        """(C, D) normalised prompted text features ĝ_p."""
        if self.config.class_token_position == "end":
            ctx = self.text_ctx
        else:
            ctx = self._spliced_context()
        return F.normalize(encode_text_prompted(self.clip.model, self.token_ids, ctx), dim=-1)

    def _spliced_context(self) -> Tensor:
        """The embeddings of positions 1..S of every sequence, the context vectors placed at their
        (per-class) positions and the class-name tokens around them frozen -> (C, S, Dt).

        encode_text_prompted puts this span in place of the token embeddings at 1..S, which gives
        each class its `class_token_position` sequence with the learned context.
        """
        positions = self._positions[tuple(self.class_names)].to(self.device)  # (C, n_ctx)
        span = int(positions.max())
        ids = self.token_ids[:, 1 : span + 1]
        embeddings = self.clip.model.token_embedding(ids)  # (C, S, Dt), frozen
        ctx = self.text_ctx.to(embeddings.dtype).expand(len(ids), -1, -1)  # (C, n_ctx, Dt)
        rows = torch.arange(len(ids), device=self.device)[:, None].expand_as(positions)
        return embeddings.index_put((rows, positions - 1), ctx)

    def text_contexts(self) -> dict[str, Tensor]:
        """The learned context (n_ctx, Dt) under "context", or with `csc` one per class, "context of <class>"."""
        if self.text_ctx is None:
            return {}
        if not self.config.csc:
            return {"context": self.text_ctx}
        return {f"context of {name}": ctx for name, ctx in zip(self.class_names, self.text_ctx)}

    def image_features(self, images: Tensor) -> Tensor:
        """images (B, 3, S, S) -> (B, D) normalised image features (frozen CLIP for CoOp)."""
        return F.normalize(self.clip.model.encode_image(images), dim=-1)

    def logits(self, images: Tensor) -> Tensor:
        """images (B, 3, S, S) -> (B, C) = s · f̂ ĝᵀ."""
        return self.logit_scale * self.image_features(images) @ self.text_features().T

    def _forward(self, images: Tensor, labels: Tensor) -> Step:
        image, text = self.image_features(images), self.text_features()
        return Step(images, labels, image, text, self.logit_scale * image @ text.T)

    def _loss_terms(self, step: Step) -> dict[str, Tensor]:
        """Named, already weighted loss terms; subclasses add theirs to these."""
        return {"ce": F.cross_entropy(step.logits, step.labels)}

    def loss(self, images: Tensor, labels: Tensor) -> dict[str, Tensor]:
        """images (B, 3, S, S), labels (B,) -> named terms and their sum under "total"."""
        terms = self._loss_terms(self._forward(images, labels))
        terms["total"] = torch.stack(list(terms.values())).sum()
        return terms
