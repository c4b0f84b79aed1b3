"""The `vlp` command: train, evaluate, run the papers' protocols, print recipes, benchmark, pretrain the
bundled CLIP.

torch and open_clip are imported by the commands, not here, so `vlp --help` answers at once.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path

RAW = argparse.RawDescriptionHelpFormatter
PROTOCOLS = ("base2novel", "fewshot", "dg", "xd", "ood")


class MethodNames:
    """The registered method names (all, or only the trainable ones), read from the registry only when
    argparse checks a value or prints a command's help: the registry imports torch."""

    def __init__(self, trainable: bool | None = None):
        self.trainable = trainable

    def _names(self) -> list[str]:
        from vlp_core.methods.registry import method_names

        return method_names(self.trainable)

    def __contains__(self, name: object) -> bool:
        return name in self._names()

    def __iter__(self):
        return iter(self._names())


def _value(raw: str):
    """A command-line value read as JSON if it parses (numbers, lists, null), else the string."""
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


def parse_options(pairs: list[str]) -> dict[str, dict]:
    """`--set disa.mask_ratio=0.2` -> {"disa": {"mask_ratio": 0.2}} (values read as JSON if they parse)."""
    options: dict[str, dict] = {}
    for pair in pairs:
        if "=" not in pair or "." not in pair.split("=", 1)[0]:
            raise ValueError(f"--set takes METHOD.OPTION=VALUE (e.g. disa.mask_ratio=0.2), got {pair!r}")
        key, raw = pair.split("=", 1)
        method, option = key.split(".", 1)
        options.setdefault(method, {})[option] = _value(raw)
    return options


def parse_parameters(pairs: list[str]) -> dict:
    """`--slurm slurm_partition=gpu timeout_min=240` -> {"slurm_partition": "gpu", "timeout_min": 240}."""
    for pair in pairs:
        if "=" not in pair:
            raise ValueError(f"--slurm takes KEY=VALUE (e.g. slurm_partition=gpu timeout_min=240), got {pair!r}")
    return {key: _value(raw) for key, raw in (pair.split("=", 1) for pair in pairs)}


def add_device_arguments(parser: argparse.ArgumentParser, workers: bool = True, precision: bool = True) -> None:
    """--device (and --workers, --precision): the run-time choices every command that computes takes."""
    parser.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda when available, else cpu)")
    if workers:
        parser.add_argument("--workers", type=int, default=0, help="image-decoding processes per loader (default 0)")
    if precision:
        parser.add_argument("--precision", choices=["fp16", "bf16", "fp32"], default=None,
                            help="autocast precision (default: fp16 with a grad scaler on CUDA, as the papers' "
                                 "code; fp32 on the CPU)")


def _spec(args: argparse.Namespace, protocol: str, methods: list[str] | None):
    from vlp_core.engine.jobs import JobSpec

    return JobSpec(protocol=protocol, methods=methods, preset=args.preset or "synth",
                   datasets=getattr(args, "datasets", None), seeds=args.seeds, shots=args.shots, model=args.model,
                   pretrained=args.pretrained, data_root=args.data_root,
                   method_options=parse_options(getattr(args, "set", [])), epochs=getattr(args, "epochs", None),
                   device=args.device, precision=getattr(args, "precision", None), workers=args.workers,
                   sampling=getattr(args, "sampling", "per_class"), trainval=getattr(args, "trainval", []),
                   class_order=getattr(args, "class_order", "label"), fpr95_rule=getattr(args, "fpr95", "threshold"),
                   source_prompts=getattr(args, "prompts", None))


def _info(args: argparse.Namespace) -> int:
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


def _launcher(args: argparse.Namespace):
    """Where the runs of `vlp protocol` go: this process (None), local processes, or submitit."""
    from vlp_core.engine.launchers import LocalLauncher, SubmititLauncher

    if args.launcher == "submitit":
        return SubmititLauncher(Path(args.out) / "submitit", args.jobs, parse_parameters(args.slurm), args.workers)
    if args.slurm:
        raise ValueError("--slurm sets submitit's parameters: add --launcher submitit")
    return LocalLauncher(args.jobs) if (args.jobs or 1) > 1 else None


