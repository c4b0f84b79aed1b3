"""The `vlp` command."""

from __future__ import annotations

import argparse
import sys

from vlp_core.backbone import DEFAULT_MODEL, WeightsNotFoundError, bundled_models, load_clip
from vlp_core.backbone.loading import ASSETS_DIR
from vlp_core.engine.pretrain_synth import PretrainConfig as PretrainDefaults


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


def _pretrain_synth(args: argparse.Namespace) -> int:
    from pathlib import Path

    from vlp_core.engine.pretrain_synth import PretrainConfig, pretrain_synth, write_model_card

    config = PretrainConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed)
    out_dir = Path(args.out)
    pretrain_synth(out_dir, config, resume=not args.restart)
    report = write_model_card(out_dir, config, n=args.eval_images)
    for suite, numbers in report.items():
        print(f"{suite:20s} zero-shot {numbers['zero_shot']:5.1f} %  pointing {numbers['pointing_hit_rate']:5.1f} %")
    print(f"wrote {out_dir}/MODEL_CARD.md")
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

    pre = commands.add_parser(
        "pretrain-synth",
        help="pretrain the bundled small CLIP on SynthWorld",
        description="Contrastively pretrain the small CLIP on SynthWorld captions (resumable), then "
        "measure it and write its model card.",
        epilog="examples:\n  vlp pretrain-synth                       # the bundled model, resumes if killed\n"
        "  vlp pretrain-synth --steps 200 --out /tmp/synth-small",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    pre.add_argument("--out", default=str(ASSETS_DIR / "synth-clip"), help="output folder (local-dir layout)")
    pre.add_argument("--steps", type=int, default=PretrainDefaults.steps)
    pre.add_argument("--batch-size", type=int, default=PretrainDefaults.batch_size)
    pre.add_argument("--lr", type=float, default=PretrainDefaults.lr)
    pre.add_argument("--seed", type=int, default=PretrainDefaults.seed)
    pre.add_argument("--eval-images", type=int, default=200, help="test images per suite for the model card")
    pre.add_argument("--restart", action="store_true", help="ignore a saved training state and start over")
    pre.set_defaults(run=_pretrain_synth)
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
