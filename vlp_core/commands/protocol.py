"""`vlp protocol`: run a paper protocol for several methods and seeds."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from vlp_core.commands.common import (
    METHODS,
    PROTOCOLS,
    add_backbone_arguments,
    add_data_arguments,
    add_device_arguments,
    add_run_arguments,
    check_out,
    parse_options,
    parse_parameters,
    parse_rule_options,
)

HELP = "run a paper protocol (base2novel, fewshot, dg, xd, ood)"
DESCRIPTION = (
    "Run a protocol for several methods and seeds with each method's recipe (`vlp recipe`); write "
    "results.md/csv/json, plots and the exact config to --out. Every (method, dataset, seed, K) is an "
    "independent run with its own folder under --out/runs: finished runs are collected, not run again, "
    "interrupted runs resume from their checkpoints, and runs can go to several processes at once (--jobs) "
    "or to a SLURM cluster (--launcher submitit); dg, xd and ood train their source (ImageNet, or shapes) "
    "once per method and seed. Each run folder keeps its metrics (metrics.jsonl, curves.png; `vlp runs` lists "
    "them). --datasets also takes the paths of your own images (a folder of class folders or a CoOp split "
    ".json). --dry-run trains nothing and says what each run and the whole job will cost.")
EXAMPLES = """\
  vlp protocol base2novel --methods zeroshot coop ivlp promptsrc disa gallop --out results/b2n
  vlp protocol fewshot --methods coop disa --shots 1 2 4 8 16 --datasets shapes --out results/fs
  vlp protocol dg --methods disa gallop --out results/dg          # shapes -> its style domains
  vlp protocol xd --methods disa gallop --prompts results/dg --out results/xd   # reuse dg's sources
  vlp protocol ood --methods zeroshot gallop --out results/ood
  vlp protocol base2novel --methods disa --set disa.mask_ratio=0.2 --seeds 1 --out results/r02
  vlp protocol fewshot --methods coop disa --shots 1 2 4 --datasets ~/my_photos --out results/mine
  vlp protocol base2novel --methods disa gallop --dry-run --out results/b2n     # what it will cost
  vlp protocol base2novel --preset vitb16 --data-root /data/coop --methods disa --out results/vitb16
  vlp protocol fewshot --preset vitb16 --data-root /data/coop --methods gallop --sampling stratified_total \\
      --trainval FGVCAircraft --class-order first_appearance --seeds 1 --out results/g
  vlp protocol base2novel --preset vitb16 --data-root /data/coop --jobs 8 --out results/b2n   # 8 GPUs
  vlp protocol base2novel --preset vitb16 --data-root /data/coop --launcher submitit \\
      --slurm slurm_partition=gpu timeout_min=240 --out results/b2n                  # SLURM"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("protocol", choices=PROTOCOLS, metavar="PROTOCOL", help="%(choices)s")
    parser.add_argument("--methods", nargs="+", default=None, choices=METHODS, metavar="METHOD",
                        help="methods to run (%(choices)s; default: all)")
    add_data_arguments(parser)
    parser.add_argument("--datasets", nargs="+", default=None,
                        help="datasets (or, for dg/xd/ood, targets / OOD sets); default: the preset's")
    parser.add_argument("--prompts", default=None, metavar="DIR",
                        help="dg/xd/ood: take the trained sources from DIR (an earlier dg/xd/ood --out, or a "
                             "`vlp train` folder) instead of training them")
    parser.add_argument("--sampling", choices=["per_class", "stratified_total"], default="per_class",
                        help="few-shot draw: K per class (CoOp, default) or a stratified K x C sample (GalLoP)")
    parser.add_argument("--trainval", nargs="+", default=[], metavar="DATASET",
                        help="datasets trained on train + val (GalLoP: FGVCAircraft)")
    parser.add_argument("--class-order", choices=["label", "first_appearance"], default="label",
                        help="class indices: the split file's labels (CoOp, default) or order of first appearance "
                             "(GalLoP)")
    parser.add_argument("--fpr95", choices=["threshold", "closest"], default="threshold",
                        help="ood: FPR at the largest threshold keeping >= 95%% of ID (default) or at the TPR "
                             "closest to 95%% (GalLoP's and MCM's code)")
    parser.add_argument("--jobs", type=int, default=None, metavar="N",
                        help="runs at once: local processes, one GPU each when there are GPUs (default 1: one "
                             "after the other in this process); with submitit, jobs at once (default: no limit)")
    parser.add_argument("--launcher", choices=["local", "submitit"], default="local",
                        help="local (this machine, default) or submitit (a SLURM cluster; pip install "
                             "'vlp-lab[cluster]'): one job per run, each with its own folder")
    parser.add_argument("--slurm", nargs="*", default=[], metavar="KEY=VALUE",
                        help="submitit parameters, e.g. slurm_partition=gpu slurm_account=lab timeout_min=240 "
                             "mem_gb=32 (default: 1 GPU, --workers + 1 CPUs, 720 minutes per job)")
    add_run_arguments(parser, "results folder")
    add_backbone_arguments(parser)
    add_device_arguments(parser)


def job_spec(args: argparse.Namespace):
    """The `JobSpec` of a `vlp protocol` command line."""
    from vlp_core.experiments.spec import JobSpec

    return JobSpec(protocol=args.protocol, methods=args.methods, preset=args.preset, datasets=args.datasets,
                   seeds=args.seeds, shots=args.shots, model=args.model, pretrained=args.pretrained,
                   data_root=args.data_root, method_options=parse_options(args.set),
                   rule_options=parse_rule_options(args.rule), epochs=args.epochs,
                   device=args.device, precision=args.precision, workers=args.workers, sampling=args.sampling,
                   trainval=args.trainval, class_order=args.class_order, fpr95_rule=args.fpr95,
                   source_prompts=args.prompts)


def launcher(args: argparse.Namespace):
    """Where the runs go: this process (None), local processes, or submitit."""
    from vlp_core.experiments.launchers import LocalLauncher, SubmititLauncher

    if args.launcher == "submitit":
        return SubmititLauncher(Path(args.out) / "submitit", args.jobs, parse_parameters(args.slurm), args.workers)
    if args.slurm:
        raise ValueError("--slurm sets submitit's parameters: add --launcher submitit")
    return LocalLauncher(args.jobs) if (args.jobs or 1) > 1 else None


def run(args: argparse.Namespace) -> int:
    check_out(args.out, "protocol")
    if args.dry_run:
        from vlp_core.experiments.estimate import estimate_job, render_estimate

        print(render_estimate(estimate_job(job_spec(args))))
        return 0
    from vlp_core.experiments.jobs import RunsFailed, run_job

    try:
        run_job(job_spec(args), args.out, progress=not args.quiet, overwrite=args.overwrite, launcher=launcher(args),
                keep_epochs=args.keep_epochs)
    except RunsFailed as failed:
        print((Path(args.out) / "results.md").read_text())
        print(f"vlp: {failed}", file=sys.stderr)
        return 1
    print((Path(args.out) / "results.md").read_text())
    print(f"results in {args.out}")
    return 0
