"""Few-shot sampling and base/novel splits, exactly as the CoOp protocol states them."""

from __future__ import annotations

import math
import random
from collections import defaultdict
from typing import Sequence

from vlp_core.data.base import Datum, relabel


def group_by_label(items: Sequence[Datum]) -> dict[int, list[Datum]]:
    """Group items by label, the groups in order of first appearance (CoOp's order)."""
    groups: dict[int, list[Datum]] = defaultdict(list)
    for item in items:
        groups[item.label].append(item)
    return groups


def _sample_per_class(items: Sequence[Datum], shots: int, rng: random.Random) -> list[Datum]:
    chosen: list[Datum] = []
    for group in group_by_label(items).values():
        chosen.extend(rng.sample(group, shots) if len(group) >= shots else list(group))
    return chosen


def sample_few_shot(
    train: Sequence[Datum], val: Sequence[Datum], shots: int, seed: int
) -> tuple[list[Datum], list[Datum]]:
    """CoOp few-shot sampling: K per class from train, then min(K, 4) per class from val.

    One `random.Random(seed)` draws both, train first, classes in order of first appearance, so
    the choice equals CoOp's `random.seed(seed)` followed by `random.sample` per class. A class
    with fewer items than asked keeps all of them.
    """
    if shots < 1:
        raise ValueError(f"shots must be >= 1, got {shots}")
    rng = random.Random(seed)
    few_train = _sample_per_class(train, shots, rng)
    few_val = _sample_per_class(val, min(shots, 4), rng)
    return few_train, few_val


def base_novel_labels(train: Sequence[Datum]) -> tuple[list[int], list[int]]:
    """Sorted labels of `train`; the first ceil(n/2) are base, the rest novel."""
    labels = sorted({d.label for d in train})
    m = math.ceil(len(labels) / 2)
    return labels[:m], labels[m:]


def base_novel_split(
    items: Sequence[Datum], base: Sequence[int], novel: Sequence[int]
) -> tuple[list[Datum], list[Datum]]:
    """Split `items` into (base, novel) subsets, each relabelled 0..|subset|-1."""
    return relabel(items, base), relabel(items, novel)
