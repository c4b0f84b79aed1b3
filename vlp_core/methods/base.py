"""The small interface every method offers to the trainer, the evaluation, the notebooks and the app.

A method owns its learned tensors (an `nn.Module` whose parameters are exactly what is trained) and
holds a reference to a frozen CLIP that it never registers as a submodule, so `parameters()`,
`state_dict()` and the optimiser only ever see learned tensors.
"""

from __future__ import annotations

from typing import Iterable

import torch
from torch import Tensor, nn

from vlp_core.backbone import ClipBundle, FrozenTextFeatures


class PromptMethod(nn.Module):
    """Base class: frozen CLIP + learned tensors + the class names currently in use.

    Subclasses implement `loss`, `logits` and may override `prepare_training`, `on_epoch_end`,
    `explain`. Shapes: B images, C classes, D joint embedding size.
    """

    name = "base"

    def __init__(self, clip: ClipBundle, frozen_text: FrozenTextFeatures | None = None):
        super().__init__()
        self.clip = clip  # a plain attribute, not a submodule: never trained, never saved
        self.frozen_text = frozen_text or FrozenTextFeatures(clip.model, clip.tokenizer)
        self.class_names: list[str] = []
        self.generator = torch.Generator()  # the method's own random draws in training (CPU)

    @property
    def device(self) -> torch.device:
        return self.clip.model.logit_scale.device

    @property
    def logit_scale(self) -> Tensor:
        """s = exp(logit_scale) of the frozen CLIP (100 for OpenAI weights), a constant."""
        return self.clip.model.logit_scale.exp().detach()

    def set_classes(self, class_names: Iterable[str]) -> None:
        """Switch the class list (e.g. base -> novel) without touching the learned tensors."""
        self.class_names = list(class_names)

    def reseed(self, seed: int) -> None:
        """Seed the method's training draws (masks, prompt dropout). The trainer calls it at the start
        of every epoch, so a run resumed at an epoch boundary repeats the uninterrupted run's draws."""
        self.generator.manual_seed(seed)

    def prepare_training(self, images_by_batch: Iterable[tuple[Tensor, Tensor]]) -> None:
        """Called once before training with (images, labels) batches of the training split
        (test transform); methods that need per-run constants (prototypes) compute them here."""

    def on_epoch_end(self, epoch: int, num_epochs: int) -> None:
        """Called after each training epoch (0-based); e.g. Gaussian prompt aggregation."""

    def loss(self, images: Tensor, labels: Tensor) -> dict[str, Tensor]:
        """Named loss terms for a batch, plus their weighted sum under "total". images (B, 3, S, S)."""
        raise NotImplementedError

    def logits(self, images: Tensor) -> Tensor:
        """Scaled class logits for the current class list -> (B, C)."""
        raise NotImplementedError

    def trainable_state_dict(self) -> dict[str, Tensor]:
        """Only the learned tensors, detached, for checkpoints."""
        return {k: v.detach().clone() for k, v in self.state_dict().items()}

    def load_trainable_state_dict(self, state: dict[str, Tensor]) -> None:
        self.load_state_dict(state, strict=True)
