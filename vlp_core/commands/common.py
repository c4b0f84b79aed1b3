"""What several `vlp` subcommands share: their flags, the parsing of `--set` and `--slurm` values, and
the lazily read lists of methods and protocols (reading them imports torch, which `vlp --help` must not)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

RAW = argparse.RawDescriptionHelpFormatter


class RegisteredNames:
    """Names read from a registry only when argparse checks a value or prints a command's help:
    the methods (all, or only the trainable ones) or the protocols."""

    def __init__(self, kind: str, trainable: bool | None = None):
        self.kind, self.trainable = kind, trainable

    def _names(self) -> list[str]:
        if self.kind == "protocols":
            from vlp_core.experiments.protocols import PROTOCOLS

            return list(PROTOCOLS)
        from vlp_core.methods.registry import method_names

        return method_names(self.trainable)

    def __contains__(self, name: object) -> bool:
        return name in self._names()

    def __iter__(self):
        return iter(self._names())


METHODS = RegisteredNames("methods")
TRAINABLE_METHODS = RegisteredNames("methods", trainable=True)
PROTOCOLS = RegisteredNames("protocols")


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


def parse_parameters(pairs: list[str], flag: str = "--slurm", example: str = "slurm_partition=gpu timeout_min=240") -> dict:
    """`--slurm slurm_partition=gpu timeout_min=240` -> {"slurm_partition": "gpu", "timeout_min": 240}
    (values read as JSON if they parse); `flag` and `example` name the flag in the error."""
    for pair in pairs:
        if "=" not in pair:
            raise ValueError(f"{flag} takes KEY=VALUE (e.g. {example}), got {pair!r}")
    return {key: _value(raw) for key, raw in (pair.split("=", 1) for pair in pairs)}


def parse_rule_options(pairs: list[str]) -> dict:
    """`--rule steps=960 crop_scale=[0.5,1]` -> {"steps": 960, "crop_scale": [0.5, 1]}."""
    return parse_parameters(pairs, "--rule", "steps=960 crop_scale=[0.5,1.0]")


def add_device_arguments(parser: argparse.ArgumentParser, workers: bool = True, precision: bool = True) -> None:
    """--device (and --workers, --precision): the run-time choices every command that computes takes."""
    parser.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda when available, else cpu)")
    if workers:
        parser.add_argument("--workers", type=int, default=0, help="image-decoding processes per loader (default 0)")
    if precision:
        parser.add_argument("--precision", choices=["fp16", "bf16", "fp32"], default=None,
                            help="autocast precision (default: fp16 with a grad scaler on CUDA, as the papers' "
                                 "code; fp32 on the CPU)")


def add_data_arguments(parser: argparse.ArgumentParser, seeds=(1, 2, 3), shots=(16,), preset: str | None = "synth") -> None:
    """--preset, --seeds, --shots, --data-root."""
    parser.add_argument("--preset", default=preset, help="synth (SynthWorld, CPU; the default) or vitb16 "
                                                         "(ViT-B/16 and the papers' recipes)")
    parser.add_argument("--seeds", nargs="+", type=int, default=list(seeds) if seeds else None)
    parser.add_argument("--shots", nargs="+", type=int, default=list(shots) if shots else None)
    parser.add_argument("--data-root", default=None, help="folder holding the CoOp-format datasets")


def add_backbone_arguments(parser: argparse.ArgumentParser) -> None:
    """--model, --pretrained."""
    parser.add_argument("--model", default=None, help="bundled model (default synth-clip), model folder or "
                                                      "open_clip architecture (e.g. ViT-B-16-quickgelu)")
    parser.add_argument("--pretrained", default=None, help="open_clip tag (e.g. openai) or checkpoint path")


# what each command writes into its --out (a folder holds one command's output): the files that mark it
OUTPUTS = {
    "train": ("run.json", "checkpoint.json", "metrics.jsonl"),
    "protocol": ("results.json", "results.md", "config.json", "rows.json"),
    "diagnose": ("diagnosis.json", "diagnosis.md", "headroom.png"),
    "pretrain-synth": ("training.json", "open_clip_config.json", "pretrain-state", "MODEL_CARD.md", "diagnosis.json"),
}


def check_out(out: str, command: str) -> None:
    """Refuse, before anything loads, an --out that is a file or a folder holding another command's
    output (a folder holds one command's output; `command` is a key of `OUTPUTS`)."""
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise ValueError(f"--out {out} is a file: name a folder (it is made if missing)")
    for other, files in OUTPUTS.items():
        found = [name for name in files if name not in OUTPUTS[command] and (path / name).exists()]
        if other != command and found:
            raise ValueError(f"--out {out} holds the output of `vlp {other}` ({', '.join(found)}): give `vlp {command}` "
                             f"a folder of its own")


def add_run_arguments(parser: argparse.ArgumentParser, out_help: str) -> None:
    """What a command that trains takes besides its data: options, epochs, output, overwrite, quiet,
    kept epochs and a dry run."""
    parser.add_argument("--set", nargs="*", default=[], metavar="METHOD.OPTION=VALUE",
                        help="method options over the recipe's, e.g. disa.dir_loss=mse gallop.dropout=0")
    parser.add_argument("--rule", nargs="*", default=[], metavar="KEY=VALUE",
                        help="the synth rule's budget over its defaults (docs/methods.md): steps=240, batch_size=16, "
                             "min_epochs=5, crop_scale=[0.08,1.0]")
    parser.add_argument("--epochs", type=int, default=None, help="override the recipe's epochs")
    parser.add_argument("--out", required=True, help=out_help)
    parser.add_argument("--overwrite", action="store_true",
                        help="start afresh: discard checkpoints in --out instead of resuming them")
    parser.add_argument("--quiet", action="store_true", help="no progress bars, no log lines")
    parser.add_argument("--keep-epochs", action="store_true",
                        help="also keep every epoch's learned tensors in each run folder (epochs/), for "
                             "`vlp eval --epoch N` (default: only the checkpoint that is scored)")
    parser.add_argument("--dry-run", action="store_true",
                        help="train nothing: list the runs with their steps and recipes, and the time and peak "
                             "memory they will take, measured on a few real training steps")


def scores_line(scores: dict[str, float]) -> str:
    """"acc 45.2 %  acc_global 44.1 %" for a dict of top-1 values."""
    return "  ".join(f"{k} {v:.1f} %" for k, v in scores.items())
