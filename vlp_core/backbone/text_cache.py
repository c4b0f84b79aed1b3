"""Frozen text features, computed once per (class list, templates) and reused."""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vlp_core.backbone.prompted import encode_text_prompted


class FrozenTextFeatures:
    """Normalised prompt-free CLIP text features of class names, cached per class list.

    `encoder_calls` counts the text-encoder passes actually run, so callers (and tests) can check
    that nothing is recomputed inside a training step.
    """

    def __init__(self, model: nn.Module, tokenizer, batch_size: int = 512):
        self.model = model
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.encoder_calls = 0
        self._cache: dict[tuple, Tensor] = {}

    def __call__(self, class_names: Sequence[str], templates: Sequence[str] = ("a photo of a {}.",),
                 normalize_each: bool = True) -> Tensor:
        """(C, D) unit vectors: per class, the normalised mean over templates of the text features.

        normalize_each: average unit vectors (CLIP's zero-shot ensemble) or the raw features
        (PromptSRC's frozen teacher); identical for a single template.
        """
        key = (tuple(class_names), tuple(templates), normalize_each)
        if key not in self._cache:
            self._cache[key] = self._encode(key[0], key[1], normalize_each)
        return self._cache[key]

    @torch.no_grad()
    def _encode(self, class_names: tuple[str, ...], templates: tuple[str, ...], normalize_each: bool) -> Tensor:
        """Constant features: computed with autocast off, so they are in the model's own precision
        (float32 for CLIP) even when first asked for inside a mixed-precision training step."""
        device = self.model.token_embedding.weight.device
        per_template = []
        with torch.autocast(device.type, enabled=False):
            for template in templates:
                texts = [template.format(name) for name in class_names]
                chunks = []
                for start in range(0, len(texts), self.batch_size):
                    ids = self.tokenizer(texts[start : start + self.batch_size]).to(device)
                    features = encode_text_prompted(self.model, ids)  # trims padding: faster
                    chunks.append(F.normalize(features, dim=-1) if normalize_each else features)
                    self.encoder_calls += 1
                per_template.append(torch.cat(chunks))
        return F.normalize(torch.stack(per_template).mean(0), dim=-1)
