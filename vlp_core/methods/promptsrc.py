"""PromptSRC (Khattak et al., ICCV 2023): IVLP + self-regularisation toward frozen CLIP + GPA.

L_SR (PromptSRC's L_SCL), on normalised features:
    sr_text   = 25 · mean|ĝ_p − ĝ_o|        (C·D elements)
    sr_image  = 10 · mean|f̂_p − f̂_o|        (B·D elements)
    sr_logits = Σ KL(softmax(s f̂_o ĝ_oᵀ) ‖ softmax(s f̂_p ĝ_pᵀ)) / (B·C)
The last is PromptSRC's `F.kl_div(log_softmax(prompted), log_softmax(frozen), reduction="sum",
log_target=True) / prompted_logits.numel()`: the row-wise KL summed over the batch and divided by
B·C (not a batch mean). f_o comes from one frozen image pass per step (no grad); g_o is the frozen
text ensemble over the 60 ImageNet templates, computed once per class list.

Gaussian prompt aggregation (GPA): after epoch e (1-based) the prompts are added to a running
aggregate with weight w_e ∝ N(e; μ, σ²), normalised over e = 1..N; training itself continues from
the current (not the aggregated) prompts, and after the last epoch the prompts are replaced by the
aggregate, which is what is evaluated and saved. PromptSRC does not rescale μ, σ with the number of
epochs; it sets them per protocol: μ=15, σ=1 (base-to-novel, 20 epochs), μ=6, σ=10 (cross-dataset,
20 epochs, depth 3), μ=30, σ=30 or μ=45, σ=5 (few-shot, 50 epochs, per dataset). With fewer epochs
than μ, the weight concentrates on the last epochs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import torch
import torch.nn.functional as F
from torch import Tensor

from vlp_core.backbone import ClipBundle, FrozenTextFeatures, encode_image_prompted
from vlp_core.methods.base import Step, kl_rows
from vlp_core.methods.ivlp import IVLP, IVLPConfig
from vlp_core.methods.registry import register
from vlp_core.methods.templates import IMAGENET_TEMPLATES


@dataclass
class PromptSRCConfig(IVLPConfig):
    use_sr: bool = True  # the three self-regularisation terms
    sr_text_weight: float = 25.0
    sr_image_weight: float = 10.0
    sr_logits_weight: float = 1.0
    gpa: bool = True  # Gaussian prompt aggregation over epochs
    gpa_mean: float = 15.0  # μ, in 1-based epochs
    gpa_std: float = 1.0  # σ, in epochs


def sr_logits_kl(prompted_logits: Tensor, frozen_logits: Tensor) -> Tensor:
    """PromptSRC's logit term: Σ_b KL(softmax(frozen_b) ‖ softmax(prompted_b)) / (B·C). (B, C) each."""
    return kl_rows(frozen_logits, prompted_logits).sum() / prompted_logits.numel()


def gaussian_epoch_weights(num_epochs: int, mean: float, std: float) -> Tensor:
    """GPA weights of epochs 1..N: N(e; mean, std²) normalised to sum 1 -> (N,) float64.

    Computed as a softmax of the Gaussian log-density, so far-off μ never underflows to 0/0.
    """
    epochs = torch.arange(1, num_epochs + 1, dtype=torch.float64)
    return torch.softmax(-0.5 * ((epochs - mean) / std) ** 2, dim=0)


