"""Torch datasets and transforms over any `ClassificationData`, and the training loader whose every
random choice is a pure function of (seed, image), so a run gives the same result on any number of
processes and loader workers."""

from __future__ import annotations

import hashlib
import math
from typing import Sequence

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Sampler
from torchvision import transforms as T

from vlp_core.data.base import ClassificationData, Datum


def train_transform(size: int, mean, std, scale: tuple[float, float] = (0.08, 1.0)) -> T.Compose:
    """The papers' training augmentation: RandomResizedCrop (bicubic) + horizontal flip + CLIP norm."""
    return T.Compose([
        T.RandomResizedCrop(size, scale=scale, interpolation=T.InterpolationMode.BICUBIC),
        T.RandomHorizontalFlip(),
        T.ToTensor(),
        T.Normalize(mean, std),
    ])


def eval_transform(size: int, mean, std) -> T.Compose:
    """Resize the short side (bicubic) + center crop + CLIP normalisation."""
    return T.Compose([
        T.Resize(size, interpolation=T.InterpolationMode.BICUBIC),
        T.CenterCrop(size),
        T.ToTensor(),
        T.Normalize(mean, std),
    ])


def item_seed(seed: int, index: int, purpose: str) -> int:
    """The seed of one image's draws of one kind ("crop", "draws") in the epoch seeded `seed`: a
    pure function of its arguments (BLAKE2b, 63 bits), whatever batch, worker or process the image
    lands in."""
    digest = hashlib.blake2b(f"{seed}:{index}:{purpose}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


class ImageDataset(Dataset):
    """(image tensor (3, S, S), label) for a list of items of one dataset.

    After `set_epoch(seed)` the transform of item i runs on torch's RNG seeded with
    `item_seed(seed, i, "crop")` (and restored after), so its random crop and flip are the same in
    any worker and any process.
    """

    def __init__(self, data: ClassificationData, items: Sequence[Datum], transform):
        self.data = data
        self.items = list(items)
        self.transform = transform
        self.seed: int | None = None

    def set_epoch(self, seed: int) -> None:
        self.seed = seed

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        item = self.items[index]
        image: Image.Image = self.data.load_image(item)
        if self.seed is None:
            return self.transform(image), item.label
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(item_seed(self.seed, index, "crop"))
            return self.transform(image), item.label


class GlobalBatches(Sampler[list[int]]):
    """One process's share of every batch of an epoch.

    The epoch's order is a permutation of the `size` items drawn from `set_epoch`'s seed alone, cut
    into global batches of `batch_size` (the last may be smaller); process `rank` of `world_size`
    takes positions rank, rank + world_size, ... of each. The shares of all processes make up the
    one-process batch, whatever the number of processes. (torch's DistributedSampler splits the
    whole epoch instead and pads it with repeated items when it does not divide evenly, which
    changes the batches with the number of processes.) A process left without an item in a short
    last batch gets that batch's first item with weight 0, so every process takes every step.
    """

    def __init__(self, size: int, batch_size: int, rank: int = 0, world_size: int = 1):
        if batch_size < 1 or size < 1:
            raise ValueError(f"a training loader needs items and a batch size >= 1, got {size} items, "
                             f"batch size {batch_size}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside 0..{world_size - 1}")
        self.size, self.batch_size, self.rank, self.world_size = size, batch_size, rank, world_size
        self.seed = 0

    def set_epoch(self, seed: int) -> None:
        self.seed = seed

    def steps(self) -> list[tuple[list[int], float]]:
        """Per step of the epoch: (this process's item indices, their share n_r / n of the global
        batch of n items; 0 for the placeholder item of an empty share)."""
        order = torch.randperm(self.size, generator=torch.Generator().manual_seed(self.seed)).tolist()
        steps = []
        for start in range(0, self.size, self.batch_size):
            batch = order[start : start + self.batch_size]
            mine = batch[self.rank :: self.world_size]
            steps.append((mine, len(mine) / len(batch)) if mine else ([batch[0]], 0.0))
        return steps

    def __iter__(self):
        return iter([indices for indices, _ in self.steps()])

    def __len__(self) -> int:
        return math.ceil(self.size / self.batch_size)


def make_loader(
    data: ClassificationData,
    items: Sequence[Datum],
    transform,
    batch_size: int,
    shuffle: bool = False,
    seed: int = 0,
    num_workers: int = 0,
    pin_memory: bool = False,
    rank: int = 0,
    world_size: int = 1,
) -> DataLoader:
    """A DataLoader of (images (B, 3, S, S), labels (B,)) batches of `items`.

    shuffle: a training loader: `GlobalBatches` of `batch_size` items (the global batch; this
        process, `rank` of `world_size`, gets its share), order and random crops seeded per epoch
        (`start_epoch`; `seed` until then), so a run is repeatable for any number of processes
        and workers. Without: the items in order.
    num_workers: processes decoding images (0: in this process).
    pin_memory: page-locked batches, for non-blocking copies to a GPU.
    """
    dataset = ImageDataset(data, items, transform)
    options = dict(num_workers=num_workers, pin_memory=pin_memory, generator=torch.Generator().manual_seed(seed))
    if not shuffle:
        return DataLoader(dataset, batch_size=batch_size, **options)
    loader = DataLoader(dataset, batch_sampler=GlobalBatches(len(dataset), batch_size, rank, world_size), **options)
    start_epoch(loader, seed)
    return loader


def start_epoch(loader: DataLoader, seed: int) -> list[tuple[list[int], float]]:
    """Seed a training loader's order and crops for one epoch -> its steps, as
    `GlobalBatches.steps` (the loader yields their items, in that order)."""
    if not isinstance(loader.batch_sampler, GlobalBatches):
        raise TypeError("training needs a loader from make_loader(..., shuffle=True): its order, crops and "
                        "draws are seeded per epoch and per image")
    loader.dataset.set_epoch(seed)
    loader.batch_sampler.set_epoch(seed)
    return loader.batch_sampler.steps()
