"""OOD scores and detection metrics against numbers worked out by hand."""

import math

import numpy as np
import pytest
import torch
from torch.testing import assert_close

from vlp_core.methods.ood import auroc, fpr95_point, fpr_at_95_tpr, gl_mcm, l_mcm, mcm, roc_curve


def _sigmoid(x):
    return 1 / (1 + math.exp(-x))


# ---------------------------------------------------------------- scores


def test_mcm_by_hand():
    cosines = torch.tensor([[0.3, 0.1], [0.0, 0.0], [0.2, 0.5]])
    # two classes: max softmax = sigmoid(|difference| / T)
    assert_close(mcm(cosines), torch.tensor([_sigmoid(0.2), 0.5, _sigmoid(0.3)]))
    assert_close(mcm(cosines, temperature=0.1), torch.tensor([_sigmoid(2.0), 0.5, _sigmoid(3.0)]))


def test_mcm_three_classes_by_hand():
    cosines = torch.tensor([[0.25, 0.1, -0.05]])
    e = [math.exp(0.25), math.exp(0.1), math.exp(-0.05)]
    assert_close(mcm(cosines), torch.tensor([e[0] / sum(e)]))


def test_l_mcm_takes_the_best_patch_by_hand():
    local = torch.tensor([[[0.2, 0.0], [0.0, 0.5], [0.1, 0.1]]])  # B=1, P=3, C=2
    assert_close(l_mcm(local), torch.tensor([_sigmoid(0.5)]))  # patch 1, class 1


def test_gl_mcm_is_the_sum_by_hand():
    global_cos = torch.tensor([[0.3, 0.1]])
    local = torch.tensor([[[0.2, 0.0], [0.0, 0.5]]])
    assert_close(gl_mcm(global_cos, local), torch.tensor([_sigmoid(0.2) + _sigmoid(0.5)]))


# ---------------------------------------------------------------- metrics


def test_perfect_separation():
    id_scores, ood_scores = [0.9, 0.8, 0.7], [0.3, 0.2, 0.1, 0.0]
    assert auroc(id_scores, ood_scores) == 1.0
    assert fpr_at_95_tpr(id_scores, ood_scores) == 0.0


def test_reversed_separation():
    assert auroc([0.1, 0.2], [0.8, 0.9]) == 0.0
    assert fpr_at_95_tpr([0.1, 0.2], [0.8, 0.9]) == 1.0


def test_interleaved_lists():
    id_scores, ood_scores = [0.9, 0.7, 0.5, 0.3], [0.8, 0.6, 0.4, 0.2]
    # ID above OOD in 4 + 3 + 2 + 1 of the 16 pairs
    assert math.isclose(auroc(id_scores, ood_scores), 10 / 16)
    # TPR >= 95% needs all four ID scores: threshold 0.3 lets 0.8, 0.6, 0.4 through
    assert math.isclose(fpr_at_95_tpr(id_scores, ood_scores), 3 / 4)


def test_threshold_at_exactly_95_percent():
    id_scores = np.arange(1, 21, dtype=np.float64)  # 19 of 20 = 95%: threshold 2
    ood_scores = [1.5, 2.0, 2.5, 0.0]  # 2.0 (tied with the threshold) and 2.5 pass
    assert math.isclose(fpr_at_95_tpr(id_scores, ood_scores), 2 / 4)
    # pairs with ID above OOD: 1.5 -> 19, 2.0 -> 18 + a tie, 2.5 -> 18, 0.0 -> 20
    assert math.isclose(auroc(id_scores, ood_scores), (19 + 18.5 + 18 + 20) / 80)


def test_roc_curve_and_the_fpr95_point_by_hand():
    id_scores, ood_scores = [0.9, 0.7, 0.5, 0.3], [0.8, 0.6, 0.4, 0.2]
    fpr, tpr, thresholds = roc_curve(id_scores, ood_scores)
    assert thresholds.tolist() == [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2]
    assert tpr.tolist() == [0.25, 0.25, 0.5, 0.5, 0.75, 0.75, 1.0, 1.0]
    assert fpr.tolist() == [0.0, 0.25, 0.25, 0.5, 0.5, 0.75, 0.75, 1.0]
    assert fpr95_point(id_scores, ood_scores) == (0.3, 1.0, 0.75)  # all four ID scores are needed
    id_scores = np.arange(1, 21, dtype=np.float64)  # 19 of 20 = 95%: threshold 2, and 2.0 and 2.5 pass
    assert fpr95_point(id_scores, [1.5, 2.0, 2.5, 0.0]) == (2.0, 0.95, 0.5)
    fpr, tpr, thresholds = roc_curve([1.0, 1.0], [1.0, 0.0])  # a tie crosses its threshold together
    assert thresholds.tolist() == [1.0, 0.0] and tpr.tolist() == [1.0, 1.0] and fpr.tolist() == [0.5, 1.0]


