"""`vlp info`: load a CLIP and describe it."""

from __future__ import annotations

import argparse

from vlp_core.commands.common import add_backbone_arguments

HELP = "load a CLIP and describe it"
DESCRIPTION = "Load a CLIP and describe it."
EXAMPLES = """\
  vlp info
  vlp info --model ViT-B-16-quickgelu --pretrained openai
  vlp info --model ViT-B-16-quickgelu --pretrained /path/to/ViT-B-16.pt"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_backbone_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from vlp_core.backbone import DEFAULT_MODEL, bundled_models, load_clip

    bundle = load_clip(args.model or DEFAULT_MODEL, args.pretrained)
    model = bundle.model
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model        {bundle.name} (weights: {bundle.pretrained or 'random init'})")
    print(f"parameters   {n_params:,} (all frozen)")
    print(f"image size   {bundle.image_size}")
    print(f"vision       {len(model.visual.transformer.resblocks)} blocks, width {model.visual.transformer.width}")
    print(f"text         {len(model.transformer.resblocks)} blocks, width {model.transformer.width}")
    print(f"bundled      {', '.join(bundled_models())}")
    return 0
