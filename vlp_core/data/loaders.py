"""Torch datasets and transforms over any `ClassificationData`."""

from __future__ import annotations

from typing import Sequence

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
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


class ImageDataset(Dataset):
    """(image tensor (3, S, S), label) for a list of items of one dataset."""

    def __init__(self, data: ClassificationData, items: Sequence[Datum], transform):
        self.data = data
        self.items = list(items)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        item = self.items[index]
        image: Image.Image = self.data.load_image(item)
        return self.transform(image), item.label


def make_loader(
    data: ClassificationData,
    items: Sequence[Datum],
    transform,
    batch_size: int,
    shuffle: bool = False,
    seed: int = 0,
    num_workers: int = 0,
    pin_memory: bool = False,
) -> DataLoader:
    """A DataLoader whose shuffling is a pure function of `seed` (set per epoch by the trainer).

    num_workers: processes decoding images (0: in this process). Workers start afresh every epoch,
    their random crops seeded from the loader's generator, so a run (and its resume) is repeatable
    for a given worker count.
    pin_memory: page-locked batches, for non-blocking copies to a GPU.
    """
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(
        ImageDataset(data, items, transform),
        batch_size=batch_size,
        shuffle=shuffle,
        generator=generator,
        num_workers=num_workers,
        pin_memory=pin_memory,
        drop_last=False,
    )
