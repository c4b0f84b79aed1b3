"""What prompt learning changed, in numbers a reader can check by hand.

- `nearest_words`: the vocabulary tokens nearest to each learned context vector in the token
  embedding space (Euclidean distance), CoOp's way of reading its learned context as words.
- `prompt_cosines`, `text_cosines`, `cosine_to_others`: how alike several prompts of one method
  are (GalLoP's local prompts all start from the same words; if they stay alike, they have not
  diverged into different views of the image).
The zero-shot vs learned patch maps are each `Explainable` method's own
(`ExplainCache.zero_shot_vs_learned`).

Shapes: N vectors, Dt token-embedding width, V vocabulary size, M prompts, C classes, D joint size.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def nearest_words(vectors: Tensor, embeddings: Tensor, k: int = 3) -> tuple[Tensor, Tensor]:
    """The k vocabulary entries nearest to each vector -> (distances (N, k), token ids (N, k)),
    nearest first (Euclidean distance; ties by the lower id).

    vectors (N, Dt) learned context vectors; embeddings (V, Dt) the token embedding table.
    """
    distances = torch.cdist(vectors.detach().double()[None], embeddings.detach().double()[None])[0]  # (N, V)
    order = distances.argsort(dim=1, stable=True)[:, :k]
    return distances.gather(1, order), order


def token_word(tokenizer, token_id: int) -> str:
    """The text of one vocabulary token (open_clip's BPE: a word, or a word piece)."""
    return tokenizer.decode([int(token_id)]).strip()


def prompt_cosines(prompts: Tensor) -> Tensor:
    """Cosines between prompts, each flattened -> (M, M). prompts (M, ...), e.g. (M, n_ctx, Dt)."""
    flat = F.normalize(prompts.detach().flatten(1).double(), dim=1)
    return flat @ flat.T


def text_cosines(features: Tensor) -> Tensor:
    """Mean over classes of the cosine between the text features of prompts m and n -> (M, M).

    features (C, M, D), e.g. GalLoP's local text features t_l.
    """
    unit = F.normalize(features.detach().double(), dim=-1)
    return torch.einsum("cmd,cnd->mn", unit, unit) / unit.shape[0]


def cosine_to_others(cosines: Tensor) -> Tensor:
    """Each prompt's mean cosine with the other prompts -> (M,). cosines (M, M), M >= 2."""
    count = cosines.shape[0]
    return (cosines.sum(1) - cosines.diagonal()) / (count - 1)