def _protocol(args: argparse.Namespace) -> int:
    from vlp_core.engine.jobs import RunsFailed, run_job

    try:
        run_job(_spec(args, args.protocol, args.methods), args.out, progress=not args.quiet,
                overwrite=args.overwrite, launcher=_launcher(args))
    except RunsFailed as failed:
        print((Path(args.out) / "results.md").read_text())
        print(f"vlp: {failed}", file=sys.stderr)
        return 1
    print((Path(args.out) / "results.md").read_text())
    print(f"results in {args.out}")
    return 0


def _train(args: argparse.Namespace) -> int:
    from vlp_core.engine.jobs import PROTOCOL_OF_CLASSES, train_one

    protocol = args.protocol or PROTOCOL_OF_CLASSES[args.classes]
    record = train_one(_spec(args, protocol, [args.method]), args.method, args.data, args.classes, args.out,
                       progress=not args.quiet, overwrite=args.overwrite)
    if record is None:  # not the main process of a distributed run
        return 0
    train = record["recipe"]["train"]
    print(f"{args.method} on {record['dataset']}, {args.classes} classes, {record['shots']} shots, seed "
          f"{record['seed']}: {train['epochs']} epochs ({protocol} recipe, {train['precision']})")
    print(_scores(record["test"]) + "  (test split)")
    print(f"prompts saved in {args.out}")
    return 0


def _scores(scores: dict[str, float]) -> str:
    """"acc 45.2 %  acc_global 44.1 %" for a dict of top-1 values."""
    return "  ".join(f"{k} {v:.1f} %" for k, v in scores.items())


def _eval(args: argparse.Namespace) -> int:
    from vlp_core.engine.jobs import evaluate_one, trained_defaults

    defaults = trained_defaults(args.prompts) if args.prompts else {}
    args.data = args.data or defaults.get("dataset")
    if args.data is None:
        raise ValueError(f"the checkpoint in {args.prompts} does not record its data: pass --data" if args.prompts
                         else "pass --data (a SynthWorld suite, or a dataset name with --data-root)")
    for key in ("data_root", "preset", "model", "pretrained"):
        setattr(args, key, getattr(args, key) or defaults.get(key))
    args.shots = args.shots or [defaults.get("shots", 16)]
    args.seeds = args.seeds or [defaults.get("seed", 1)]
    spec = _spec(args, "fewshot", [args.method])
    spec.class_order = defaults.get("class_order", "label")
    result = evaluate_one(spec, args.prompts, args.method, args.data, args.classes, progress=not args.quiet)
    names = result["class_names"]
    shown = ", ".join(names[:6]) + (", ..." if len(names) > 6 else "")
    print(f"{result['method']} on {result['dataset']}, {result['split']} split, {args.classes} classes "
          f"({len(names)}: {shown})")
    print(_scores(result["scores"]))
    return 0


def _recipe(args: argparse.Namespace) -> int:
    from vlp_core.data.synthworld import list_suites
    from vlp_core.engine.jobs import synth_num_classes
    from vlp_core.engine.recipes import recipe
    from vlp_core.methods.registry import method_class, method_config

    rule = args.rule or ("synth" if args.dataset in list_suites() else "paper")
    num_classes = synth_num_classes(args.protocol, args.dataset) if rule == "synth" else None
    cls = method_class(args.method)
    result = recipe(args.method, args.protocol, args.dataset, args.shots, rule, num_classes, cls.trainable)
    config = method_config(args.method, result.options)
    print(json.dumps({**result.as_dict(), "method_config": dataclasses.asdict(config)}, indent=2))
    return 0


