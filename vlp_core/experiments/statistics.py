"""The statistical rule every claim is graded by: a paired bootstrap over seeds and test images.

A comparison pits setting A against setting B on the same test images with the same seeds (a method
against another, or a method against its own ablation). Its data are, per dataset, the per-image
outcomes of each seed's run: correctness (0 / 1) for accuracies, ID-ness scores of the ID and the OOD
test images for OOD detection. The statistic is the difference A - B of the papers' number (mean
top-1 over seeds and datasets, the harmonic mean of seed- and dataset-averaged base and novel
accuracy, FPR95 or AUROC averaged over seeds).

The bootstrap resamples the two crossed factors independently and identically for A and B (paired):
seeds with replacement, and each dataset's test images with replacement, the same image indices for
every seed (the test images do not change with the seed). `REPLICATES` replicates with a fixed
generator give the 95 % percentile interval. The verdict follows from the interval alone, against the
claimed direction and a declared smallest effect that matters, `MINIMAL_EFFECT` points:
shown (the interval lies above 0), opposite (below 0), not shown (it holds 0 and lies below the
smallest effect: any gain is smaller than that), inconclusive (it holds 0 and reaches the smallest
effect: the runs cannot tell).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal

import numpy as np

REPLICATES = 4000
LEVEL = 0.95
MINIMAL_EFFECT = 1.0  # percentage points
Verdict = Literal["shown", "not shown", "opposite", "inconclusive"]


@dataclass(frozen=True)
class Interval:
    """A paired difference A - B (in the claimed direction: positive favours the claim) with its 95 %
    bootstrap interval and the verdict it gives."""

    difference: float
    low: float
    high: float
    verdict: Verdict


def verdict(low: float, high: float, minimal_effect: float = MINIMAL_EFFECT) -> Verdict:
    """The verdict of a 95 % interval [low, high] of a difference in the claimed direction."""
    if low > 0:
        return "shown"
    if high < 0:
        return "opposite"
    return "not shown" if high < minimal_effect else "inconclusive"


def harmonic_mean(base: np.ndarray, novel: np.ndarray) -> np.ndarray:
    """HM = 2·B·N / (B + N), elementwise (0 where both are 0)."""
    total = base + novel
    return np.where(total > 0, 2 * base * novel / np.where(total > 0, total, 1), 0.0)


def _resampled_means(outcomes: np.ndarray, seeds: np.ndarray, images: np.ndarray) -> np.ndarray:
    """Mean outcome (%) of each replicate: outcomes (S, N) 0/1; seeds (R, S), images (R, N) indices -> (R,)."""
    per_seed = outcomes[:, images]  # (S, R, N): every seed at the replicate's images
    per_seed = per_seed.mean(axis=2).T  # (R, S)
    return 100.0 * np.take_along_axis(per_seed, seeds, axis=1).mean(axis=1)


def _draws(generator: np.random.Generator, n_seeds: int, sizes: list[int], replicates: int):
    """Seed indices (R, S) and, per dataset, image indices (R, N_d)."""
    seeds = generator.integers(0, n_seeds, size=(replicates, n_seeds))
    images = [generator.integers(0, size, size=(replicates, size)) for size in sizes]
    return seeds, images


def _interval(observed: float, replicates: np.ndarray, minimal_effect: float) -> Interval:
    tail = (1 - LEVEL) / 2 * 100
    low, high = np.percentile(replicates, [tail, 100 - tail])
    return Interval(float(observed), float(low), float(high), verdict(float(low), float(high), minimal_effect))


def _check(a: list[np.ndarray], b: list[np.ndarray]) -> None:
    if len(a) != len(b) or not a:
        raise ValueError(f"a paired comparison needs the same datasets on both sides, got {len(a)} and {len(b)}")
    for x, y in zip(a, b):
        if x.shape != y.shape:
            raise ValueError(f"a paired comparison needs the same seeds and test images on both sides, got outcomes "
                             f"of shape {x.shape} and {y.shape} (seeds, images)")


def accuracy_difference(a: list[np.ndarray], b: list[np.ndarray], seed: int = 0, replicates: int = REPLICATES,
                        minimal_effect: float = MINIMAL_EFFECT) -> Interval:
    """Mean top-1 (%) of A minus B, averaged over datasets: a[d], b[d] are 0/1 outcomes (S, N_d) of the
    same S seeds and N_d test images of dataset d."""
    _check(a, b)
    generator = np.random.default_rng(seed)
    seeds, images = _draws(generator, a[0].shape[0], [x.shape[1] for x in a], replicates)
    every_seed = np.arange(a[0].shape[0])[None]
    observed = np.mean([_resampled_means(x, every_seed, np.arange(x.shape[1])[None]) -
                        _resampled_means(y, every_seed, np.arange(y.shape[1])[None]) for x, y in zip(a, b)])
    boot = np.mean([_resampled_means(x, seeds, idx) - _resampled_means(y, seeds, idx)
                    for x, y, idx in zip(a, b, images)], axis=0)
    return _interval(observed, boot, minimal_effect)


def hm_difference(a_base: list[np.ndarray], a_novel: list[np.ndarray], b_base: list[np.ndarray],
                  b_novel: list[np.ndarray], seed: int = 0, replicates: int = REPLICATES,
                  minimal_effect: float = MINIMAL_EFFECT) -> Interval:
    """HM of A minus HM of B, each the harmonic mean of its base and novel top-1 averaged over seeds and
    datasets (the papers' average HM). Lists per dataset of 0/1 outcomes (S, N_d), base and novel test
    images resampled separately, the seeds together."""
    _check(a_base, b_base)
    _check(a_novel, b_novel)
    generator = np.random.default_rng(seed)
    sizes = [x.shape[1] for x in a_base] + [x.shape[1] for x in a_novel]
    seeds, images = _draws(generator, a_base[0].shape[0], sizes, replicates)
    n = len(a_base)

    def hm(base: list[np.ndarray], novel: list[np.ndarray], seeds: np.ndarray, images: list[np.ndarray]) -> np.ndarray:
        mean_base = np.mean([_resampled_means(x, seeds, idx) for x, idx in zip(base, images[:n])], axis=0)
        mean_novel = np.mean([_resampled_means(x, seeds, idx) for x, idx in zip(novel, images[n:])], axis=0)
        return harmonic_mean(mean_base, mean_novel)

    every_seed = np.arange(a_base[0].shape[0])[None]
    whole = [np.arange(size)[None] for size in sizes]
    observed = float((hm(a_base, a_novel, every_seed, whole) - hm(b_base, b_novel, every_seed, whole))[0])
    boot = hm(a_base, a_novel, seeds, images) - hm(b_base, b_novel, seeds, images)
    return _interval(observed, boot, minimal_effect)


OodMetric = Callable[[np.ndarray, np.ndarray], float]  # (ID scores (N_id,), OOD scores (N_ood,)) -> %


def ood_difference(a_id: np.ndarray, a_ood: np.ndarray, b_id: np.ndarray, b_ood: np.ndarray, metric: OodMetric,
                   lower_is_better: bool, seed: int = 0, replicates: int = 1000,
                   minimal_effect: float = MINIMAL_EFFECT) -> Interval:
    """An OOD metric (%) of A against B, averaged over seeds: ID-ness scores (S, N_id) and (S, N_ood)
    per side; the difference is oriented so that positive favours A (B - A for FPR95)."""
    if a_id.shape != b_id.shape or a_ood.shape != b_ood.shape:
        raise ValueError("a paired OOD comparison needs the same seeds, ID and OOD images on both sides")
    generator = np.random.default_rng(seed)
    n_seeds = a_id.shape[0]
    sign = -1.0 if lower_is_better else 1.0

    def mean_metric(id_scores: np.ndarray, ood_scores: np.ndarray, seeds, id_idx, ood_idx) -> float:
        return float(np.mean([metric(id_scores[s, id_idx], ood_scores[s, ood_idx]) for s in seeds]))

    all_id, all_ood = np.arange(a_id.shape[1]), np.arange(a_ood.shape[1])
    every = range(n_seeds)
    observed = sign * (mean_metric(a_id, a_ood, every, all_id, all_ood) - mean_metric(b_id, b_ood, every, all_id, all_ood))
    boot = np.empty(replicates)
    for r in range(replicates):
        seeds = generator.integers(0, n_seeds, n_seeds)
        id_idx = generator.integers(0, len(all_id), len(all_id))
        ood_idx = generator.integers(0, len(all_ood), len(all_ood))
        boot[r] = sign * (mean_metric(a_id, a_ood, seeds, id_idx, ood_idx) - mean_metric(b_id, b_ood, seeds, id_idx, ood_idx))
    return _interval(observed, boot, minimal_effect)


def ratio_interval(ratios: np.ndarray, seed: int = 0, replicates: int = REPLICATES) -> tuple[float, float, float]:
    """Median of per-round time ratios and its 95 % bootstrap interval over the rounds -> (median, low, high)."""
    generator = np.random.default_rng(seed)
    boot = np.median(generator.choice(ratios, size=(replicates, len(ratios)), replace=True), axis=1)
    tail = (1 - LEVEL) / 2 * 100
    low, high = np.percentile(boot, [tail, 100 - tail])
    return float(np.median(ratios)), float(low), float(high)


def sample_sd(values: list[float]) -> float:
    """Sample standard deviation (n - 1); 0 for fewer than two values."""
    return float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
