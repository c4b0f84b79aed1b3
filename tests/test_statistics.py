"""The rule claims are graded by: paired bootstrap intervals over seeds and test images, checked by hand."""

import numpy as np
import pytest

from vlp_core.experiments import statistics
from vlp_core.experiments.statistics import (
    accuracy_difference,
    harmonic_mean,
    hm_difference,
    ood_difference,
    ratio_interval,
    sample_sd,
    verdict,
)


@pytest.mark.parametrize("low, high, expected", [
    (0.1, 3.0, "shown"), (-3.0, -0.1, "opposite"), (-0.5, 0.9, "not shown"), (-0.5, 1.0, "inconclusive"),
    (-4.0, 6.0, "inconclusive"), (0.0, 2.0, "inconclusive"),
])
def test_verdict_follows_the_interval_alone(low, high, expected):
    assert verdict(low, high, minimal_effect=1.0) == expected


def _outcomes(hits_per_seed, n):
    """(S, n) 0/1 outcomes: seed s has its first hits_per_seed[s] images right."""
    return np.array([[1.0] * h + [0.0] * (n - h) for h in hits_per_seed])


def test_accuracy_difference_observed_value_by_hand():
    # dataset 1: A 60, 70 % (seeds 1, 2); B 50, 50 %. dataset 2: A 100, 100 %; B 90, 80 %.
    a = [_outcomes([6, 7], 10), _outcomes([10, 10], 10)]
    b = [_outcomes([5, 5], 10), _outcomes([9, 8], 10)]
    result = accuracy_difference(a, b, replicates=500)
    # ((65 - 50) + (100 - 85)) / 2 = 15
    assert result.difference == pytest.approx(15.0)
    assert result.low <= 15.0 <= result.high


def test_identical_sides_give_a_zero_interval_and_not_shown():
    a = [np.random.default_rng(0).integers(0, 2, size=(3, 50)).astype(float)]
    result = accuracy_difference(a, [x.copy() for x in a], replicates=300)
    assert (result.difference, result.low, result.high, result.verdict) == (0.0, 0.0, 0.0, "not shown")


def test_all_right_against_all_wrong_is_shown_with_no_spread():
    result = accuracy_difference([np.ones((3, 40))], [np.zeros((3, 40))], replicates=300)
    assert (result.difference, result.low, result.high, result.verdict) == (100.0, 100.0, 100.0, "shown")


def test_pairing_over_images_narrows_the_interval():
    """A is right on exactly 20 more of 200 images than B, on every seed; the images differ a lot in
    difficulty (half always wrong). Paired resampling keeps the difference near 10 points; the
    interval is the binomial spread of the 20 discordant images, not of the 200."""
    n = 200
    b = np.zeros((3, n))
    b[:, :80] = 1.0  # 40 %
    a = b.copy()
    a[:, 80:100] = 1.0  # 20 more images right: 50 %
    result = accuracy_difference([a], [b], replicates=2000)
    assert result.difference == pytest.approx(10.0)
    # discordant images ~ Binomial(200, 0.1): sd of the difference 100 * sqrt(0.1 * 0.9 / 200) = 2.1 points
    assert 5.0 < result.low < 7.5 and 12.5 < result.high < 15.0 and result.verdict == "shown"


def test_seeds_are_resampled_together_with_the_images():
    """A beats B by 30 points on seed 1 and loses by 30 on seed 2 (same images): the seeds alone make
    the interval straddle 0 widely."""
    a = np.vstack([np.r_[np.ones(80), np.zeros(20)], np.r_[np.ones(20), np.zeros(80)]])
    b = np.vstack([np.r_[np.ones(50), np.zeros(50)], np.r_[np.ones(50), np.zeros(50)]])
    result = accuracy_difference([a], [b], replicates=2000)
    assert result.difference == pytest.approx(0.0)
    assert result.low <= -25 and result.high >= 25 and result.verdict == "inconclusive"


def test_hm_difference_is_the_difference_of_the_hms_of_the_averaged_accuracies():
    base_a, novel_a = [_outcomes([8, 6], 10), _outcomes([9, 9], 10)], [_outcomes([5, 7], 10), _outcomes([4, 4], 10)]
    base_b, novel_b = [_outcomes([7, 7], 10), _outcomes([9, 9], 10)], [_outcomes([4, 4], 10), _outcomes([3, 5], 10)]
    result = hm_difference(base_a, novel_a, base_b, novel_b, replicates=300)
    hm_a = 2 * 80 * 50 / (80 + 50)  # base (70 + 90) / 2 = 80, novel (60 + 40) / 2 = 50
    hm_b = 2 * 80 * 40 / (80 + 40)  # base 80, novel (40 + 40) / 2 = 40
    assert result.difference == pytest.approx(hm_a - hm_b)
    assert harmonic_mean(np.array([80.0, 0.0]), np.array([50.0, 0.0])).tolist() == [pytest.approx(hm_a), 0.0]


def test_ood_difference_is_oriented_so_that_positive_favours_a():
    def fraction_above(id_scores, ood_scores):  # a simple metric: % of OOD images above the ID median
        return 100.0 * float((ood_scores > np.median(id_scores)).mean())

    id_scores = np.tile(np.arange(10.0), (2, 1))
    a_ood = np.tile(np.r_[np.zeros(8), [20.0, 20.0]], (2, 1))  # 20 % above
    b_ood = np.tile(np.r_[np.zeros(4), np.full(6, 20.0)], (2, 1))  # 60 % above
    lower = ood_difference(id_scores, a_ood, id_scores, b_ood, fraction_above, lower_is_better=True, replicates=200)
    assert lower.difference == pytest.approx(40.0) and lower.verdict == "shown"
    higher = ood_difference(id_scores, a_ood, id_scores, b_ood, fraction_above, lower_is_better=False, replicates=200)
    assert higher.difference == pytest.approx(-40.0) and higher.verdict == "opposite"


def test_ratio_interval_and_sample_sd():
    assert ratio_interval(np.full(7, 1.4)) == (1.4, 1.4, 1.4)
    median, low, high = ratio_interval(np.array([1.3, 1.4, 1.5, 1.45, 1.35]))
    assert median == 1.4 and 1.3 <= low <= 1.4 <= high <= 1.5
    assert sample_sd([10.0, 20.0]) == pytest.approx(7.0710678) and sample_sd([5.0]) == 0.0


def test_paired_sides_must_match():
    with pytest.raises(ValueError, match="same seeds and test images"):
        accuracy_difference([np.ones((3, 10))], [np.ones((2, 10))])
    with pytest.raises(ValueError, match="same datasets"):
        accuracy_difference([np.ones((3, 10))], [])
    assert statistics.MINIMAL_EFFECT == 1.0 and statistics.LEVEL == 0.95
