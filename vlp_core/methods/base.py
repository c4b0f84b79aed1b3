"""The interface every method offers to the trainer, the evaluation, the notebooks and the app.

A method owns its learned tensors (an `nn.Module` whose parameters are exactly what is trained) and
holds a reference to a frozen CLIP that it never registers as a submodule, so `parameters()`,
`state_dict()` and the optimiser only ever see learned tensors.

Every method declares, as class attributes, its `name` (the CLI's), `title` (the app's), `order` (its
place in lists), `config_class` (its options, a dataclass with the paper defaults) and whether it is
`trainable`; `@register` (`vlp_core.methods.registry`) adds the class to the one list of methods.
A method that can show what it looks at in one image declares it by inheriting `Explainable`
(DiSa and GalLoP); callers ask `isinstance(method, Explainable)`, never probe for the methods.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar, Iterable, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vlp_core.backbone import ClipBundle, FrozenTextFeatures
from vlp_core.backbone.prompted import patch_tokens
from vlp_core.methods.draws import Generators
from vlp_core.methods.ood import mcm

Features = Tensor | tuple[Tensor, ...]  # one (N, D) tensor, or several (GalLoP: global and local)


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


def kl_rows(p_logits: Tensor, q_logits: Tensor) -> Tensor:
    """Row-wise KL(softmax(p) ‖ softmax(q)) from logits (B, C) -> (B,)."""
    log_p, log_q = F.log_softmax(p_logits, dim=-1), F.log_softmax(q_logits, dim=-1)
    return (log_p.exp() * (log_p - log_q)).sum(-1)


def readable(class_name: str) -> str:
    """The class name every method tokenises: underscores become spaces (CoOp's practice)."""
    return class_name.replace("_", " ")


class PromptMethod(nn.Module, ABC):
    """Base class: frozen CLIP + learned tensors + the class names currently in use.

    Required: `loss`, `logits`, `text_features`, `image_features`. Optional, with defaults here:
    `prepare_training` with `training_constants` / `load_training_constants`, `on_epoch_end`,
    `head_logits` (several heads), `ood_scores` (more scores), `check_batch_split`,
    `text_contexts` (learned context vectors to read as words). Capability: `Explainable`.
    Shapes: B images, C classes, D joint embedding size.
    """

    name: ClassVar[str]
    title: ClassVar[str]
    order: ClassVar[int]
    config_class: ClassVar[type]
    trainable: ClassVar[bool] = True

    def __init__(self, clip: ClipBundle, frozen_text: FrozenTextFeatures | None = None):
        super().__init__()
        self.clip = clip  # a plain attribute, not a submodule: never trained, never saved
        self.frozen_text = frozen_text or FrozenTextFeatures(clip.model, clip.tokenizer)
        self.class_names: list[str] = []
        self.generator = torch.Generator()  # the method's own random draws in training (CPU)
        self._image_seeds: list[int] | None = None  # inside `drawing_per_image`
        self._image_generators: list[torch.Generator] | None = None
        self._stem: tuple | None = None  # (images, their version, autocast state, their stem tokens)

    @classmethod
    def evaluated_checkpoint(cls, config: Any, epochs: int) -> str | None:
        """Which learned tensors a run of `epochs` epochs with `config` is scored with, in words:
        "last epoch" (those of its last epoch), or None for a method that does not train."""
        return "last epoch" if cls.trainable else None

    @property
    def device(self) -> torch.device:
        return self.clip.model.logit_scale.device

    @property
    def logit_scale(self) -> Tensor:
        """s = exp(logit_scale) of the frozen CLIP (100 for OpenAI weights), a constant."""
        return self.clip.model.logit_scale.exp().detach()

    def set_classes(self, class_names: Iterable[str]) -> None:
        """Switch the class list (e.g. base -> novel) without touching the learned tensors.

        Names are kept `readable` (underscores as spaces), the form every method tokenises.
        """
        self.class_names = [readable(name) for name in class_names]

    def reseed(self, seed: int) -> None:
        """Seed the method's own training draws (masks, prompt dropout), used outside
        `drawing_per_image`."""
        self.generator.manual_seed(seed)

    @contextmanager
    def drawing_per_image(self, seeds: Sequence[int]) -> Iterator[None]:
        """Within: the training draws of image b of the batch come from a generator seeded with
        `seeds[b]` instead of the method's own generator. The trainer wraps every step in it with
        seeds of (run seed, epoch, image), so a run's draws do not depend on how its batches are
        split over processes."""
        self._image_seeds, self._image_generators = [int(s) for s in seeds], None
        try:
            yield
        finally:
            self._image_seeds = self._image_generators = None

    def step_generators(self) -> Generators:
        """Where this step's draws come from: the method's generator (one draw for the whole batch),
        or inside `drawing_per_image` one generator per image, created once per step."""
        if self._image_seeds is None:
            return self.generator
        if self._image_generators is None:
            self._image_generators = [torch.Generator().manual_seed(seed) for seed in self._image_seeds]
        return self._image_generators

    def image_tokens(self, images: Tensor) -> Tensor | None:
        """The frozen stem's tokens of `images` (B, 3, S, S) -> (B, 1 + P, Dv) (`patch_tokens`),
        computed once per batch: a training step passes the same images through the image tower two
        or three times (prompted, frozen, masked) and everything before the prompts is frozen, so the
        passes share one run of the stem. None (each pass runs the stem) when the pixels need
        gradients, as attributions do, or are inference tensors (no version counter to check)."""
        if images.requires_grad or images.is_inference():
            return None
        device = images.device.type
        autocast = (torch.is_autocast_enabled(device), torch.get_autocast_dtype(device))
        if self._stem is None or self._stem[0] is not images or self._stem[1:3] != (images._version, autocast):
            with torch.no_grad():
                self._stem = (images, images._version, autocast, patch_tokens(self.clip.model.visual, images))
        return self._stem[3]

    def prepare_training(self, images_by_batch: Iterable[tuple[Tensor, Tensor]]) -> None:
        """Called once before training with (images, labels) batches of the training split
        (test transform), outside autocast; methods compute their per-run constants here (the
        frozen text teacher, class prototypes), in the model's own precision."""

    def training_constants(self) -> dict[str, Tensor]:
        """The per-run constants `prepare_training` computed, by name (none here): one process of a
        distributed run computes them and hands them to the others (`load_training_constants`)."""
        return {}

    def load_training_constants(self, constants: dict[str, Tensor]) -> None:
        """Take the constants another process computed (`training_constants`) instead of
        `prepare_training`, for the current class list."""

    def check_batch_split(self) -> None:
        """Raise a ValueError when the loss is not a mean over the batch's images (plus terms that
        do not depend on them): only such a loss, split over processes and weighted by each one's
        share of the batch, adds up to the one-process loss."""

    def on_epoch_end(self, epoch: int, num_epochs: int) -> None:
        """Called after each training epoch (0-based); e.g. Gaussian prompt aggregation."""

    @abstractmethod
    def loss(self, images: Tensor, labels: Tensor) -> dict[str, Tensor]:
        """Named loss terms for a batch, plus their weighted sum under "total". images (B, 3, S, S)."""

    @abstractmethod
    def logits(self, images: Tensor) -> Tensor:
        """Scaled class logits for the current class list -> (B, C)."""

    @abstractmethod
    def text_features(self) -> Features:
        """Normalised text features of the current classes: (C, D), or a tuple of such per head."""

    @abstractmethod
    def image_features(self, images: Tensor) -> Features:
        """Normalised image features of images (B, 3, S, S): (B, D), or a tuple of such per head."""

    def head_logits(self, images: Tensor) -> dict[str, Tensor]:
        """Logits (B, C) of each head; "combined" is the method's prediction (= `logits`).
        A single-head method has only "combined"; GalLoP adds "global" and "local"."""
        return {"combined": self.logits(images)}

    def ood_scores(self, images: Tensor) -> dict[str, Tensor]:
        """ID-ness scores (B,) by name (higher = in-distribution); here MCM on the cosines."""
        return {"mcm": mcm(self.logits(images) / self.logit_scale)}

    def text_contexts(self) -> dict[str, Tensor]:
        """The learned context vectors that stand in for words at the text encoder's input, by name
        -> each (n_ctx, Dt) (none here). CoOp's interpretation reads each as its nearest words in
        the vocabulary (`vlp_core.methods.interpret.nearest_words`); deeper layers' prompts are not
        in the token-embedding space and are not listed."""
        return {}

    def trainable_state_dict(self) -> dict[str, Tensor]:
        """Only the learned tensors, detached, for checkpoints."""
        return {k: v.detach().clone() for k, v in self.state_dict().items()}

    def load_trainable_state_dict(self, state: dict[str, Tensor]) -> None:
        self.load_state_dict(state, strict=True)


class ExplainCache(ABC):
    """One image encoded once by an `Explainable` method against its current class list, so that
    repeated explanations (a slider's moves) run no text pass and at most the image passes their
    settings change. C classes."""

    @property
    @abstractmethod
    def probabilities(self) -> Tensor:
        """(C,) the method's class probabilities on the full image."""

    @abstractmethod
    def explain(self, class_index: int | None = None, *settings) -> dict:
        """What the method looks at for class `class_index`, under the method's own settings
        (DiSa: mask ratio, pool and seed; GalLoP: top-k per local prompt)."""

    @abstractmethod
    def zero_shot_vs_learned(self, class_index: int) -> dict:
        """What prompt learning changed in the method's patch map of one class: "zero_shot" (P,)
        the map frozen CLIP gives, "learned" (P,) the map with the learned prompts, "difference"
        (P,) learned - zero_shot, and "values", what the maps hold ("saliency" or "cosine")."""


class Explainable(ABC):
    """Capability: the method explains its prediction on one image (its patch maps for a class).

    Declared by inheritance, e.g. `class DiSa(PromptSRC, Explainable)`."""

    @abstractmethod
    def explain_cache(self, image: Tensor) -> ExplainCache:
        """Encode one image (1, 3, S, S) once against the current class list, for repeated `explain` calls."""
