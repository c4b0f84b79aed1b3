"""`vlp pretrain-synth`: pretrain the bundled small CLIP on SynthWorld and write its model card."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from vlp_core.commands.common import add_device_arguments

HELP = "pretrain the bundled small CLIP on SynthWorld"
DESCRIPTION = ("Pretrain the small CLIP on SynthWorld (image tower on the world's factors, then the text tower "
               "contrastively against it; resumable), then measure its preconditions and write its model card.")
EXAMPLES = """\
  vlp pretrain-synth                       # the bundled model, resumes if killed
  vlp pretrain-synth --image-steps 200 --text-steps 100 --out runs/synth-small"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default=None, help="output folder, local-dir layout (default: assets/synth-clip)")
    parser.add_argument("--image-steps", type=int, default=None, help="stage 1, the image tower (default: the bundled model's)")
    parser.add_argument("--text-steps", type=int, default=None, help="stage 2, the text tower (default: the bundled model's)")
    parser.add_argument("--lr", type=float, default=None, help="default: the bundled model's")
    parser.add_argument("--seed", type=int, default=None, help="default: the bundled model's")
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3], help="few-shot seeds of the model card")
    add_device_arguments(parser, workers=False, precision=False)
    parser.add_argument("--restart", action="store_true", help="ignore a saved training state and start over")


def run(args: argparse.Namespace) -> int:
    from vlp_core.backbone.loading import ASSETS_DIR
    from vlp_core.engine.trainer import resolve_device
    from vlp_core.synthclip.model_card import precondition_failures, write_model_card
    from vlp_core.synthclip.pretrain import PretrainConfig, pretrain_synth

    given = {"image_steps": args.image_steps, "text_steps": args.text_steps, "lr": args.lr, "seed": args.seed}
    config = PretrainConfig(**{k: v for k, v in given.items() if v is not None})
    out_dir = Path(args.out) if args.out else ASSETS_DIR / "synth-clip"
    pretrain_synth(out_dir, config, resume=not args.restart, device=resolve_device(args.device))
    report = write_model_card(out_dir, json.loads((out_dir / "training.json").read_text()), seeds=tuple(args.seeds))
    for row in report["datasets"]:
        print(f"{row['dataset']:18s} zero-shot {row['zero_shot']:5.1f} %  linear probe {row['linear_probe']:5.1f} %  "
              f"pointing {row.get('pointing_patches', float('nan')):5.1f} / {row.get('pointing_local', float('nan')):5.1f} %")
    for failure in precondition_failures(report):
        print(f"precondition missed: {failure}")
    print(f"wrote {out_dir}/MODEL_CARD.md")
    return 0
