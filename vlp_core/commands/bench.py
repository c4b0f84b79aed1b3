"""`vlp bench`: time training steps and inference of every method."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from vlp_core.commands.common import METHODS, add_backbone_arguments, add_device_arguments, parse_options

HELP = "time training steps and inference of every method"
DESCRIPTION = (
    "Time per training step (forward, loss, backward), its text part, images/s and peak memory per method, side "
    "by side, on random images of the model's input size: each method in its own process, the timed rounds "
    "alternating between them; medians with [min-max], ratios per round. Plus SynthWorld's rendering speed.")
EXAMPLES = """\
  vlp bench
  vlp bench --model ViT-B-16-quickgelu --batch-size 32 --device cuda
  vlp bench --methods promptsrc disa --steps 9
  vlp bench --methods coop gallop --classes colour_shapes patterns --compare main .
  vlp bench --methods disa --compare '' 'disa.mask_ratio=0.5 disa.mask_pool=0.5'"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--methods", nargs="+", default=None, choices=METHODS, metavar="METHOD",
                        help="%(choices)s (default: all)")
    parser.add_argument("--classes", nargs="+", default=["shapes"],
                        help="SynthWorld suites whose class names are used, one after the other")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=5, help="timed rounds (after one untimed warm-up)")
    parser.add_argument("--set", nargs="*", default=[], metavar="METHOD.OPTION=VALUE", help="method options")
    parser.add_argument("--out", default=None, metavar="FILE",
                        help="also write the measurement as JSON (every round's times, for intervals)")
    parser.add_argument("--compare", nargs=2, default=None, metavar=("A", "B"),
                        help="time two versions and print B / A: git revisions of this checkout (e.g. main; "
                        "'.' is the code running now) or option sets ('disa.mask_ratio=0.5'; '' for the defaults)")
    add_backbone_arguments(parser)
    add_device_arguments(parser, workers=False, precision=False)


def run(args: argparse.Namespace) -> int:
    import tempfile

    from vlp_core.backbone import DEFAULT_MODEL
    from vlp_core.data.synthworld import get_suite
    from vlp_core.files import write_text_atomically
    from vlp_core.engine.trainer import resolve_device
    from vlp_core.methods.registry import method_names
    from vlp_core.tools.bench import Variant, bench, report
    from vlp_core.tools.render_bench import render_benchmark

    device = str(resolve_device(args.device))
    classes = [name for suite in args.classes for name in get_suite(suite).classnames]
    options = parse_options(args.set)
    methods = args.methods or method_names()
    with tempfile.TemporaryDirectory(prefix="vlp-bench-") as scratch:
        variants = [Variant("current", options=options)]
        if args.compare:
            variants = [variant(text, options, Path(scratch)) for text in args.compare]
        result = bench(variants, methods, classes, model=args.model or DEFAULT_MODEL,
                       pretrained=args.pretrained, device=device, batch_size=args.batch_size, repeats=args.steps)
    machine = result["machine"]
    print(f"# vlp bench: {args.model or DEFAULT_MODEL} on {device} ({machine['device_name']}, "
          f"{machine['threads']} threads, torch {machine['torch']}), batch {args.batch_size}, "
          f"{len(classes)} classes ({' + '.join(args.classes)}), {args.steps} timed rounds\n")
    print(report(result, args.batch_size))
    if args.out:
        write_text_atomically(args.out, json.dumps(result, indent=1))
        print(f"measurement in {args.out}")
    render = render_benchmark(n=500)
    print(f"\nSynthWorld rendering: {render['images_per_s']:.0f} images/s (64 px, one core)")
    return 0


def variant(text: str, options: dict[str, dict], scratch: Path):
    """A `--compare` argument: METHOD.OPTION=VALUE settings (space-separated; '' for none) on top of
    `options`, '.' for the code that runs this command, or a git revision of its checkout."""
    from vlp_core.tools.bench import Variant, checkout

    if text == "." or "=" in text or not text.strip():
        extra = parse_options(text.split()) if "=" in text else {}
        merged = {m: {**options.get(m, {}), **extra.get(m, {})} for m in {*options, *extra}}
        return Variant(text if text.strip() else "defaults", options=merged)
    return Variant(text, root=checkout(text, scratch), options=options)
