"""The `vlp` command."""

from __future__ import annotations

import argparse
import sys

from vlp_core.backbone import DEFAULT_MODEL, WeightsNotFoundError, bundled_models, load_clip


def _info(args: argparse.Namespace) -> int:
    bundle = load_clip(args.model, args.pretrained)
    model = bundle.model
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model        {bundle.name} (weights: {bundle.pretrained or 'random init'})")
    print(f"parameters   {n_params:,} (all frozen)")
    print(f"image size   {bundle.image_size}")
    print(f"vision       {len(model.visual.transformer.resblocks)} blocks, width {model.visual.transformer.width}")
    print(f"text         {len(model.transformer.resblocks)} blocks, width {model.transformer.width}")
    print(f"bundled      {', '.join(bundled_models())}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vlp", description="DiSa and GalLoP prompt learning for CLIP.")
    commands = parser.add_subparsers(dest="command", required=True)
    info = commands.add_parser(
        "info",
        help="load a CLIP and describe it",
        description="Load a CLIP and describe it.",
        epilog="examples:\n  vlp info\n  vlp info --model ViT-B-16-quickgelu --pretrained openai\n"
        "  vlp info --model ViT-B-16-quickgelu --pretrained /path/to/ViT-B-16.pt",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    info.add_argument("--model", default=DEFAULT_MODEL, help="bundled model or open_clip architecture")
    info.add_argument("--pretrained", default=None, help="open_clip tag or path to a checkpoint")
    info.set_defaults(run=_info)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (WeightsNotFoundError, ValueError) as error:
        print(f"vlp: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
