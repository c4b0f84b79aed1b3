"""The `vlp` command: one module per subcommand (`HELP`, `DESCRIPTION`, `EXAMPLES`, `add_arguments(parser)`,
`run(args) -> exit code`), shared flags in `common`.

torch and open_clip are imported by the subcommands' `run`, not here, so `vlp --help` answers at once.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import signal
import sys
import threading

from vlp_core.commands.common import RAW

SUBCOMMANDS = ("info", "protocol", "train", "eval", "runs", "recipe", "compare", "report", "bench", "diagnose",
               "pretrain_synth")


def build_parser() -> argparse.ArgumentParser:
    """The `vlp` parser: one subparser per module of `SUBCOMMANDS` (named with dashes)."""
    parser = argparse.ArgumentParser(prog="vlp", description="DiSa and GalLoP prompt learning for CLIP.")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name in SUBCOMMANDS:
        module = importlib.import_module(f"vlp_core.commands.{name}")
        sub = subparsers.add_parser(name.replace("_", "-"), help=module.HELP, description=module.DESCRIPTION,
                                    epilog="examples:\n" + module.EXAMPLES, formatter_class=RAW)
        module.add_arguments(sub)
        sub.set_defaults(run=module.run)
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


def interrupted(stop: KeyboardInterrupt, command: str) -> str:
    """What a Ctrl-C (or SIGTERM) stopped, and what is kept: a training epoch (the trainer names it; the
    epochs before it are saved), the rest of a command that trains (start-up, scoring, writing), or a
    command that keeps nothing."""
    if str(stop):
        return f"{stop}; the finished epochs are saved: run the same command to resume"
    if command in ("train", "protocol"):
        return ("interrupted outside a training epoch (starting, scoring or writing); finished epochs and runs "
                "are saved: run the same command to resume")
    if command == "pretrain-synth":
        return "interrupted; the last saved training state is kept: run the same command to resume"
    return "interrupted"


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
        print(f"vlp: {interrupted(stop, args.command)}", file=sys.stderr)
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
