"""`vlp recipe`: print the recipe of (method, protocol, dataset, shots) as JSON."""

from __future__ import annotations

import argparse
import dataclasses
import json

from vlp_core.commands.common import METHODS, PROTOCOLS, add_backbone_arguments

HELP = "print the recipe of (method, protocol, dataset, shots) as JSON"
DESCRIPTION = ("The training settings and method options a run of METHOD on DATASET (K shots) in PROTOCOL uses: "
               "the papers' official values, or their CPU-sized version for SynthWorld suites, as the model runs "
               "them (a depth or top-k beyond the model's blocks or patches is clipped, and said so under "
               "\"notes\"), and which checkpoint the run is scored with.")
EXAMPLES = """\
  vlp recipe --method disa --protocol fewshot --dataset EuroSAT --shots 4
  vlp recipe --method gallop --protocol dg --dataset ImageNet
  vlp recipe --method disa --protocol base2novel --dataset shapes
  vlp recipe --method disa --protocol fewshot --dataset EuroSAT --rule paper --model synth-clip   # depth clipped"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--method", required=True, choices=METHODS, metavar="METHOD", help="%(choices)s")
    parser.add_argument("--protocol", required=True, choices=PROTOCOLS, metavar="PROTOCOL", help="%(choices)s")
    parser.add_argument("--dataset", required=True, help="the dataset trained on (dg/xd/ood: the source, ImageNet)")
    parser.add_argument("--shots", type=int, default=16)
    parser.add_argument("--rule", choices=["paper", "synth"], default=None,
                        help="paper or synth (scaled to the model, CPU-sized); default: synth for SynthWorld suites")
    add_backbone_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from vlp_core.backbone import DEFAULT_MODEL, load_clip
    from vlp_core.data.synthworld import list_suites
    from vlp_core.engine.recipes import VIT_B16, ModelShape, fitted_to_model, recipe, recipe_checkpoint
    from vlp_core.methods.registry import method_class, method_config

    rule = args.rule or ("synth" if args.dataset in list_suites() else "paper")
    num_classes = synth_classes(args.protocol, args.dataset, args.shots) if rule == "synth" else None
    model = args.model or (DEFAULT_MODEL if rule == "synth" else None)  # the paper rule's own: ViT-B/16
    shape = ModelShape.of(load_clip(model, args.pretrained)) if model else VIT_B16
    result = recipe(args.method, args.protocol, args.dataset, args.shots, rule, num_classes,
                    method_class(args.method).trainable, shape)
    options, clipped = fitted_to_model(result.options, shape)
    result = dataclasses.replace(result, options=options, clipped=clipped)
    record = result.as_dict()
    notes = [f"{key} {_shown(asked)} runs as {_shown(options[key])}: the model has {_limit(key, shape)}"
             for key, asked in clipped.items()]
    config = method_config(args.method, result.options)
    print(json.dumps({**record, "checkpoint": recipe_checkpoint(record), "method_config": dataclasses.asdict(config),
                      **({"notes": notes} if notes else {})}, indent=2))
    return 0


def _shown(value) -> str:
    return json.dumps(list(value) if isinstance(value, tuple) else value)


def _limit(option: str, shape) -> str:
    """What bounds `option` on a model of `shape`, in words."""
    return {"text_depth": f"{shape.text_blocks} text blocks", "vision_depth": f"{shape.vision_blocks} vision blocks",
            "topk": f"{shape.patches} patches"}[option]


def synth_classes(protocol: str, dataset: str, shots: int) -> int:
    """How many classes a SynthWorld run of `protocol` trains on (the synth rule's epochs need it)."""
    from vlp_core.data.datasets import open_dataset
    from vlp_core.data.tasks import make_task
    from vlp_core.experiments.protocols import protocol as protocol_named

    task = make_task(open_dataset(dataset), shots, seed=1, part=protocol_named(protocol).part)
    return len(task.class_names())
