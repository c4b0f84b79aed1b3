"""The one place that knows open_clip internals: loading CLIP and the prompted forwards."""

from vlp_core.backbone.loading import (
    DEFAULT_MODEL,
    SUPPORTED_VITS,
    ClipBundle,
    WeightsNotFoundError,
    bundled_models,
    load_clip,
    unsupported_reasons,
)
from vlp_core.backbone.prompted import (
    VisionOutput,
    check_context_room,
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
    "SUPPORTED_VITS",
    "ClipBundle",
    "FrozenTextFeatures",
    "VisionOutput",
    "WeightsNotFoundError",
    "bundled_models",
    "check_context_room",
    "encode_image_prompted",
    "encode_text_prompted",
    "init_context",
    "keep_indices",
    "load_clip",
    "prompt_token_ids",
    "unsupported_reasons",
    "value_only_block",
]