def _bench(args: argparse.Namespace) -> int:
    import tempfile

    from vlp_core.backbone import DEFAULT_MODEL
    from vlp_core.data.synthworld import get_suite, render_benchmark
    from vlp_core.engine.bench import Variant, bench, report
    from vlp_core.engine.trainer import resolve_device
    from vlp_core.methods.registry import method_names

    device = str(resolve_device(args.device))
    classes = [name for suite in args.classes for name in get_suite(suite).classnames]
    options = parse_options(args.set)
    methods = args.methods or method_names()
    with tempfile.TemporaryDirectory(prefix="vlp-bench-") as scratch:
        variants = [Variant("current", options=options)]
        if args.compare:
            variants = [_bench_variant(text, options, Path(scratch)) for text in args.compare]
        result = bench(variants, methods, classes, model=args.model or DEFAULT_MODEL,
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
        extra = parse_options(text.split()) if "=" in text else {}
        merged = {m: {**options.get(m, {}), **extra.get(m, {})} for m in {*options, *extra}}
        return Variant(text if text.strip() else "defaults", options=merged)
    return Variant(text, root=checkout(text, scratch), options=options)


def _diagnose(args: argparse.Namespace) -> int:
    from vlp_core.backbone import DEFAULT_MODEL, load_clip
    from vlp_core.engine.diagnose import diagnose, write_diagnosis
    from vlp_core.engine.jobs import JobSpec, diagnosis_datasets
    from vlp_core.engine.trainer import resolve_device

    clip = load_clip(args.model or DEFAULT_MODEL, args.pretrained, device=resolve_device(args.device))
    spec = JobSpec(protocol="diagnose", methods=[], preset=args.preset or "synth", data_root=args.data_root)
    datasets, ood_pairs = diagnosis_datasets(spec, clip, args.data, args.ood)
    report = diagnose(clip, datasets, ood_pairs, shots=args.shots, seeds=args.seeds, n_test=args.n_test)
    path = write_diagnosis(report, args.out)
    print(path.read_text())
    print(f"diagnosis in {args.out} (diagnosis.md, diagnosis.json, headroom.png)")
    return 0


def _pretrain_synth(args: argparse.Namespace) -> int:
    from vlp_core.backbone.loading import ASSETS_DIR
    from vlp_core.engine.pretrain_synth import PretrainConfig, pretrain_synth
    from vlp_core.engine.synth_report import precondition_failures, write_model_card
    from vlp_core.engine.trainer import resolve_device

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


def _add_data(parser: argparse.ArgumentParser, seeds=(1, 2, 3), shots=(16,)) -> None:
    parser.add_argument("--preset", default=None, help="synth (SynthWorld, CPU; the default) or vitb16 "
                                                       "(ViT-B/16 and the papers' recipes)")
    parser.add_argument("--seeds", nargs="+", type=int, default=list(seeds) if seeds else None)
    parser.add_argument("--shots", nargs="+", type=int, default=list(shots) if shots else None)
    parser.add_argument("--data-root", default=None, help="folder holding the CoOp-format datasets")


def _add_backbone(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=None, help="bundled model (default synth-clip), model folder or "
                                                      "open_clip architecture (e.g. ViT-B-16-quickgelu)")
    parser.add_argument("--pretrained", default=None, help="open_clip tag (e.g. openai) or checkpoint path")


def _add_run(parser: argparse.ArgumentParser, out_help: str) -> None:
    """What a command that trains takes besides its data: options, epochs, output, overwrite, quiet."""
    parser.add_argument("--set", nargs="*", default=[], metavar="METHOD.OPTION=VALUE",
                        help="method options over the recipe's, e.g. disa.dir_loss=mse gallop.dropout=0")
    parser.add_argument("--epochs", type=int, default=None, help="override the recipe's epochs")
    parser.add_argument("--out", required=True, help=out_help)
    parser.add_argument("--overwrite", action="store_true",
                        help="start afresh: discard checkpoints in --out instead of resuming them")
    parser.add_argument("--quiet", action="store_true", help="no progress bars, no log lines")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vlp", description="DiSa and GalLoP prompt learning for CLIP.")
    commands = parser.add_subparsers(dest="command", required=True)

    info = commands.add_parser(
        "info", help="load a CLIP and describe it", description="Load a CLIP and describe it.",
        epilog="examples:\n  vlp info\n  vlp info --model ViT-B-16-quickgelu --pretrained openai\n"
        "  vlp info --model ViT-B-16-quickgelu --pretrained /path/to/ViT-B-16.pt", formatter_class=RAW)
    _add_backbone(info)
    info.set_defaults(run=_info)

    proto = commands.add_parser(
        "protocol", help="run a paper protocol (base2novel, fewshot, dg, xd, ood)",
        description="Run a protocol for several methods and seeds with each method's recipe (`vlp recipe`); "
        "write results.md/csv/json, plots and the exact config to --out. Every (method, dataset, seed, K) is an "
        "independent run with its own folder under --out/runs: finished runs are collected, not run again, "
        "interrupted runs resume from their checkpoints, and runs can go to several processes at once (--jobs) "
        "or to a SLURM cluster (--launcher submitit); dg, xd and ood train their source (ImageNet, or shapes) "
        "once per method and seed.",
        epilog="examples:\n"
        "  vlp protocol base2novel --methods zeroshot coop ivlp promptsrc disa gallop --out results/b2n\n"
        "  vlp protocol fewshot --methods coop disa --shots 1 2 4 8 16 --datasets shapes --out results/fs\n"
        "  vlp protocol dg --methods disa gallop --out results/dg          # shapes -> its style domains\n"
        "  vlp protocol xd --methods disa gallop --prompts results/dg --out results/xd   # reuse dg's sources\n"
        "  vlp protocol ood --methods zeroshot gallop --out results/ood\n"
        "  vlp protocol base2novel --methods disa --set disa.mask_ratio=0.2 --seeds 1 --out results/r02\n"
        "  vlp protocol base2novel --preset vitb16 --data-root /data/coop --methods disa --out results/vitb16\n"
        "  vlp protocol fewshot --preset vitb16 --data-root /data/coop --methods gallop --sampling "
        "stratified_total \\\n      --trainval FGVCAircraft --class-order first_appearance --seeds 1 --out results/g\n"
        "  vlp protocol base2novel --preset vitb16 --data-root /data/coop --jobs 8 --out results/b2n   # 8 GPUs\n"
        "  vlp protocol base2novel --preset vitb16 --data-root /data/coop --launcher submitit \\\n"
        "      --slurm slurm_partition=gpu timeout_min=240 --out results/b2n                  # SLURM",
        formatter_class=RAW)
    proto.add_argument("protocol", choices=PROTOCOLS)
    proto.add_argument("--methods", nargs="+", default=None, choices=MethodNames(), metavar="METHOD",
                       help="methods to run (%(choices)s; default: all)")
    _add_data(proto)
    proto.add_argument("--datasets", nargs="+", default=None,
                       help="datasets (or, for dg/xd/ood, targets / OOD sets); default: the preset's")
    proto.add_argument("--prompts", default=None, metavar="DIR",
                       help="dg/xd/ood: take the trained sources from DIR (an earlier dg/xd/ood --out, or a "
                            "`vlp train` folder) instead of training them")
    proto.add_argument("--sampling", choices=["per_class", "stratified_total"], default="per_class",
                       help="few-shot draw: K per class (CoOp, default) or a stratified K x C sample (GalLoP)")
    proto.add_argument("--trainval", nargs="+", default=[], metavar="DATASET",
                       help="datasets trained on train + val (GalLoP: FGVCAircraft)")
    proto.add_argument("--class-order", choices=["label", "first_appearance"], default="label",
                       help="class indices: the split file's labels (CoOp, default) or order of first appearance "
                            "(GalLoP)")
    proto.add_argument("--fpr95", choices=["threshold", "closest"], default="threshold",
                       help="ood: FPR at the largest threshold keeping >= 95%% of ID (default) or at the TPR "
                            "closest to 95%% (GalLoP's and MCM's code)")
    proto.add_argument("--jobs", type=int, default=None, metavar="N",
                       help="runs at once: local processes, one GPU each when there are GPUs (default 1: one "
                            "after the other in this process); with submitit, jobs at once (default: no limit)")
    proto.add_argument("--launcher", choices=["local", "submitit"], default="local",
                       help="local (this machine, default) or submitit (a SLURM cluster; pip install "
                            "'vlp-lab[cluster]'): one job per run, each with its own folder")
    proto.add_argument("--slurm", nargs="*", default=[], metavar="KEY=VALUE",
                       help="submitit parameters, e.g. slurm_partition=gpu slurm_account=lab timeout_min=240 "
                            "mem_gb=32 (default: 1 GPU, --workers + 1 CPUs, 720 minutes per job)")
    _add_run(proto, "results folder")
    _add_backbone(proto)
    add_device_arguments(proto)
    proto.set_defaults(run=_protocol)

    tr = commands.add_parser(
        "train", help="train one method on one dataset and save its prompts",
        description="Train one method (K shots, first seed) with its recipe and save its learned tensors "
        "(safetensors + JSON) and a run record in --out; a killed run continues from there when started again. "
        "An --out that holds another run (other data, classes, shots, seed, options or recipe) is refused.",
        epilog="examples:\n  vlp train --method disa --data shapes --classes base --out runs/disa-shapes\n"
        "  vlp train --method gallop --data colour_shapes --set gallop.topk=[5,10,15,20] --out runs/g\n"
        "  vlp train --method disa --preset vitb16 --data-root /data/coop --data Caltech101 --out runs/c",
        formatter_class=RAW)
    tr.add_argument("--method", required=True, choices=MethodNames(trainable=True), metavar="METHOD",
                    help="%(choices)s")
    tr.add_argument("--data", default="shapes", help="SynthWorld suite, or a dataset name with --data-root")
    tr.add_argument("--classes", default="base", choices=["all", "base"])
    tr.add_argument("--protocol", choices=PROTOCOLS, default=None,
                    help="whose recipe to train with (default: base2novel for base classes, fewshot for all)")
    _add_run(tr, "folder for the prompts")
    _add_data(tr)
    _add_backbone(tr)
    add_device_arguments(tr)
    tr.set_defaults(run=_train)

    ev = commands.add_parser(
        "eval", help="evaluate saved prompts (or zero-shot CLIP) on a test split",
        description="Top-1 accuracy of prompts saved by `vlp train`, or of a method without training. "
        "Data, preset, model, shots and seed default to what the prompts were trained with.",
        epilog="examples:\n  vlp eval --prompts runs/disa-shapes --classes novel\n"
        "  vlp eval --method zeroshot --data colour_shapes --classes all", formatter_class=RAW)
    ev.add_argument("--prompts", default=None, help="folder written by `vlp train`")
    ev.add_argument("--method", default="zeroshot", choices=MethodNames(), metavar="METHOD",
                    help="used without --prompts: %(choices)s")
    ev.add_argument("--data", default=None, help="default: the data the prompts were trained on")
    ev.add_argument("--classes", default="all", choices=["all", "base", "novel"])
    ev.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_data(ev, seeds=None, shots=None)
    _add_backbone(ev)
    add_device_arguments(ev, precision=False)
    ev.set_defaults(run=_eval)

    rc = commands.add_parser(
        "recipe", help="print the recipe of (method, protocol, dataset, shots) as JSON",
        description="The training settings and method options a run of METHOD on DATASET (K shots) in PROTOCOL "
        "uses: the papers' official values, or their CPU-sized version for SynthWorld suites.",
        epilog="examples:\n  vlp recipe --method disa --protocol fewshot --dataset EuroSAT --shots 4\n"
        "  vlp recipe --method gallop --protocol dg --dataset ImageNet\n"
        "  vlp recipe --method disa --protocol base2novel --dataset shapes", formatter_class=RAW)
    rc.add_argument("--method", required=True, choices=MethodNames(), metavar="METHOD", help="%(choices)s")
    rc.add_argument("--protocol", required=True, choices=PROTOCOLS)
    rc.add_argument("--dataset", required=True, help="the dataset trained on (dg/xd/ood: the source, ImageNet)")
    rc.add_argument("--shots", type=int, default=16)
    rc.add_argument("--rule", choices=["paper", "synth"], default=None,
                    help="paper or synth (CPU-sized); default: synth for SynthWorld suites")
    rc.set_defaults(run=_recipe)

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
    be.add_argument("--methods", nargs="+", default=None, choices=MethodNames(), metavar="METHOD",
                    help="%(choices)s (default: all)")
    be.add_argument("--classes", nargs="+", default=["shapes"],
                    help="SynthWorld suites whose class names are used, one after the other")
    be.add_argument("--batch-size", type=int, default=32)
    be.add_argument("--steps", type=int, default=5, help="timed rounds (after one untimed warm-up)")
    be.add_argument("--set", nargs="*", default=[], metavar="METHOD.OPTION=VALUE", help="method options")
    be.add_argument("--compare", nargs=2, default=None, metavar=("A", "B"),
                    help="time two versions and print B / A: git revisions of this checkout (e.g. main; "
                    "'.' is the code running now) or option sets ('disa.mask_ratio=0.5'; '' for the defaults)")
    _add_backbone(be)
    add_device_arguments(be, workers=False, precision=False)
    be.set_defaults(run=_bench)

    dia = commands.add_parser(
        "diagnose", help="does prompt learning have room? zero-shot vs few-shot probes, localisation, OOD",
        description="Measure a frozen CLIP on datasets: zero-shot top-1 (single template and ensemble), "
        "K-shot class-mean and linear-probe top-1 of the frozen image features and their gap to zero-shot "
        "(headroom), the pointing game of patch and value-only local features where masks exist, and "
        "zero-shot MCM OOD detection. Writes diagnosis.md/json and headroom.png to --out.",
        epilog="examples:\n  vlp diagnose                                    # synth-clip on every SynthWorld suite\n"
        "  vlp diagnose --data shapes colour_shapes --seeds 1 --out results/diag\n"
        "  vlp diagnose --model ViT-B-16-quickgelu --pretrained openai --data-root /data/coop "
        "--data Caltech101 DTD --ood ImageNet:Textures", formatter_class=RAW)
    dia.add_argument("--data", nargs="+", default=None,
                     help="datasets (default: every SynthWorld classification suite and style domain)")
    dia.add_argument("--ood", nargs="*", default=None, metavar="ID:OOD",
                     help="in-distribution:OOD dataset pairs (default with SynthWorld: shapes:ood)")
    dia.add_argument("--shots", type=int, default=16)
    dia.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    dia.add_argument("--n-test", type=int, default=None, help="first N test images per dataset (default: all)")
    dia.add_argument("--preset", default=None, help="synth (SynthWorld, the default) or vitb16 (CoOp datasets)")
    dia.add_argument("--data-root", default=None, help="folder holding the CoOp-format datasets")
    dia.add_argument("--out", default="results/diagnosis")
    _add_backbone(dia)
    add_device_arguments(dia, workers=False, precision=False)
    dia.set_defaults(run=_diagnose)

    pre = commands.add_parser(
        "pretrain-synth", help="pretrain the bundled small CLIP on SynthWorld",
        description="Pretrain the small CLIP on SynthWorld (image tower on the world's factors, then the "
        "text tower contrastively against it; resumable), then measure its preconditions and write its "
        "model card.",
        epilog="examples:\n  vlp pretrain-synth                       # the bundled model, resumes if killed\n"
        "  vlp pretrain-synth --image-steps 200 --text-steps 100 --out runs/synth-small", formatter_class=RAW)
    pre.add_argument("--out", default=None, help="output folder, local-dir layout (default: assets/synth-clip)")
    pre.add_argument("--image-steps", type=int, default=None, help="stage 1, the image tower (default: the bundled model's)")
    pre.add_argument("--text-steps", type=int, default=None, help="stage 2, the text tower (default: the bundled model's)")
    pre.add_argument("--lr", type=float, default=None, help="default: the bundled model's")
    pre.add_argument("--seed", type=int, default=None, help="default: the bundled model's")
    pre.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3], help="few-shot seeds of the model card")
    add_device_arguments(pre, workers=False, precision=False)
    pre.add_argument("--restart", action="store_true", help="ignore a saved training state and start over")
    pre.set_defaults(run=_pretrain_synth)
    return parser


