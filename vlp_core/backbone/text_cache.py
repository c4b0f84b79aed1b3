"""Frozen text features, computed once per (class list, templates) and reused."""

from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vlp_core.backbone.prompted import encode_text_prompted
from vlp_core.backbone.tokens import TemplateFiller


class FrozenTextFeatures:
    """Normalised prompt-free CLIP text features of class names, cached per class list.

    `encoder_calls` counts the text-encoder passes actually run, so callers (and tests) can check
    that nothing is recomputed inside a training step.

    keep_per_name: also keep the raw features of every (template, name) pair encoded, so a request
    that shares pairs with earlier ones (a class list with a few new names, a single template that
    is part of an ensemble asked for before) encodes only the pairs it has not seen. Costs one (D,)
    vector per pair kept; the app turns it on, training runs (one class list each) do not need it.

    Token ids are composed from each template's and each name's own tokens (`TemplateFiller`), and
    a template's names run in one encoder pass per `batch_size` names (sorted by token count, so a
    pass pads little), the template's words before the name run once per pass (shared prefix).
    """

    def __init__(self, model: nn.Module, tokenizer, batch_size: int = 512, keep_per_name: bool = False):
        self.model = model
        self.batch_size = batch_size
        self.keep_per_name = keep_per_name
        self.encoder_calls = 0
        self._cache: dict[tuple, Tensor] = {}
        self._pairs: dict[tuple[str, str], Tensor] = {}  # (template, name) -> (D,) raw, with keep_per_name
        self._filler = TemplateFiller(tokenizer)

    def __call__(self, class_names: Sequence[str], templates: Sequence[str] = ("a photo of a {}.",),
                 normalize_each: bool = True) -> Tensor:
        """(C, D) unit vectors: per class, the normalised mean over templates of the text features.

        normalize_each: average unit vectors (CLIP's zero-shot ensemble) or the raw features
        (PromptSRC's frozen teacher); identical for a single template.
        """
        key = (tuple(class_names), tuple(templates), normalize_each)
        if key not in self._cache:
            self._cache[key] = self._combine(key[0], key[1], normalize_each)
        return self._cache[key]

    def warm(self, class_names: Sequence[str], templates: Sequence[str],
             progress: Callable[[int, int], None] | None = None) -> None:
        """Encode and keep every (template, name) pair not kept yet (needs `keep_per_name`), calling
        `progress(done, len(templates))` after each template, so a long class list can show how far
        it is; later requests for these names and templates only combine kept features."""
        if not self.keep_per_name:
            raise ValueError("warm keeps features per (template, name): build with keep_per_name=True")
        for done, template in enumerate(templates, start=1):
            self._raw(tuple(class_names), template)
            if progress is not None:
                progress(done, len(templates))

    @torch.no_grad()
    def _combine(self, class_names: tuple[str, ...], templates: tuple[str, ...], normalize_each: bool) -> Tensor:
        """(C, D) normalised mean over templates of the raw or the normalised features."""
        per_template = []
        for template in templates:
            features = self._raw(class_names, template)
            per_template.append(F.normalize(features, dim=-1) if normalize_each else features)
        return F.normalize(torch.stack(per_template).mean(0), dim=-1)

    @torch.no_grad()
    def _raw(self, class_names: tuple[str, ...], template: str) -> Tensor:
        """(C, D) features of `template` filled with each name, from the kept pairs where possible."""
        if not self.keep_per_name:
            return self._encode(class_names, template)
        missing = [name for name in dict.fromkeys(class_names) if (template, name) not in self._pairs]
        if missing:
            self._pairs.update({(template, name): row for name, row in zip(missing, self._encode(missing, template))})
        return torch.stack([self._pairs[(template, name)] for name in class_names])

    def _encode(self, class_names: Sequence[str], template: str) -> Tensor:
        """(C, D) raw features, in batches of `batch_size` sequences (the prompt prefix shared).

        Constant features: computed with autocast off, so they are in the model's own precision
        (float32 for CLIP) even when first asked for inside a mixed-precision training step."""
        device = self.model.token_embedding.weight.device
        ids = self._filler.fill(template, class_names)
        order = ids.argmax(dim=-1).argsort(stable=True)  # by length ([EOT], the largest id, ends each)
        projection = self.model.text_projection
        features = projection.new_empty(len(class_names), projection.shape[-1])
        with torch.autocast(device.type, enabled=False):
            for start in range(0, len(ids), self.batch_size):
                rows = order[start : start + self.batch_size]
                features[rows.to(device)] = encode_text_prompted(self.model, ids[rows].to(device))  # trims padding
                self.encoder_calls += 1
        return features
