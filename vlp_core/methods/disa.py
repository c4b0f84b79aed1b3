"""DiSa (Alipour Talemi et al., KDD 2025): PromptSRC + L_CIR + λ·L_DiR (docs/methods.md says which parts
the paper states and which are this project's reconstruction, each an option).

L_CIR, cross-interactive regularisation with saliency-aware masking:
    q_a = softmax(s · f̂_p(x_masked) ĝ_oᵀ)   prompted image encoder on the masked image, frozen text
    q_b = softmax(s · f̂_o(x) ĝ_pᵀ)          frozen image encoder on the full image, prompted text
    cir = KL(q_a ‖ q_b), batch mean, gradients through both sides.
The mask: saliency a = softmax_p(cos(P̂_o, ĝ_o[y]) / τ) from the frozen patch embeddings of the
step's single frozen image pass; M = round(ρ·P) patches drawn at random among the round(γ·P) least
salient with the method's generator (seeded by `seed`; in training, one generator per image, seeded by
the run's seed, the epoch and the image). CLS and prompt tokens are never masked; inference uses the
full image.
L_DiR, directional regularisation: dir = mean_b (1 − cos(f_p(x_b), μ_{y_b})), with class
prototypes μ_c = normalize(mean normalize(f_o)) computed once in `prepare_training`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from vlp_core.backbone import ClipBundle, FrozenTextFeatures, encode_image_prompted
from vlp_core.choices import check_choice
from vlp_core.methods.base import Explainable, ExplainCache, Step, kl_rows
from vlp_core.methods.promptsrc import PromptSRC, PromptSRCConfig
from vlp_core.methods.registry import register
from vlp_core.methods.saliency import blank_patches, mask_sizes, patch_saliency, saliency_mask

CirDirection = Literal["a||b", "b||a", "symmetric"]
CirReduction = Literal["batchmean", "mean", "sum"]
DirLoss = Literal["cosine", "mse", "l1"]
MaskMode = Literal["drop_tokens", "zero_pixels"]


@dataclass
class DiSaConfig(PromptSRCConfig):
    use_cir: bool = True
    cir_weight: float = 1.0
    cir_direction: CirDirection = "a||b"  # KL(q_a‖q_b); "symmetric" is the mean of both directions
    cir_use_mask: bool = True  # False: q_a from the full image
    cir_reduction: CirReduction = "batchmean"  # Σ/B; "mean": Σ/(B·C) (PromptSRC's); "sum": Σ
    mask_ratio: float = 0.3  # ρ, fraction of patches masked
    mask_pool: float = 0.5  # γ, fraction of least-salient patches the mask is drawn from (>= ρ)
    mask_mode: MaskMode = "drop_tokens"  # drop the patch tokens, or blank the pixels (mean colour)
    saliency_tau: float = 0.01  # τ_s
    use_dir: bool = True
    dir_weight: float = 1.0  # λ
    dir_loss: DirLoss = "cosine"


def cir_kl(logits_a: Tensor, logits_b: Tensor, direction: CirDirection = "a||b",
           reduction: CirReduction = "batchmean") -> Tensor:
    """KL between softmax(logits_a) and softmax(logits_b), both (B, C) -> scalar.

    direction: "a||b" KL(q_a‖q_b), "b||a" KL(q_b‖q_a), "symmetric" their mean.
    reduction over the B row-wise values: "batchmean" Σ/B, "mean" Σ/(B·C), "sum" Σ.
    """
    check_choice("cir_direction", direction, CirDirection)
    check_choice("cir_reduction", reduction, CirReduction)
    if direction == "a||b":
        rows = kl_rows(logits_a, logits_b)
    elif direction == "b||a":
        rows = kl_rows(logits_b, logits_a)
    else:
        rows = 0.5 * (kl_rows(logits_a, logits_b) + kl_rows(logits_b, logits_a))
    divisor = {"batchmean": rows.shape[0], "mean": logits_a.numel(), "sum": 1}[reduction]
    return rows.sum() / divisor


def directional_loss(features: Tensor, targets: Tensor, mode: DirLoss = "cosine") -> Tensor:
    """Alignment of features (B, D) with their class prototypes targets (B, D) -> scalar.

    "cosine": mean_b (1 − cos); "mse" / "l1": mean squared / absolute difference of the normalised
    features over all B·D elements (PromptSRC's distance form; for unit vectors mse = 2(1 − cos)/D).
    """
    check_choice("dir_loss", mode, DirLoss)
    unit = F.normalize(features, dim=-1)
    if mode == "cosine":
        return (1.0 - F.cosine_similarity(unit, targets, dim=-1)).mean()
    return F.mse_loss(unit, targets) if mode == "mse" else F.l1_loss(unit, targets)


def class_prototypes(features: Tensor, labels: Tensor, num_classes: int) -> Tensor:
    """μ_c = normalize(mean over class c of normalize(features)). features (N, D), labels (N,) -> (C, D)."""
    if labels.numel() and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"labels must lie in 0..{num_classes - 1}")
    counts = torch.bincount(labels, minlength=num_classes)
    if (counts == 0).any():
        missing = (counts == 0).nonzero().flatten().tolist()
        raise ValueError(f"every class needs >= 1 training image for its prototype; none for classes {missing}")
    unit = F.normalize(features, dim=-1)
    sums = torch.zeros(num_classes, unit.shape[1], dtype=unit.dtype, device=unit.device).index_add_(0, labels, unit)
    return F.normalize(sums / counts[:, None], dim=-1)


@register
class DiSa(PromptSRC, Explainable):
    """PromptSRC + L_CIR + λ·L_DiR. Loss terms: ce, sr_text, sr_image, sr_logits, cir, dir (each
    weighted, absent when switched off) and total = their sum."""

    name = "disa"
    title = "DiSa"
    order = 40
    config_class = DiSaConfig

    def __init__(self, clip: ClipBundle, config: DiSaConfig | None = None,
                 frozen_text: FrozenTextFeatures | None = None):
        super().__init__(clip, config if config is not None else DiSaConfig(), frozen_text)
        config = self.config
        mask_sizes(1, config.mask_ratio, config.mask_pool)  # validates ratio and pool now
        for name, options in (("cir_direction", CirDirection), ("cir_reduction", CirReduction),
                              ("dir_loss", DirLoss), ("mask_mode", MaskMode)):
            check_choice(name, getattr(config, name), options)
        self.reseed(config.seed)  # masks come from `self.generator` (the trainer draws them per image)
        self.prototypes: Tensor | None = None  # (C, D), a per-run constant: not learned, not saved
        self._prototype_classes: tuple[str, ...] = ()

    def _uses_teacher(self) -> bool:
        return super()._uses_teacher() or self.config.use_cir  # CIR's q_a and its saliency query read ĝ_o

    def prepare_training(self, images_by_batch: Iterable[tuple[Tensor, Tensor]]) -> None:
        """The teacher ĝ_o (PromptSRC's), then the class prototypes from one frozen image pass over the
        training split (only with `use_dir`), outside autocast, in the model's precision."""
        super().prepare_training(images_by_batch)
        if not self.config.use_dir:
            return
        features, labels = [], []
        with torch.no_grad(), torch.autocast(self.device.type, enabled=False):
            for images, batch_labels in images_by_batch:
                features.append(self.clip.model.encode_image(images.to(self.device)))
                labels.append(batch_labels.to(self.device))
        self.prototypes = class_prototypes(torch.cat(features), torch.cat(labels), len(self.class_names))
        self._prototype_classes = tuple(self.class_names)

    def training_constants(self) -> dict[str, Tensor]:
        constants = super().training_constants()
        if self.config.use_dir:
            constants["prototypes"] = self._class_prototypes()
        return constants

    def load_training_constants(self, constants: dict[str, Tensor]) -> None:
        super().load_training_constants(constants)
        if "prototypes" in constants:
            self.prototypes, self._prototype_classes = constants["prototypes"], tuple(self.class_names)

    def check_batch_split(self) -> None:
        if self.config.use_cir and self.config.cir_reduction == "sum":
            raise ValueError("disa.cir_reduction=sum adds the KL terms of the batch's images, so it cannot be split "
                             "over processes: use batchmean (the default) or mean, or train on one process")

    def _frozen_pass(self) -> tuple[bool, bool]:
        needed, patches = super()._frozen_pass()
        config = self.config
        return needed or config.use_cir, patches or (config.use_cir and config.cir_use_mask)

    def _loss_terms(self, step: Step) -> dict[str, Tensor]:
        terms = super()._loss_terms(step)
        config = self.config
        if config.use_cir:
            terms["cir"] = config.cir_weight * self._cir(step)
        if config.use_dir:
            terms["dir"] = config.dir_weight * directional_loss(
                step.image, self._class_prototypes()[step.labels], config.dir_loss)
        return terms

    def _class_prototypes(self) -> Tensor:
        if self.prototypes is None:
            raise RuntimeError("DiSa's prototypes are missing: call prepare_training(train_batches) before loss()")
        if self._prototype_classes != tuple(self.class_names):
            raise RuntimeError("the prototypes were computed for another class list; "
                               "call prepare_training again after set_classes")
        return self.prototypes

    def _cir(self, step: Step) -> Tensor:
        """KL between q_a (prompted masked image × frozen text) and q_b (frozen image × prompted text)."""
        config, teacher = self.config, self.teacher_text
        image_a = step.image
        if config.cir_use_mask:
            saliency = patch_saliency(step.frozen_patches, teacher[step.labels], config.saliency_tau)
            masked = saliency_mask(saliency, config.mask_ratio, config.mask_pool, self.step_generators())
            image_a = self.masked_image_features(step.images, masked, prompted=True)
        logits_a = self.logit_scale * image_a @ teacher.T
        logits_b = self.logit_scale * step.frozen_image @ step.text.T
        return cir_kl(logits_a, logits_b, config.cir_direction, config.cir_reduction)

    def masked_image_features(self, images: Tensor, masked: Tensor, prompted: bool) -> Tensor:
        """images (B, 3, S, S) without the (B, M) patches `masked`, per `mask_mode` -> (B, D) normalised.

        prompted: the learned image encoder f_p (with gradients), else frozen CLIP (no gradients).
        """
        drop = masked
        if self.config.mask_mode == "zero_pixels":
            images = blank_patches(images, masked, self.clip.model.visual.patch_size[0])
            drop = None
        if prompted:
            return self.image_features(images, drop)
        with torch.no_grad():
            frozen = encode_image_prompted(self.clip.model, images, drop=drop, tokens=self.image_tokens(images))
            return F.normalize(frozen.pooled, dim=-1)

    @torch.no_grad()
    def explain_cache(self, image: Tensor) -> "DiSaExplainCache":
        """Encode one image (1, 3, S, S) once for repeated `explain` calls (e.g. slider moves)."""
        if image.shape[0] != 1:
            raise ValueError(f"explain takes one image (1, 3, S, S), got {tuple(image.shape)}")
        scale, image = self.logit_scale, image.to(self.device)
        teacher, text, tokens = self.teacher_text, self.text_features(), self.image_tokens(image)
        frozen = encode_image_prompted(self.clip.model, image, patches=True, tokens=tokens)
        prompted = encode_image_prompted(self.clip.model, image, self.vision_ctx, self.vision_deep, patches=True,
                                         tokens=tokens)
        return DiSaExplainCache(
            method=self, image=image, frozen_patches=frozen.patches, prompted_patches=prompted.patches, text=text,
            teacher=teacher,
            prompted_full=torch.softmax(scale * F.normalize(prompted.pooled, dim=-1) @ text.T, dim=-1)[0],
            frozen_full=torch.softmax(scale * F.normalize(frozen.pooled, dim=-1) @ teacher.T, dim=-1)[0])

    def explain(self, image: Tensor, class_index: int | None = None, ratio: float | None = None,
                pool: float | None = None, seed: int = 0) -> dict:
        """What DiSa's masking sees for one image (1, 3, S, S); see `DiSaExplainCache.explain`."""
        return self.explain_cache(image).explain(class_index, ratio, pool, seed)


@dataclass
class DiSaExplainCache(ExplainCache):
    """One image's frozen patch embeddings, text features and full-image predictions, so a new
    class, ratio, pool or seed only re-draws the mask and runs the two masked image forwards."""

    method: DiSa
    image: Tensor  # (1, 3, S, S)
    frozen_patches: Tensor  # (1, P, D), the saliency keys
    prompted_patches: Tensor  # (1, P, D), the same from DiSa's prompted image tower
    text: Tensor  # (C, D) ĝ_p
    teacher: Tensor  # (C, D) ĝ_o, the saliency queries
    prompted_full: Tensor  # (C,) softmax(s f̂_p ĝ_pᵀ)
    frozen_full: Tensor  # (C,) softmax(s f̂_o ĝ_oᵀ)

    @property
    def probabilities(self) -> Tensor:
        """(C,) DiSa's prediction on the full image, softmax(s f̂_p ĝ_pᵀ)."""
        return self.prompted_full

    def zero_shot_vs_learned(self, class_index: int) -> dict:
        """The saliency of class `class_index` as DiSa's mask reads it, from frozen CLIP (frozen
        patch embeddings × the frozen ensemble ĝ_o), and as the learned prompts would give it
        (prompted patch embeddings × the prompted text ĝ_p), both softmax_p(cos / τ): "zero_shot"
        and "learned" (P,) summing to 1, "difference" (P,) learned - zero_shot summing to 0."""
        tau = self.method.config.saliency_tau
        zero_shot = patch_saliency(self.frozen_patches, self.teacher[[class_index]], tau)[0]
        learned = patch_saliency(self.prompted_patches, self.text[[class_index]], tau)[0]
        return {"zero_shot": zero_shot, "learned": learned, "difference": learned - zero_shot, "values": "saliency"}

    @torch.no_grad()
    def explain(self, class_index: int | None = None, ratio: float | None = None,
                pool: float | None = None, seed: int = 0) -> dict:
        """Saliency, mask and predictions; ratio / pool default to the method's config.

        The saliency query is ĝ_o of `class_index`, or of the class the prompted model predicts.
        Returns: "saliency" (P,), "masked" (M,) patch indices, "grid" (patches per side),
        "class_index", and (C,) class probabilities "prompted_full", "prompted_masked" (f̂_p with
        ĝ_p) and "frozen_full", "frozen_masked" (f̂_o with the ensemble ĝ_o).
        """
        method, config = self.method, self.method.config
        if class_index is None:
            class_index = int(self.prompted_full.argmax())
        saliency = patch_saliency(self.frozen_patches, self.teacher[[class_index]], config.saliency_tau)
        generator = torch.Generator().manual_seed(seed)
        masked = saliency_mask(saliency, config.mask_ratio if ratio is None else ratio,
                               config.mask_pool if pool is None else pool, generator)
        scale = method.logit_scale
        prompted = method.masked_image_features(self.image, masked, prompted=True)
        frozen = method.masked_image_features(self.image, masked, prompted=False)
        return {
            "saliency": saliency[0],
            "masked": masked[0],
            "grid": int(round(saliency.shape[1] ** 0.5)),
            "class_index": class_index,
            "prompted_full": self.prompted_full,
            "prompted_masked": torch.softmax(scale * prompted @ self.text.T, dim=-1)[0],
            "frozen_full": self.frozen_full,
            "frozen_masked": torch.softmax(scale * frozen @ self.teacher.T, dim=-1)[0],
        }
