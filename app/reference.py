"""How far to trust a view: the same measures on a SynthWorld suite's test images, once per suite.

For the first REFERENCE_IMAGES test images of a suite (true labels and object masks known) and of
the `ood` suite, one pass of the frozen and GalLoP image towers gives: whether DiSa's saliency for
the true class points at the object (its most salient patch touches it), GalLoP's local cosines of
the true class (how often each local prompt's top-k patches touch the object, for any k), and
GalLoP's cosines of both image sets (the ID and OOD distributions of any OOD score and
temperature). Computed when a session first uses the suite's class list (the default suite's at
start-up), kept in `AppModels.references` and shared by every user; slider moves only read it.
Shapes: N images, P patches, C classes, Mg / Ml global / local prompts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from math import comb
from typing import Sequence

import numpy as np
import torch
from torch import Tensor

from app.models import AppModels
from vlp_core.backbone import encode_image_prompted
from vlp_core.data.synthworld import get_suite, list_suites
from vlp_core.engine.metrics import patch_coverage, pointing_hits
from vlp_core.methods.gallop import gallop_ood_scores
from vlp_core.methods.ood import auroc, fpr95_point, roc_curve
from vlp_core.methods.saliency import patch_saliency
from vlp_core.methods.topk import clip_ks, topk_patch_mask

REFERENCE_IMAGES = 100  # test images of the suite, and of the OOD suite
OOD_SUITE = "ood"


@dataclass
class Reference:
    """The measures of one suite's test images (None where the suite has no object masks, or no
    OOD set: its labels are not objects)."""

    suite: str
    images: int
    coverage: Tensor | None  # (N, P) object coverage of each patch
    salient_hits: Tensor | None  # (N,) bool: DiSa's most salient patch (true-class query) touches the object
    local_maps: Tensor | None  # (N, P, Ml) GalLoP's local cosines of each image's true class
    id_sims: tuple[Tensor, Tensor] | None  # GalLoP's G (N, C, Mg) and L (N, P, C, Ml) of the suite's images
    ood_sims: tuple[Tensor, Tensor] | None  # the same for the OOD suite's images
    _scores: dict = field(default_factory=dict, repr=False)  # OOD measures, computed once per (what, score, T)

    def pointing(self) -> tuple[float, float] | None:
        """(share of images where DiSa's saliency points at the object, share a random patch hits)."""
        if self.salient_hits is None:
            return None
        return float(self.salient_hits.float().mean()), float((self.coverage > 0).float().mean())

    def touch(self, ks: Sequence[int]) -> tuple[np.ndarray, np.ndarray] | None:
        """((Ml,) share of images whose top-k_n patches of local prompt n touch the object, (Ml,)
        the same for k_n patches drawn at random), for ks (Ml,)."""
        if self.local_maps is None:
            return None
        ks = clip_ks(ks, self.local_maps.shape[-1], self.local_maps.shape[1])
        selected = topk_patch_mask(self.local_maps[:, :, None], ks)[:, :, 0]  # (N, P, Ml)
        on_object = (self.coverage > 0)[..., None]
        touched = (selected & on_object).any(dim=1).float().mean(0).numpy()
        return touched, random_touch(self.coverage, ks)

    def ood_scores(self, key: str, temperature: float) -> tuple[np.ndarray, np.ndarray] | None:
        """ID and OOD values (N,) of score `key` ("mcm", "l_mcm", "gl_mcm") at `temperature`,
        computed from the cached cosines once per (key, temperature)."""
        if self.id_sims is None:
            return None
        return self._once(("scores", key, temperature), lambda: tuple(
            gallop_ood_scores(*sims, temperature)[key].numpy() for sims in (self.id_sims, self.ood_sims)))

    def auroc(self, key: str, temperature: float) -> float:
        """How well score `key` separates the suite's images from the OOD ones (0.5: not at all)."""
        return self._once(("auroc", key, temperature), lambda: auroc(*self.ood_scores(key, temperature)))

    def roc(self, key: str, temperature: float) -> tuple[np.ndarray, np.ndarray]:
        """The ROC curve of score `key` (ID positive, `roc_curve`): FPR (T,) and TPR (T,), ascending."""
        return self._once(("roc", key, temperature),
                          lambda: tuple(v.numpy() for v in roc_curve(*self.ood_scores(key, temperature))[:2]))

    def fpr95(self, key: str, temperature: float) -> tuple[float, float, float]:
        """(threshold, TPR, FPR) of score `key` at the largest threshold that keeps at least 95 %
        of the suite's images (`fpr95_point`)."""
        return self._once(("fpr95", key, temperature), lambda: fpr95_point(*self.ood_scores(key, temperature)))

    def _once(self, key: tuple, compute):
        """`compute()`, computed on the first call for `key` and kept."""
        if key not in self._scores:
            self._scores[key] = compute()
        return self._scores[key]


def random_touch(coverage: Tensor, ks: Sequence[int]) -> np.ndarray:
    """Chance that k distinct patches drawn uniformly touch the object, averaged over images:
    1 - C(P - O, k) / C(P, k) with O the image's object patches. coverage (N, P) -> (len(ks),)."""
    patches = coverage.shape[1]
    objects = (coverage > 0).sum(1).tolist()
    return np.array([np.mean([1 - comb(patches - o, k) / comb(patches, k) for o in objects]) for k in ks])


def suite_with_classes(classes: Sequence[str]) -> str | None:
    """The first SynthWorld suite (the OOD one aside) whose class list is exactly `classes`."""
    return next((name for name in list_suites()
                 if name != OOD_SUITE and get_suite(name).classnames == list(classes)), None)


def reference_for(models: AppModels, classes: Sequence[str]) -> Reference | None:
    """The reference of the suite whose class list `classes` is (computed once), or None."""
    suite = suite_with_classes(classes)
    if suite is None:
        return None
    with models.lock:
        if suite not in models.references:
            models.references[suite] = _measure(models, suite)
    return models.references[suite]


@torch.no_grad()
def _measure(models: AppModels, name: str) -> Reference:
    """Every measure of the module docstring for suite `name` (call under `models.lock`)."""
    bundle, disa, gallop = models.bundle, models.methods["disa"], models.methods["gallop"]
    suite = get_suite(name, image_size=bundle.image_size)
    images, labels, masks = suite.render_batch(bundle.preprocess, "test", REFERENCE_IMAGES)
    disa.set_classes(suite.classnames)
    gallop.set_classes(suite.classnames)
    id_sims = gallop.similarities(images)
    reference = Reference(name, len(labels), None, None, None, None, None)
    if suite.definition.labels_object:
        ood = get_suite(OOD_SUITE, image_size=bundle.image_size)
        reference.id_sims = id_sims
        reference.ood_sims = gallop.similarities(ood.render_batch(bundle.preprocess, "test", REFERENCE_IMAGES)[0])
        reference.coverage = torch.stack([patch_coverage(mask, models.grid) for mask in masks])
        frozen = encode_image_prompted(bundle.model, images, patches=True)
        saliency = patch_saliency(frozen.patches, disa.teacher_text[labels], disa.config.saliency_tau)
        reference.salient_hits = pointing_hits(saliency, reference.coverage)
        reference.local_maps = id_sims[1][torch.arange(len(labels)), :, labels]  # (N, P, Ml)
    return reference