def test_ties_count_half_and_pass_the_threshold_together():
    id_scores, ood_scores = torch.tensor([1.0, 1.0, 0.0]), torch.tensor([1.0, 0.0, 0.0])
    # pairs: each ID 1.0 ties one OOD and beats two (2.5 each); ID 0.0 ties two OOD (1)
    assert math.isclose(auroc(id_scores, ood_scores), 6 / 9)
    assert fpr_at_95_tpr(id_scores, ood_scores) == 1.0  # threshold 0 accepts every OOD sample
    id_scores, ood_scores = [2.0, 1.0, 1.0], [1.0, 0.0]
    assert math.isclose(fpr_at_95_tpr(id_scores, ood_scores), 1 / 2)  # threshold 1 accepts the tied OOD 1.0
    assert math.isclose(auroc(id_scores, ood_scores), (2 + 1.5 + 1.5) / 6)


def test_auroc_equals_pairwise_count_on_random_scores():
    generator = torch.Generator().manual_seed(0)
    id_scores = torch.randint(0, 20, (60,), generator=generator).float()  # many ties
    ood_scores = torch.randint(0, 15, (45,), generator=generator).float()
    diff = id_scores[:, None] - ood_scores[None, :]
    expected = ((diff > 0).sum() + 0.5 * (diff == 0).sum()).item() / (60 * 45)
    assert math.isclose(auroc(id_scores, ood_scores), expected, rel_tol=1e-12)


def test_empty_scores_are_rejected():
    with pytest.raises(ValueError, match="no OOD scores"):
        auroc([0.5], [])


def test_closest_rule_takes_the_tpr_nearest_95_percent():
    # 10 ID scores 10..1: TPR steps of 0.1; OOD scores 9.5 and 0.5
    id_scores, ood_scores = np.arange(10, 0, -1, dtype=np.float64), [9.5, 0.5]
    # thresholds >= 1 keep 100 % of ID (|1.0 - 0.95| = 0.05), >= 2 keep 90 % (0.05): a tie, the higher
    # threshold (2) is taken: 9.5 passes, 0.5 not
    assert math.isclose(fpr_at_95_tpr(id_scores, ood_scores, rule="closest"), 1 / 2)
    assert math.isclose(fpr_at_95_tpr(id_scores, ood_scores), 1 / 2)  # threshold 1: 0.5 still below
    # 20 ID scores 20..1 (TPR steps 0.05): 19 of 20 is exactly 95 %; OOD 1.5 passes 1 but not 2
    id_scores = np.arange(20, 0, -1, dtype=np.float64)
    assert fpr_at_95_tpr(id_scores, [1.5, 30.0], rule="closest") == 1 / 2
    # 40 ID scores: the threshold rule needs 38 of 40 (95 %) -> threshold 3; closest is the same point
    id_scores = np.arange(40, 0, -1, dtype=np.float64)
    assert fpr_at_95_tpr(id_scores, [2.5], rule="closest") == fpr_at_95_tpr(id_scores, [2.5]) == 0.0
    # 8 ID scores: 8/8 = 100 % (0.05 away) vs 7/8 = 87.5 % (0.075 away): both rules keep all 8
    id_scores = np.arange(8, 0, -1, dtype=np.float64)
    assert fpr_at_95_tpr(id_scores, [0.5, 1.5], rule="closest") == fpr_at_95_tpr(id_scores, [0.5, 1.5]) == 1 / 2
    # 12 ID scores: 12/12 (0.05 away) vs 11/12 = 91.7 % (0.033 away): closest keeps 11, threshold all 12
    id_scores = np.arange(12, 0, -1, dtype=np.float64)
    assert fpr_at_95_tpr(id_scores, [1.5], rule="closest") == 0.0
    assert fpr_at_95_tpr(id_scores, [1.5]) == 1.0
    with pytest.raises(ValueError, match="FPR95 rule"):
        fpr_at_95_tpr(id_scores, [1.5], rule="nearest")
