"""IVLP: independent deep vision and language prompts (the base of PromptSRC and DiSa).

Text: `[SOT, P_t, class name, ".", EOT]`; vision: `[CLS, patches, P_v]`. New prompt tokens are
injected at the input of blocks 0..J-1 of each tower, replacing the previous layer's prompt tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor, nn

from vlp_core.backbone import ClipBundle, FrozenTextFeatures, encode_image_prompted, encode_text_prompted
from vlp_core.methods.coop import CoOp, CoOpConfig
from vlp_core.methods.registry import register


@dataclass
class IVLPConfig(CoOpConfig):
    n_ctx: int = 4  # text prompt tokens n_ctx_t
    ctx_init: str | None = "a photo of a"  # initialises the layer-0 text prompts; deeper ones are random
    n_ctx_vision: int = 4  # vision prompt tokens n_ctx_v (all random normal)
    text_depth: int = 9  # J for the text tower (>= 1)
    vision_depth: int = 9  # J for the vision tower (>= 1)


def _clipped_depth(depth: int, num_layers: int, tower: str) -> int:
    if depth < 1:
        raise ValueError(f"{tower}_depth must be >= 1 (IVLP prompts every tower at layer 0), got {depth}")
    return min(depth, num_layers)


@register
class IVLP(CoOp):
    """Deep prompts in both towers.

    Learned: `text_ctx` (n_t, Dt), `text_deep` (J_t - 1, n_t, Dt), `vision_ctx` (n_v, Dv),
    `vision_deep` (J_v - 1, n_v, Dv). The depths J are clipped to the number of blocks of the
    loaded tower (e.g. 3 for `vlp-tiny`); read the effective values from `text_depth` /
    `vision_depth`. With ViT-B/16 widths and J = 9: 9·4·512 + 9·4·768 = 46,080 values.
    """

    name = "ivlp"
    title = "IVLP"
    order = 20
    config_class = IVLPConfig

    def __init__(self, clip: ClipBundle, config: IVLPConfig | None = None,
                 frozen_text: FrozenTextFeatures | None = None):
        config = config if config is not None else IVLPConfig()
        if config.class_token_position != "end" or config.csc:
            raise ValueError(f"{self.name} prompts follow [SOT] in every layer: it takes class_token_position "
                             f"'end' and csc false (CoOp's options), got {config.class_token_position!r}, {config.csc}")
        super().__init__(clip, config, frozen_text)
        model, config = clip.model, self.config
        self.text_depth = _clipped_depth(config.text_depth, len(model.transformer.resblocks), "text")
        self.vision_depth = _clipped_depth(config.vision_depth, len(model.visual.transformer.resblocks), "vision")
        text_width = model.token_embedding.weight.shape[1]
        vision_width = model.visual.class_embedding.shape[0]
        self.text_deep = nn.Parameter(self._random_prompts(self.text_depth - 1, config.n_ctx, text_width))
        self.vision_ctx = nn.Parameter(self._random_prompts(config.n_ctx_vision, vision_width))
        self.vision_deep = nn.Parameter(
            self._random_prompts(self.vision_depth - 1, config.n_ctx_vision, vision_width))

    def text_features(self) -> Tensor:
        """(C, D) normalised prompted text features ĝ_p."""
        features = encode_text_prompted(self.clip.model, self.token_ids, self.text_ctx, self.text_deep)
        return F.normalize(features, dim=-1)

    def image_features(self, images: Tensor, drop: Tensor | None = None) -> Tensor:
        """images (B, 3, S, S), optional (B, M) patch indices to drop -> (B, D) normalised f̂_p."""
        out = encode_image_prompted(self.clip.model, images, self.vision_ctx, self.vision_deep, drop,
                                    tokens=self.image_tokens(images))
        return F.normalize(out.pooled, dim=-1)
