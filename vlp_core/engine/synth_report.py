"""Measured zero-shot accuracy and grounding of a CLIP on SynthWorld (for the model card and tests)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from vlp_core.backbone import ClipBundle, FrozenTextFeatures, encode_image_prompted
from vlp_core.data.synthworld import HELD_OUT_COMBOS, SynthSuite, get_suite
from vlp_core.engine.grounding import patch_coverage, pointing_hits

TEMPLATE = ("a photo of a {}.",)


def render_split(suite: SynthSuite, bundle: ClipBundle, split: str = "test", n: int = 200):
    """The first n items of a split: images (n, 3, S, S), labels (n,), masks bool (n, S, S)."""
    items = suite.split(split)[:n]
    images, masks = [], []
    for item in items:
        split_name, index = item.key.split("/")
        image, mask, _ = suite.render_item(split_name, int(index))
        images.append(bundle.preprocess(Image.fromarray(image)))
        masks.append(mask)
    labels = torch.tensor([item.label for item in items])
    return torch.stack(images), labels, np.stack(masks)


@torch.no_grad()
def zero_shot_predictions(bundle: ClipBundle, text: FrozenTextFeatures, suite: SynthSuite, images: torch.Tensor):
    """Zero-shot logits (n, C) and patch-to-class cosine maps (n, P, C) of the value-only local
    features and of the plain output patch embeddings."""
    out = encode_image_prompted(bundle.model, images, patches=True, local=True)
    classes = text(suite.classnames, TEMPLATE)
    logits = F.normalize(out.pooled, dim=-1) @ classes.T
    local_maps = F.normalize(out.local, dim=-1) @ classes.T
    patch_maps = F.normalize(out.patches, dim=-1) @ classes.T
    return logits, local_maps, patch_maps


def suite_report(bundle: ClipBundle, text: FrozenTextFeatures, name: str, n: int = 200) -> dict:
    """Zero-shot top-1 (%) and pointing game of one suite's first n test images."""
    suite = get_suite(name, image_size=bundle.image_size)
    images, labels, masks = render_split(suite, bundle, "test", n)
    logits, local_maps, patch_maps = zero_shot_predictions(bundle, text, suite, images)
    correct = logits.argmax(-1) == labels
    grid = int(round(patch_maps.shape[1] ** 0.5))
    coverage = torch.stack([patch_coverage(m, grid) for m in masks])
    rows = torch.arange(len(labels))

    def hit_rate(maps: torch.Tensor) -> float:
        return 100.0 * pointing_hits(maps[rows, :, labels], coverage).float().mean().item()

    report = {
        "classes": len(suite.classnames),
        "chance": 100.0 / len(suite.classnames),
        "zero_shot": 100.0 * correct.float().mean().item(),
        "pointing_hit_rate": hit_rate(local_maps),
        "pointing_hit_rate_patches": hit_rate(patch_maps),
        "object_area": 100.0 * (coverage > 0).float().mean().item(),
    }
    if name == "colour_shapes":
        held = torch.tensor([tuple(c.split(" ")) in HELD_OUT_COMBOS for c in suite.classnames])[labels]
        report["zero_shot_seen"] = 100.0 * correct[~held].float().mean().item()
        report["zero_shot_held_out"] = 100.0 * correct[held].float().mean().item()
    return report


def synth_report(bundle: ClipBundle, suites: list[str], n: int = 200) -> dict[str, dict]:
    """`suite_report` for each suite name."""
    text = FrozenTextFeatures(bundle.model, bundle.tokenizer)
    return {name: suite_report(bundle, text, name, n) for name in suites}
