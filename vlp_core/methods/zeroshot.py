"""Zero-shot CLIP: no learned tensors, logits = s · f̂ ĝᵀ with cached frozen text features."""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor

from vlp_core.backbone import ClipBundle, FrozenTextFeatures
from vlp_core.methods.base import PromptMethod
from vlp_core.methods.registry import register
from vlp_core.methods.templates import templates_of


@dataclass
class ZeroShotConfig:
    # "single" ("a photo of a {}."), "ensemble" (PromptSRC's 60 ImageNet templates), "ensemble80" (CLIP's
    # 80), or one template with "{}" for the class name (the recipes give CoOp's per-dataset template)
    template: str = "single"


@register
class ZeroShotCLIP(PromptMethod):
    """Plain CLIP. Text features come from `FrozenTextFeatures`, computed once per class list."""

    name = "zeroshot"
    title = "Zero-shot CLIP"
    order = 0
    config_class = ZeroShotConfig
    trainable = False

    def __init__(self, clip: ClipBundle, config: ZeroShotConfig | None = None,
                 frozen_text: FrozenTextFeatures | None = None):
        super().__init__(clip, frozen_text)
        self.config = config or ZeroShotConfig()
        self.templates = templates_of(self.config.template)

    def text_features(self) -> Tensor:
        """(C, D) normalised frozen text features of the current classes."""
        return self.frozen_text(self.class_names, self.templates)

    def image_features(self, images: Tensor) -> Tensor:
        """images (B, 3, S, S) -> (B, D) normalised frozen image features."""
        return F.normalize(self.clip.model.encode_image(images), dim=-1)

    def logits(self, images: Tensor) -> Tensor:
        """images (B, 3, S, S) -> (B, C)."""
        return self.logit_scale * self.image_features(images) @ self.text_features().T

    def loss(self, images: Tensor, labels: Tensor) -> dict[str, Tensor]:
        raise TypeError("zero-shot CLIP has no learned tensors: there is nothing to train")
