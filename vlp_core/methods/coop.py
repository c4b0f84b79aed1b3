"""CoOp (Zhou et al., IJCV 2022): one learned text context shared by all classes ("unified").

Text sequences are `[SOT, ctx_1..ctx_n, class name, ".", EOT]`; the image tower is plain CLIP.
`CoOp` also holds what every learned-prompt method here shares (the subclasses IVLP -> PromptSRC
-> DiSa add to it): prompt initialisation, token ids cached per class list, the training step's
features and the named loss terms.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vlp_core.backbone import (
    ClipBundle,
    FrozenTextFeatures,
    encode_text_prompted,
    init_context,
    prompt_token_ids,
)
from vlp_core.methods.base import PromptMethod

CLASS_TEMPLATE = "{}."  # what follows the learned context in every text sequence


@dataclass
class CoOpConfig:
    n_ctx: int = 16  # learned text context tokens (CoOp's default; 4 with ctx_init "a photo of a")
    ctx_init: str | None = None  # words whose embeddings initialise the context; None: random normal
    init_std: float = 0.02  # std of the random normal initialisation
    seed: int = 0  # seeds every random initialisation


@dataclass
class Step:
    """The features of one training batch (B images, C classes, D joint size), all normalised."""

    images: Tensor  # (B, 3, S, S)
    labels: Tensor  # (B,)
    image: Tensor  # (B, D) f̂_p, the method's image features
    text: Tensor  # (C, D) ĝ_p, the method's text features
    logits: Tensor  # (B, C) s · f̂_p ĝ_pᵀ
    frozen_image: Tensor | None = None  # (B, D) f̂_o, frozen CLIP (no grad), for regularisers
    frozen_patches: Tensor | None = None  # (B, P, D) frozen patch embeddings, not normalised


class CoOp(PromptMethod):
    """Unified-context CoOp. Learned: `text_ctx` (n_ctx, Dt)."""

    name = "coop"

    def __init__(self, clip: ClipBundle, config: CoOpConfig | None = None,
                 frozen_text: FrozenTextFeatures | None = None):
        super().__init__(clip, frozen_text)
        self.config = config if config is not None else CoOpConfig()
        self._init_generator = torch.Generator().manual_seed(self.config.seed)
        self._token_ids: dict[tuple[str, ...], Tensor] = {}
        self.text_ctx = nn.Parameter(self._initial_text_context())

    def _random_prompts(self, *shape: int) -> Tensor:
        """N(0, init_std²) tensor of `shape` from the method's seeded generator."""
        values = torch.randn(*shape, generator=self._init_generator) * self.config.init_std
        return values.to(self.device)

    def _initial_text_context(self) -> Tensor:
        """(n_ctx, Dt): the embeddings of `ctx_init`, or random normal."""
        model, config = self.clip.model, self.config
        if config.ctx_init:
            return init_context(model, self.clip.tokenizer, config.ctx_init, config.n_ctx)
        return self._random_prompts(config.n_ctx, model.token_embedding.weight.shape[1])

    def set_classes(self, class_names: Iterable[str]) -> None:
        """Switch classes; the prompt token ids are tokenised once per class list and cached."""
        super().set_classes(class_names)
        key = tuple(self.class_names)
        if key not in self._token_ids:
            self._token_ids[key] = prompt_token_ids(
                self.clip.tokenizer, self.class_names, self.config.n_ctx, CLASS_TEMPLATE)

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
        return F.normalize(encode_text_prompted(self.clip.model, self.token_ids, self.text_ctx), dim=-1)

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
