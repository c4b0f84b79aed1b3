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
    the templates with as many tokens before the name run together: one encoder pass per
    `batch_size` sequences of (template, name) pairs, names sorted by token count (so a pass pads
    little), each template's words before the name run once per pass (shared prefixes).

    batch_size: sequences per encoder pass (passes whose activations fit the processor's caches: on the
    CPU 500 names x 60 templates took 2.2 s at 512 sequences a pass against 2.6-3.2 s at 2048,
    synth-clip, 2 cores).
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
        `progress(done, len(templates))` after each group of templates encoded together, so a long
        class list can show how far it is; later requests for these names and templates only
        combine kept features."""
        if not self.keep_per_name:
            raise ValueError("warm keeps features per (template, name): build with keep_per_name=True")
        names, done = list(dict.fromkeys(class_names)), 0
        for group in self._groups(templates):
            missing = [name for name in names if any((template, name) not in self._pairs for template in group)]
            if missing:
                for template, features in zip(group, self._encode(missing, group)):
                    self._pairs.update(zip(((template, name) for name in missing), features))
            done += len(group)
            if progress is not None:
                progress(done, len(templates))

    @torch.no_grad()
    def _combine(self, class_names: tuple[str, ...], templates: tuple[str, ...], normalize_each: bool) -> Tensor:
        """(C, D) normalised mean over templates of the raw or the normalised features."""
        raw = self._raw(class_names, templates)  # (T, C, D)
        return F.normalize((F.normalize(raw, dim=-1) if normalize_each else raw).mean(0), dim=-1)

    @torch.no_grad()
    def _raw(self, class_names: tuple[str, ...], templates: tuple[str, ...]) -> Tensor:
        """(T, C, D) features of each template filled with each name, from the kept pairs where possible."""
        if self.keep_per_name:
            self.warm(class_names, templates)
            return torch.stack([torch.stack([self._pairs[(template, name)] for name in class_names])
                                for template in templates])
        encoded = {}
        for group in self._groups(templates):
            encoded.update(zip(group, self._encode(class_names, group)))
        return torch.stack([encoded[template] for template in templates])

    def _groups(self, templates: Sequence[str]) -> list[list[str]]:
        """The distinct templates, grouped by how many tokens come before the name (so each group's
        prefixes are of one length and run as one batch), in order of first appearance."""
        groups: dict[int, list[str]] = {}
        for template in dict.fromkeys(templates):
            groups.setdefault(self._filler.head_length(template), []).append(template)
        return list(groups.values())

    def _encode(self, class_names: Sequence[str], templates: Sequence[str]) -> Tensor:
        """(M, C, D) raw features of M templates x C names, in passes of about `batch_size`
        sequences (each template's prefix shared by its names).

        Constant features: computed with autocast off, so they are in the model's own precision
        (float32 for CLIP) even when first asked for inside a mixed-precision training step."""
        device = self.model.token_embedding.weight.device
        ids = torch.stack([self._filler.fill(template, class_names) for template in templates], dim=1)  # (C, M, L)
        order = ids[:, 0].argmax(dim=-1).argsort(stable=True)  # by length ([EOT], the largest id, ends each)
        projection = self.model.text_projection
        features = projection.new_empty(len(class_names), len(templates), projection.shape[-1])
        names_per_pass = max(1, self.batch_size // len(templates))
        with torch.autocast(device.type, enabled=False):
            for start in range(0, len(ids), names_per_pass):
                rows = order[start : start + names_per_pass]
                encoded = encode_text_prompted(self.model, ids[rows].to(device), all_pairs=True)  # trims padding
                features[rows.to(device)] = encoded.unflatten(0, (len(rows), len(templates)))
                self.encoder_calls += 1
        return features.transpose(0, 1)
