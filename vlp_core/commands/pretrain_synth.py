"""`vlp pretrain-synth`: pretrain the bundled small CLIP on SynthWorld and write its model card."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from vlp_core.commands.common import add_device_arguments, check_out

HELP = "pretrain the bundled small CLIP on SynthWorld"
DESCRIPTION = ("Pretrain the small CLIP on SynthWorld (image tower on the world's factors, then the text tower "
               "contrastively against it; resumable), then measure its preconditions and write its model card, "
               "into --out. A folder that holds a finished model is refused without --overwrite: the bundled "
               "prompts and every result trained on a model would no longer match it.")
EXAMPLES = """\
  vlp pretrain-synth --out runs/synth-clip-2       # the bundled model's recipe (about an hour on a CPU); resumes if killed
  vlp pretrain-synth --image-steps 200 --text-steps 100 --out runs/synth-small
  vlp pretrain-synth --out assets/synth-clip --overwrite   # replace the bundled model itself"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="output folder (open_clip's local-dir layout), e.g. runs/synth-clip-2; "
                                                     "load it with --model FOLDER")
    parser.add_argument("--image-steps", type=int, default=None, help="stage 1, the image tower (default: the bundled model's)")
    parser.add_argument("--text-steps", type=int, default=None, help="stage 2, the text tower (default: the bundled model's)")
    parser.add_argument("--lr", type=float, default=None, help="default: the bundled model's")
    parser.add_argument("--seed", type=int, default=None, help="default: the bundled model's")
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3], help="few-shot seeds of the model card")
    add_device_arguments(parser, workers=False, precision=False)
    parser.add_argument("--restart", action="store_true", help="ignore a saved training state and start over")
    parser.add_argument("--overwrite", action="store_true",
                        help="train a new model in place of a finished one in --out (from scratch)")


def run(args: argparse.Namespace) -> int:
    check_out(args.out, "pretrain-synth")
    from vlp_core.engine.trainer import resolve_device
    from vlp_core.synthclip.model_card import precondition_failures, write_model_card
    from vlp_core.synthclip.pretrain import PretrainConfig, pretrain_synth

    out_dir = Path(args.out)
    refuse_finished_model(out_dir, args.overwrite)
    given = {"image_steps": args.image_steps, "text_steps": args.text_steps, "lr": args.lr, "seed": args.seed}
    config = PretrainConfig(**{k: v for k, v in given.items() if v is not None})
    pretrain_synth(out_dir, config, resume=not (args.restart or args.overwrite), device=resolve_device(args.device))
    report = write_model_card(out_dir, json.loads((out_dir / "training.json").read_text()), seeds=tuple(args.seeds))
    for row in report["datasets"]:
        print(f"{row['dataset']:18s} zero-shot {row['zero_shot']:5.1f} %  linear probe {row['linear_probe']:5.1f} %  "
              f"pointing {row.get('pointing_patches', float('nan')):5.1f} / {row.get('pointing_local', float('nan')):5.1f} %")
    for failure in precondition_failures(report):
        print(f"precondition missed: {failure}")
    print(f"wrote {out_dir}/MODEL_CARD.md")
    return 0


def refuse_finished_model(out_dir: Path, overwrite: bool) -> None:
    """Refuse an --out holding a finished model (its weights) unless `overwrite`: the prompts and results
    trained on it would silently stop matching it."""
    from vlp_core.backbone.loading import ASSETS_DIR, WEIGHTS_FILE

    weights = out_dir / WEIGHTS_FILE
    if weights.is_file() and not overwrite:
        bundled = out_dir.resolve() == (ASSETS_DIR / "synth-clip").resolve()
        what = "the bundled model, on which assets/prompts and docs/results were trained" if bundled else "a finished model"
        raise ValueError(f"--out {out_dir} holds {what} ({weights}): train into another folder, or pass --overwrite to "
                         f"train a new one from scratch in its place")