def _interrupt(signum, frame) -> None:
    """SIGTERM ends a run as Ctrl-C does: the finished epochs are saved."""
    raise KeyboardInterrupt


def _one_line(error: BaseException) -> str:
    """An error's message; one raised in a DataLoader worker carries the original as its last line."""
    text = (error.args[0] if isinstance(error, KeyError) and error.args else str(error)).strip()
    if "Original Traceback" in text:
        text = text.splitlines()[-1].split(": ", 1)[-1]
    return text or type(error).__name__


def _log_to_stderr(quiet: bool) -> None:
    """The engine's "vlp" log lines (runs, resumes) on stderr, unless `quiet`."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("vlp: %(message)s"))
    logger = logging.getLogger("vlp")
    logger.handlers = [handler]
    logger.setLevel(logging.WARNING if quiet else logging.INFO)
    logger.propagate = False


def _several_processes() -> bool:
    """Whether torchrun started this process as one of several (read without importing torch)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def _join_processes(args: argparse.Namespace) -> None:
    """Under torchrun: join the process group and take this process's device (`vlp train` only)."""
    if args.command != "train":
        raise ValueError(f"only `vlp train` runs over several processes; start `vlp {args.command}` without "
                         f"torchrun (for many runs at once: vlp protocol ... --jobs N or --launcher submitit)")
    from vlp_core.engine import distributed

    args.device = distributed.start(args.device)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    several = _several_processes()
    _log_to_stderr(quiet=getattr(args, "quiet", False) or (several and os.environ.get("RANK") != "0"))
    from vlp_core.engine.trainer import NonFiniteLossError

    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _interrupt) if in_main_thread else None
    try:
        if several:
            _join_processes(args)
        return args.run(args)
    except KeyboardInterrupt as stop:
        print(f"vlp: {stop or 'interrupted'}; run the same command to resume", file=sys.stderr)
        return 130
    except (OSError, ValueError, KeyError, ImportError, NonFiniteLossError) as error:
        print(f"vlp: error: {_one_line(error)}", file=sys.stderr)
        return 2
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)
        if several:
            from vlp_core.engine import distributed

            distributed.stop()


if __name__ == "__main__":
    sys.exit(main())
