"""CoOp's few-shot sampling and base/novel split, checked against the protocol written out by hand."""

import random

from vlp_core.data import Datum, base_novel_split, sample_few_shot
from vlp_core.data.fewshot import base_novel_labels


def _items(counts, split="train"):
    """Items of classes in a shuffled order of first appearance: counts[label] items per label."""
    order = [label for label in (2, 0, 3, 1, 4) if label < len(counts)]
    return [Datum(f"{split}/{label}/{i}", label, f"class {label}") for label in order for i in range(counts[label])]


def test_few_shot_matches_coop_random_sample_order():
    train, val = _items([20, 3, 20, 20]), _items([6, 6, 6, 6], "val")
    few_train, few_val = sample_few_shot(train, val, shots=4, seed=2)
    random.seed(2)  # CoOp: seed, then random.sample per class in order of first appearance, train then val
    expected = []
    for label in (2, 0, 3, 1):
        group = [d for d in train if d.label == label]
        expected += random.sample(group, 4) if len(group) >= 4 else group
    expected_val = []
    for label in (2, 0, 3, 1):
        expected_val += random.sample([d for d in val if d.label == label], 4)
    assert few_train == expected and few_val == expected_val
    assert sum(d.label == 1 for d in few_train) == 3  # a class with fewer than K keeps all


def test_few_shot_val_takes_at_most_four_per_class():
    _, few_val = sample_few_shot(_items([20, 20]), _items([9, 9], "val"), shots=16, seed=1)
    assert len(few_val) == 8


def test_base_novel_split_relabels_each_half():
    train = _items([2, 2, 2, 2, 2])
    base, novel = base_novel_labels(train)
    assert base == [0, 1, 2] and novel == [3, 4]  # sorted labels, first ceil(5/2) are base
    test = _items([1, 1, 1, 1, 1], "test")
    test_base, test_novel = base_novel_split(test, base, novel)
    assert sorted(d.label for d in test_base) == [0, 1, 2]
    assert sorted((d.label, d.classname) for d in test_novel) == [(0, "class 3"), (1, "class 4")]
