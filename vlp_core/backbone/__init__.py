"""The one place that knows open_clip internals: loading CLIP and the prompted forwards."""

from vlp_core.backbone.loading import (
    DEFAULT_MODEL,
    ClipBundle,
    WeightsNotFoundError,
    bundled_models,
    load_clip,
)
from vlp_core.backbone.prompted import (
    VisionOutput,
    encode_image_prompted,
    encode_text_prompted,
    init_context,
    keep_indices,
    prompt_token_ids,
    value_only_block,
)
from vlp_core.backbone.text_cache import FrozenTextFeatures

__all__ = [
    "DEFAULT_MODEL",
    "ClipBundle",
    "FrozenTextFeatures",
    "VisionOutput",
    "WeightsNotFoundError",
    "bundled_models",
    "encode_image_prompted",
    "encode_text_prompted",
    "init_context",
    "keep_indices",
    "load_clip",
    "prompt_token_ids",
    "value_only_block",
]
