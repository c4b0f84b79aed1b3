"""`vlp eval`: evaluate saved prompts (or a method without training) on a test split."""

from __future__ import annotations

import argparse

from vlp_core.commands.common import (
    METHODS,
    add_backbone_arguments,
    add_data_arguments,
    add_device_arguments,
    scores_line,
)

HELP = "evaluate saved prompts (or zero-shot CLIP) on a test split"
DESCRIPTION = ("Top-1 accuracy of prompts saved by `vlp train`, or of a method without training. Data, preset, "
               "model, shots and seed default to what the prompts were trained with. The prompts scored are those "
               "the run is scored with: its last epoch's, or for PromptSRC and DiSa the GPA aggregate of all its "
               "epochs (an unfinished run: its last trained epoch's); --epoch N scores epoch N's instead, where "
               "the run kept them (vlp train --keep-epochs).")
EXAMPLES = """\
  vlp eval --prompts runs/disa-shapes --classes novel
  vlp eval --prompts runs/disa-shapes --epoch 3          # trained with --keep-epochs
  vlp eval --method zeroshot --data colour_shapes --classes all"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--prompts", default=None, help="folder written by `vlp train`")
    parser.add_argument("--method", default="zeroshot", choices=METHODS, metavar="METHOD",
                        help="used without --prompts: %(choices)s")
    parser.add_argument("--data", default=None, help="default: the data the prompts were trained on")
    parser.add_argument("--classes", default="all", choices=["all", "base", "novel"])
    parser.add_argument("--epoch", type=int, default=None, metavar="N",
                        help="score the prompts of epoch N, kept by a run trained with --keep-epochs (default: "
                             "those the run is scored with)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    add_data_arguments(parser, seeds=None, shots=None, preset=None)
    add_backbone_arguments(parser)
    add_device_arguments(parser, precision=False)


def run(args: argparse.Namespace) -> int:
    from vlp_core.experiments.runs import evaluate_one, trained_defaults
    from vlp_core.experiments.spec import JobSpec

    trained = trained_defaults(args.prompts) if args.prompts else {}
    dataset = args.data or trained.get("data")
    if dataset is None:
        raise ValueError(f"the checkpoint in {args.prompts} does not record its data: pass --data" if args.prompts
                         else "pass --data (a SynthWorld suite, or a dataset name with --data-root)")
    spec = JobSpec(protocol="fewshot", methods=[args.method], preset=args.preset or trained.get("preset") or "synth",
                   seeds=args.seeds or [trained.get("seed", 1)], shots=args.shots or [trained.get("shots", 16)],
                   model=args.model or trained.get("model"), pretrained=args.pretrained or trained.get("pretrained"),
                   data_root=args.data_root or trained.get("data_root"), device=args.device, workers=args.workers,
                   class_order=trained.get("class_order", "label"))
    result = evaluate_one(spec, args.prompts, args.method, dataset, args.classes, progress=not args.quiet,
                          epoch=args.epoch)
    names = result["class_names"]
    shown = ", ".join(names[:6]) + (", ..." if len(names) > 6 else "")
    print(f"{result['method']} on {result['dataset']}, {result['split']} split, {args.classes} classes "
          f"({len(names)}: {shown})")
    scored = f"  (prompts: {result['checkpoint']})" if result["checkpoint"] else ""
    print(scores_line(result["scores"]) + scored)
    return 0
