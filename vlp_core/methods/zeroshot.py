"""Zero-shot CLIP: no learned tensors, logits = s · f̂ ĝᵀ with cached frozen text features."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch.nn.functional as F
from torch import Tensor

from vlp_core.backbone import ClipBundle, FrozenTextFeatures
from vlp_core.methods.base import PromptMethod
from vlp_core.methods.templates import TEMPLATE_SETS


@dataclass
class ZeroShotConfig:
    template: Literal["single", "ensemble"] = "single"  # "a photo of a {}." or the 60 ImageNet templates


class ZeroShotCLIP(PromptMethod):
    """Plain CLIP. Text features come from `FrozenTextFeatures`, computed once per class list."""

    name = "zeroshot"

    def __init__(self, clip: ClipBundle, config: ZeroShotConfig | None = None,
                 frozen_text: FrozenTextFeatures | None = None):
        super().__init__(clip, frozen_text)
        self.config = config or ZeroShotConfig()
        if self.config.template not in TEMPLATE_SETS:
            raise ValueError(f"template must be one of {sorted(TEMPLATE_SETS)}, got {self.config.template!r}")

    def text_features(self) -> Tensor:
        """(C, D) normalised frozen text features of the current classes."""
        return self.frozen_text(self.class_names, TEMPLATE_SETS[self.config.template])

    def logits(self, images: Tensor) -> Tensor:
        """images (B, 3, S, S) -> (B, C)."""
        image = F.normalize(self.clip.model.encode_image(images), dim=-1)
        return self.logit_scale * image @ self.text_features().T

    def loss(self, images: Tensor, labels: Tensor) -> dict[str, Tensor]:
        raise TypeError("zero-shot CLIP has no learned tensors: there is nothing to train")