@register
class PromptSRC(IVLP):
    """IVLP + L_SR + GPA. Loss terms: ce, sr_text, sr_image, sr_logits (absent when `use_sr` is off).

    With `gpa`, buffers `gpa_<parameter>` hold the running aggregate (saved with the prompts, so a
    resumed run continues it).
    """

    name = "promptsrc"
    title = "PromptSRC"
    order = 30
    config_class = PromptSRCConfig

    def __init__(self, clip: ClipBundle, config: PromptSRCConfig | None = None,
                 frozen_text: FrozenTextFeatures | None = None):
        super().__init__(clip, config if config is not None else PromptSRCConfig(), frozen_text)
        if self.config.gpa:
            for name, parameter in list(self.named_parameters()):
                self.register_buffer(f"gpa_{name}", torch.zeros_like(parameter))
        self._given_teacher: tuple[tuple[str, ...], Tensor] | None = None  # (classes, ĝ_o) from another process

    @classmethod
    def evaluated_checkpoint(cls, config: PromptSRCConfig, epochs: int) -> str | None:
        """With GPA, the Gaussian-weighted aggregate of every epoch's prompts, which replaces the last
        epoch's after training."""
        return f"GPA aggregate of epochs 1-{epochs}" if config.gpa else super().evaluated_checkpoint(config, epochs)

    @property
    def teacher_text(self) -> Tensor:
        """(C, D) ĝ_o: the frozen 60-template text ensemble of the current classes (cached), averaged
        over raw features and then normalised, as PromptSRC's teacher is. Computed outside autocast,
        in the model's precision, wherever it is first asked for (or given by
        `load_training_constants`)."""
        if self._given_teacher is not None and self._given_teacher[0] == tuple(self.class_names):
            return self._given_teacher[1]
        return self.frozen_text(self.class_names, IMAGENET_TEMPLATES, normalize_each=False)

    def _uses_teacher(self) -> bool:
        """Whether the loss reads ĝ_o (the SR terms do)."""
        return self.config.use_sr

    def prepare_training(self, images_by_batch: Iterable[tuple[Tensor, Tensor]]) -> None:
        """Compute the constant teacher ĝ_o once, before the first (possibly autocast) step."""
        if self._uses_teacher():
            self.teacher_text

    def training_constants(self) -> dict[str, Tensor]:
        return {"teacher_text": self.teacher_text} if self._uses_teacher() else {}

    def load_training_constants(self, constants: dict[str, Tensor]) -> None:
        if "teacher_text" in constants:
            self._given_teacher = (tuple(self.class_names), constants["teacher_text"])

    def _frozen_pass(self) -> tuple[bool, bool]:
        """(whether a step needs the frozen image forward, whether it needs its patch embeddings)."""
        return self.config.use_sr, False

    def _forward(self, images: Tensor, labels: Tensor) -> Step:
        step = super()._forward(images, labels)
        needed, patches = self._frozen_pass()
        if needed:
            with torch.no_grad():
                frozen = encode_image_prompted(self.clip.model, images, patches=patches, tokens=self.image_tokens(images))
            step.frozen_image = F.normalize(frozen.pooled, dim=-1)
            step.frozen_patches = frozen.patches
        return step

    def _loss_terms(self, step: Step) -> dict[str, Tensor]:
        terms = super()._loss_terms(step)
        config = self.config
        if config.use_sr:
            teacher = self.teacher_text
            frozen_logits = self.logit_scale * step.frozen_image @ teacher.T
            terms["sr_text"] = config.sr_text_weight * F.l1_loss(step.text, teacher)
            terms["sr_image"] = config.sr_image_weight * F.l1_loss(step.image, step.frozen_image)
            terms["sr_logits"] = config.sr_logits_weight * sr_logits_kl(step.logits, frozen_logits)
        return terms

    @torch.no_grad()
    def on_epoch_end(self, epoch: int, num_epochs: int) -> None:
        """GPA: add this epoch's prompts to the aggregate; after the last epoch, load the aggregate."""
        if not self.config.gpa:
            return
        if not 0 <= epoch < num_epochs:
            raise ValueError(f"epoch {epoch} is outside 0..{num_epochs - 1}")
        weight = gaussian_epoch_weights(num_epochs, self.config.gpa_mean, self.config.gpa_std)[epoch].item()
        for name, parameter in self.named_parameters():
            aggregate = getattr(self, f"gpa_{name}")
            if epoch == 0:
                aggregate.zero_()
            aggregate.add_(parameter, alpha=weight)
            if epoch == num_epochs - 1:
                parameter.copy_(aggregate)
