"""A convolutional stem for a ViT image tower (Xiao et al., "Early convolutions help transformers
see better", 2021), used by the bundled synth-clip.

A ViT's stem is one patchify convolution (`visual.conv1`, kernel = stride = patch size). The stem
here replaces it with k stride-2 3x3 conv + BatchNorm + ReLU blocks and a 1x1 convolution to the
tower's width, so 2**k = patch size and the output grid is the same: (B, 3, S, S) ->
(B, width, S / p, S / p). Everything after the stem (positional embedding, CLS token, blocks,
prompts, patch dropping, value-only features) is open_clip's unchanged ViT, so every prompted
code path is the one ViT-B/16 runs. A from-scratch ViT with a patchify stem learns object shape
far too slowly for a CPU pretraining budget; the stem is what makes the bundled model see shapes.

The stem is named in the bundle's `open_clip_config.json` as `"conv_stem": [c1, ..., ck]`.
"""

from __future__ import annotations

from typing import Sequence

from torch import nn


def _conv_bn_relu(c_in: int, c_out: int, stride: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]


class ConvStem(nn.Sequential):
    """k stages of (3x3 stride-2 conv, BatchNorm, ReLU) followed by `depth - 1` more 3x3 stride-1
    ones, then a 1x1 conv: (B, 3, S, S) -> (B, width, S/2^k, S/2^k)."""

    def __init__(self, channels: Sequence[int], width: int, depth: int = 1):
        layers: list[nn.Module] = []
        for c_in, c_out in zip((3, *channels[:-1]), channels):
            layers += _conv_bn_relu(c_in, c_out, stride=2)
            for _ in range(depth - 1):
                layers += _conv_bn_relu(c_out, c_out, stride=1)
        layers.append(nn.Conv2d(channels[-1], width, 1))
        super().__init__(*layers)


def install_conv_stem(clip: nn.Module, channels: Sequence[int], depth: int = 1) -> nn.Module:
    """Replace `clip.visual.conv1` by a `ConvStem` with the same output grid; returns `clip`."""
    patch = clip.visual.conv1.kernel_size[0]
    if 2 ** len(channels) != patch:
        raise ValueError(
            f"a conv stem of {len(channels)} stride-2 blocks downsamples by {2 ** len(channels)}, "
            f"but the ViT's patch size is {patch}; give log2({patch}) channel counts"
        )
    clip.visual.conv1 = ConvStem(channels, clip.visual.conv1.out_channels, depth)
    return clip
