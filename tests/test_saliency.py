"""Patch saliency and saliency-aware masks against hand computations."""

import math

import pytest
import torch

from vlp_core.methods.saliency import blank_patches, mask_sizes, patch_mask, patch_saliency, saliency_mask

from tolerances import assert_equivalent


def test_patch_saliency_is_a_softmax_of_cosines_over_tau():
    patches = torch.tensor([[[1.0, 0.0], [0.0, 2.0], [3.0, 3.0]]])  # (1, 3, 2)
    query = torch.tensor([[2.0, 0.0]])
    tau = 0.5
    cosines = [1.0, 0.0, 1 / math.sqrt(2)]
    exps = [math.exp(c / tau) for c in cosines]
    expected = torch.tensor([[e / sum(exps) for e in exps]])
    assert_equivalent(patch_saliency(patches, query, tau), expected)


def test_patch_saliency_default_tau_is_sharp_and_rows_sum_to_one():
    generator = torch.Generator().manual_seed(0)
    patches, query = torch.randn(2, 16, 8, generator=generator), torch.randn(2, 8, generator=generator)
    saliency = patch_saliency(patches, query)
    assert_equivalent(saliency.sum(-1), torch.ones(2))
    best = max(range(16), key=lambda p: torch.cosine_similarity(patches[0, p], query[0], dim=0).item())
    assert saliency[0].argmax().item() == best


def _ranked(row: torch.Tensor) -> list[int]:
    """Patch indices from least to most salient (ties by index), by hand."""
    return sorted(range(len(row)), key=lambda p: (row[p].item(), p))


@pytest.mark.parametrize("ratio,pool", [(0.3, 0.5), (0.25, 0.25), (0.1, 1.0)])
def test_mask_size_and_pool(ratio, pool):
    saliency = torch.rand(3, 64, generator=torch.Generator().manual_seed(1))
    masked = saliency_mask(saliency, ratio, pool, torch.Generator().manual_seed(0))
    assert masked.shape == (3, round(ratio * 64)) and masked.dtype == torch.long
    for b in range(3):
        pool_set = set(_ranked(saliency[b])[: round(pool * 64)])
        row = masked[b].tolist()
        assert len(set(row)) == len(row) and set(row) <= pool_set
        assert row == sorted(row)


def test_pool_equal_to_ratio_gives_the_bottom_set_whatever_the_seed():
    saliency = torch.rand(2, 20, generator=torch.Generator().manual_seed(2))
    for seed in (0, 1, 2):
        masked = saliency_mask(saliency, 0.3, 0.3, torch.Generator().manual_seed(seed))
        for b in range(2):
            assert masked[b].tolist() == sorted(_ranked(saliency[b])[:6])


def test_same_seed_same_mask_other_seed_other_mask():
    saliency = torch.rand(2, 64, generator=torch.Generator().manual_seed(3))
    first = saliency_mask(saliency, 0.3, 0.5, torch.Generator().manual_seed(7))
    again = saliency_mask(saliency, 0.3, 0.5, torch.Generator().manual_seed(7))
    other = saliency_mask(saliency, 0.3, 0.5, torch.Generator().manual_seed(8))
    assert torch.equal(first, again) and not torch.equal(first, other)


def test_masked_patches_are_uniform_over_the_pool():
    """Each of the K pool patches is masked with probability M / K (19 / 32 here)."""
    saliency = torch.arange(64.0).flip(0).expand(4000, 64)  # patch 63 least salient
    masked = saliency_mask(saliency, 0.3, 0.5, torch.Generator().manual_seed(0))
    counts = torch.bincount(masked.flatten(), minlength=64).float() / 4000
    assert counts[:32].sum() == 0  # the most salient half is never masked
    torch.testing.assert_close(counts[32:], torch.full((32,), 19 / 32), atol=0.04, rtol=0)


def test_mask_ratio_and_pool_validation():
    saliency = torch.rand(1, 10)
    with pytest.raises(ValueError, match="pool"):
        saliency_mask(saliency, 0.5, 0.3)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        saliency_mask(saliency, -0.1, 0.5)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        mask_sizes(10, 0.3, 1.5)
    assert mask_sizes(196, 0.3, 0.5) == (59, 98)
    assert saliency_mask(saliency, 0.0, 0.5).shape == (1, 0)


def test_patch_mask_marks_the_indices():
    mask = patch_mask(torch.tensor([[0, 3], [1, 2]]), 4)
    assert mask.tolist() == [[True, False, False, True], [False, True, True, False]]


def test_blank_patches_zeroes_exactly_those_squares():
    images = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    indices = torch.tensor([[3], [2]])
    out = blank_patches(images, indices, patch_size=4)  # 2x2 grid: patch 3 = bottom right, 2 = bottom left
    expected = images.clone()
    expected[0, :, 4:8, 4:8] = 0
    expected[1, :, 4:8, 0:4] = 0
    assert torch.equal(out, expected)
    assert not torch.equal(images, out)  # the input is left alone
