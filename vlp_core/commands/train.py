"""`vlp train`: train one method on one dataset and save its prompts."""

from __future__ import annotations

import argparse

from vlp_core.commands.common import (
    PROTOCOLS,
    TRAINABLE_METHODS,
    add_backbone_arguments,
    check_out,
    add_data_arguments,
    add_device_arguments,
    add_run_arguments,
    parse_options,
    parse_rule_options,
    scores_line,
)

HELP = "train one method on one dataset and save its prompts"
DESCRIPTION = (
    "Train one method (K shots, first seed) with its recipe and save its learned tensors (safetensors + "
    "JSON), its metrics (metrics.jsonl, curves.png, TensorBoard events when tensorboard is installed) and a "
    "run record in --out; a killed run continues from there when started again. An --out that holds another "
    "run (other data, classes, shots, seed, options or recipe) or another command's output is refused. "
    "--data takes a SynthWorld suite, a dataset name under --data-root, or the path of your own images: a "
    "folder of class folders or a CoOp-format split .json. --dry-run trains nothing and says what the run "
    "will cost.")
EXAMPLES = """\
  vlp train --method disa --data shapes --classes base --out runs/disa-shapes
  vlp train --method gallop --data colour_shapes --set gallop.topk=[5,10,15,20] --out runs/g
  vlp train --method disa --preset vitb16 --data-root /data/coop --data Caltech101 --out runs/c
  vlp train --method coop --data ~/my_photos --classes all --shots 8 --out runs/mine   # your own images
  vlp train --method disa --data shapes --dry-run --out runs/disa   # the time and memory it will take"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--method", required=True, choices=TRAINABLE_METHODS, metavar="METHOD", help="%(choices)s")
    parser.add_argument("--data", default="shapes", help="SynthWorld suite, a dataset name with --data-root, or a "
                                                          "path: a folder of class folders or a CoOp split .json")
    parser.add_argument("--classes", default="base", choices=["all", "base"])
    parser.add_argument("--protocol", choices=PROTOCOLS, default=None, metavar="PROTOCOL",
                        help="%(choices)s: whose recipe to train with (default: base2novel for base classes, fewshot for all)")
    add_run_arguments(parser, "folder for the prompts")
    add_data_arguments(parser)
    add_backbone_arguments(parser)
    add_device_arguments(parser)


def run(args: argparse.Namespace) -> int:
    check_out(args.out, "train")
    from vlp_core.experiments.runs import PROTOCOL_OF_CLASSES, train_one
    from vlp_core.experiments.spec import JobSpec

    protocol = args.protocol or PROTOCOL_OF_CLASSES[args.classes]
    spec = JobSpec(protocol=protocol, methods=[args.method], preset=args.preset, seeds=args.seeds, shots=args.shots,
                   model=args.model, pretrained=args.pretrained, data_root=args.data_root,
                   method_options=parse_options(args.set), rule_options=parse_rule_options(args.rule),
                   epochs=args.epochs, device=args.device,
                   precision=args.precision, workers=args.workers)
    if args.dry_run:
        from vlp_core.experiments.estimate import estimate_train, render_estimate

        print(render_estimate(estimate_train(spec, args.method, args.data, args.classes)))
        return 0
    record = train_one(spec, args.method, args.data, args.classes, args.out, progress=not args.quiet,
                       overwrite=args.overwrite, keep_epochs=args.keep_epochs)
    if record is None:  # not the main process of a distributed run
        return 0
    train = record["recipe"]["train"]
    processes = record["processes"]
    print(f"{args.method} on {record['dataset']}, {args.classes} classes, {record['shots']} shots, seed "
          f"{record['seed']}: {train['epochs']} epochs ({protocol} recipe, {train['precision']}"
          + (f", {processes} processes" if processes != 1 else "") + ")")
    print(scores_line(record["test"]) + f"  (test split; scored with the {record['checkpoint']})")
    print(f"prompts saved in {args.out}, with metrics.jsonl and curves.png")
    return 0
