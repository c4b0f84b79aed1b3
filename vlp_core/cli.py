"""The `vlp` command: train, evaluate, run the papers' protocols, benchmark, pretrain the bundled CLIP."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from vlp_core.backbone import DEFAULT_MODEL, WeightsNotFoundError, bundled_models, load_clip
from vlp_core.backbone.loading import ASSETS_DIR
from vlp_core.engine.pretrain_synth import PretrainConfig as PretrainDefaults

RAW = argparse.RawDescriptionHelpFormatter


def _parse_options(pairs: list[str]) -> dict[str, dict]:
    """`--set disa.mask_ratio=0.2` -> {"disa": {"mask_ratio": 0.2}} (values read as JSON if they parse)."""
    options: dict[str, dict] = {}
    for pair in pairs:
        if "=" not in pair or "." not in pair.split("=", 1)[0]:
            raise ValueError(f"--set takes METHOD.OPTION=VALUE (e.g. disa.mask_ratio=0.2), got {pair!r}")
        key, raw = pair.split("=", 1)
        method, option = key.split(".", 1)
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        options.setdefault(method, {})[option] = value
    return options


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


def _protocol(args: argparse.Namespace) -> int:
    from vlp_core.engine.jobs import run_job

    run_job(_spec(args, args.protocol), args.out, progress=not args.quiet)
    print((Path(args.out) / "results.md").read_text())
    print(f"results in {args.out}")
    return 0


def _spec(args: argparse.Namespace, protocol: str = "train"):
    from vlp_core.engine.jobs import JobSpec

    return JobSpec(protocol=protocol, methods=getattr(args, "methods", [getattr(args, "method", "zeroshot")]),
                   preset=args.preset, datasets=getattr(args, "datasets", None), seeds=args.seeds,
                   shots=args.shots, model=args.model, pretrained=args.pretrained, data_root=args.data_root,
                   method_options=_parse_options(getattr(args, "set", [])), epochs=getattr(args, "epochs", None))


def _train(args: argparse.Namespace) -> int:
    from vlp_core.engine.jobs import train_one

    scores = train_one(_spec(args), args.method, args.data, args.classes, args.out, progress=not args.quiet)
    print(" ".join(f"{k} {v:.1f} %" for k, v in scores.items()) + f"  (test, {args.classes} classes)")
    print(f"prompts saved in {args.out}")
    return 0


def _eval(args: argparse.Namespace) -> int:
    from vlp_core.engine.jobs import evaluate_one

    scores = evaluate_one(_spec(args), args.prompts, args.method, args.data, args.classes)
    print(" ".join(f"{k} {v:.1f} %" for k, v in scores.items()) + f"  (test, {args.classes} classes)")
    return 0


def _bench(args: argparse.Namespace) -> int:
    import tempfile

    import torch

    from vlp_core.data.synthworld import get_suite, render_benchmark
    from vlp_core.engine.bench import Variant, bench, report

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    classes = [name for suite in args.classes for name in get_suite(suite).classnames]
    options = _parse_options(args.set)
    with tempfile.TemporaryDirectory(prefix="vlp-bench-") as scratch:
        variants = [Variant("current", options=options)]
        if args.compare:
            variants = [_bench_variant(text, options, Path(scratch)) for text in args.compare]
        result = bench(variants, args.methods, classes, model=args.model or DEFAULT_MODEL,
                       pretrained=args.pretrained, device=device, batch_size=args.batch_size, repeats=args.steps)
    machine = result["machine"]
    print(f"# vlp bench: {args.model or DEFAULT_MODEL} on {device} ({machine['device_name']}, "
          f"{machine['threads']} threads, torch {machine['torch']}), batch {args.batch_size}, "
          f"{len(classes)} classes ({' + '.join(args.classes)}), {args.steps} timed rounds\n")
    print(report(result, args.batch_size))
    render = render_benchmark(n=500)
    print(f"\nSynthWorld rendering: {render['images_per_s']:.0f} images/s (64 px, one core)")
    return 0


def _bench_variant(text: str, options: dict[str, dict], scratch: Path):
    """A `--compare` argument: METHOD.OPTION=VALUE settings (space-separated; '' for none) on top of
    `options`, '.' for the code that runs this command, or a git revision of its checkout."""
    from vlp_core.engine.bench import Variant, checkout

    if text == "." or "=" in text or not text.strip():
        extra = _parse_options(text.split()) if "=" in text else {}
        merged = {m: {**options.get(m, {}), **extra.get(m, {})} for m in {*options, *extra}}
        return Variant(text if text.strip() else "defaults", options=merged)
    return Variant(text, root=checkout(text, scratch), options=options)


def _pretrain_synth(args: argparse.Namespace) -> int:
    from vlp_core.engine.pretrain_synth import PretrainConfig, pretrain_synth, write_model_card

    config = PretrainConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed)
    out_dir = Path(args.out)
    pretrain_synth(out_dir, config, resume=not args.restart)
    report = write_model_card(out_dir, config, n=args.eval_images)
    for suite, numbers in report.items():
        print(f"{suite:20s} zero-shot {numbers['zero_shot']:5.1f} %  pointing {numbers['pointing_hit_rate']:5.1f} %")
    print(f"wrote {out_dir}/MODEL_CARD.md")
    return 0


def _add_data(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", default="synth", help="synth (SynthWorld, CPU) or vitb16 (the papers' setup)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    parser.add_argument("--shots", nargs="+", type=int, default=[16])
    parser.add_argument("--data-root", default=None, help="folder holding the CoOp-format datasets")


def _add_backbone(parser: argparse.ArgumentParser, model_default: str | None) -> None:
    parser.add_argument("--model", default=model_default,
                        help="bundled model, model folder or open_clip architecture (e.g. ViT-B-16-quickgelu)")
    parser.add_argument("--pretrained", default=None, help="open_clip tag (e.g. openai) or checkpoint path")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vlp", description="DiSa and GalLoP prompt learning for CLIP.")
    commands = parser.add_subparsers(dest="command", required=True)

    info = commands.add_parser(
        "info", help="load a CLIP and describe it", description="Load a CLIP and describe it.",
        epilog="examples:\n  vlp info\n  vlp info --model ViT-B-16-quickgelu --pretrained openai\n"
        "  vlp info --model ViT-B-16-quickgelu --pretrained /path/to/ViT-B-16.pt", formatter_class=RAW)
    _add_backbone(info, DEFAULT_MODEL)
    info.set_defaults(run=_info)

    proto = commands.add_parser(
        "protocol", help="run a paper protocol (base2novel, fewshot, dg, xd, ood)",
        description="Run a protocol for several methods and seeds; write results.md/csv/json, plots and "
        "the exact config to --out. Interrupted runs resume from their checkpoints.",
        epilog="examples:\n"
        "  vlp protocol base2novel --methods zeroshot coop ivlp promptsrc disa gallop --out results/b2n\n"
        "  vlp protocol fewshot --methods coop disa --shots 1 2 4 8 16 --datasets shapes --out results/fs\n"
        "  vlp protocol dg --methods disa gallop --out results/dg          # shapes -> its style domains\n"
        "  vlp protocol ood --methods zeroshot gallop --out results/ood\n"
        "  vlp protocol base2novel --methods disa --set disa.mask_ratio=0.2 --seeds 1 --out results/r02\n"
        "  vlp protocol base2novel --preset vitb16 --data-root /data/coop --methods disa --out results/vitb16",
        formatter_class=RAW)
    proto.add_argument("protocol", choices=["base2novel", "fewshot", "dg", "xd", "ood"])
    proto.add_argument("--methods", nargs="+", default=["zeroshot", "coop", "ivlp", "promptsrc", "disa", "gallop"])
    _add_data(proto)
    proto.add_argument("--datasets", nargs="+", default=None,
                       help="datasets (or, for dg/xd/ood, targets / OOD sets); default: the preset's")
    proto.add_argument("--set", nargs="*", default=[], metavar="METHOD.OPTION=VALUE",
                       help="method options, e.g. disa.dir_loss=mse gallop.dropout=0")
    proto.add_argument("--epochs", type=int, default=None, help="override the recipe's epochs")
    proto.add_argument("--out", required=True, help="results folder")
    proto.add_argument("--quiet", action="store_true", help="no progress bars")
    _add_backbone(proto, None)
    proto.set_defaults(run=_protocol)

    method_names = ["zeroshot", "coop", "ivlp", "promptsrc", "disa", "gallop"]
    tr = commands.add_parser(
        "train", help="train one method on one dataset and save its prompts",
        description="Train one method (K shots, first seed) and save its learned tensors (safetensors + "
        "JSON) in --out; a killed run continues from there when started again.",
        epilog="examples:\n  vlp train --method disa --data shapes --classes base --out runs/disa-shapes\n"
        "  vlp train --method gallop --data colour_shapes --set gallop.topk=[5,10,15,20] --out runs/g\n"
        "  vlp train --method disa --preset vitb16 --data-root /data/coop --data Caltech101 --out runs/c",
        formatter_class=RAW)
    tr.add_argument("--method", required=True, choices=method_names[1:])
    tr.add_argument("--data", default="shapes", help="SynthWorld suite, or a dataset name with --data-root")
    tr.add_argument("--classes", default="base", choices=["all", "base"])
    tr.add_argument("--set", nargs="*", default=[], metavar="METHOD.OPTION=VALUE")
    tr.add_argument("--epochs", type=int, default=None)
    tr.add_argument("--out", required=True)
    tr.add_argument("--quiet", action="store_true")
    _add_data(tr)
    _add_backbone(tr, None)
    tr.set_defaults(run=_train)

    ev = commands.add_parser(
        "eval", help="evaluate saved prompts (or zero-shot CLIP) on a test split",
        description="Top-1 accuracy of prompts saved by `vlp train`, or of a method without training.",
        epilog="examples:\n  vlp eval --prompts runs/disa-shapes --data shapes --classes novel\n"
        "  vlp eval --method zeroshot --data colour_shapes --classes all", formatter_class=RAW)
    ev.add_argument("--prompts", default=None, help="folder written by `vlp train`")
    ev.add_argument("--method", default="zeroshot", choices=method_names, help="used without --prompts")
    ev.add_argument("--data", default="shapes")
    ev.add_argument("--classes", default="all", choices=["all", "base", "novel"])
    _add_data(ev)
    _add_backbone(ev, None)
    ev.set_defaults(run=_eval)

    be = commands.add_parser(
        "bench", help="time training steps and inference of every method",
        description="Time per training step (forward, loss, backward), its text part, images/s and peak "
        "memory per method, side by side, on random images of the model's input size: each method in its "
        "own process, the timed rounds alternating between them; medians with [min-max], ratios per round. "
        "Plus SynthWorld's rendering speed.",
        epilog="examples:\n  vlp bench\n  vlp bench --model ViT-B-16-quickgelu --batch-size 32 --device cuda\n"
        "  vlp bench --methods promptsrc disa --steps 9\n"
        "  vlp bench --methods coop gallop --classes colour_shapes patterns --compare main .\n"
        "  vlp bench --methods disa --compare '' 'disa.mask_ratio=0.5 disa.mask_pool=0.5'", formatter_class=RAW)
    be.add_argument("--methods", nargs="+", default=method_names)
    be.add_argument("--classes", nargs="+", default=["shapes"],
                    help="SynthWorld suites whose class names are used, one after the other")
    be.add_argument("--batch-size", type=int, default=32)
    be.add_argument("--steps", type=int, default=5, help="timed rounds (after one untimed warm-up)")
    be.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    be.add_argument("--set", nargs="*", default=[], metavar="METHOD.OPTION=VALUE", help="method options")
    be.add_argument("--compare", nargs=2, default=None, metavar=("A", "B"),
                    help="time two versions and print B / A: git revisions of this checkout (e.g. main; "
                    "'.' is the code running now) or option sets ('disa.mask_ratio=0.5'; '' for the defaults)")
    _add_backbone(be, None)
    be.set_defaults(run=_bench)

    pre = commands.add_parser(
        "pretrain-synth", help="pretrain the bundled small CLIP on SynthWorld",
        description="Contrastively pretrain the small CLIP on SynthWorld captions (resumable), then "
        "measure it and write its model card.",
        epilog="examples:\n  vlp pretrain-synth                       # the bundled model, resumes if killed\n"
        "  vlp pretrain-synth --steps 200 --out runs/synth-small", formatter_class=RAW)
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
    except (WeightsNotFoundError, FileNotFoundError, ValueError, KeyError) as error:
        print(f"vlp: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
