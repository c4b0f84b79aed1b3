"""Start the VLP Lab explorer: `python app/main.py [--model M] [--pretrained P] [--prompts DIR] [--data PATH]`.

Loads one CLIP and every method (trained prompts where `--prompts DIR/<method>/` holds a
checkpoint, initial prompts otherwise), builds the app and serves it on 127.0.0.1 unless `--host`
says otherwise. Nothing is trained or downloaded at start-up; no share link unless `--share`.
"""

from __future__ import annotations

import time

STARTED = time.perf_counter()  # before the heavy imports, so start-up times include them

import argparse  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

if __package__ in (None, ""):  # run as a script: make the `app` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # offline first: no usage pings

from app.compute import COMPUTE  # noqa: E402
from app.models import AppModels, load_models  # noqa: E402
from vlp_core.backbone import DEFAULT_MODEL, WeightsNotFoundError, load_clip  # noqa: E402
from vlp_core.backbone.loading import ASSETS_DIR  # noqa: E402

DEFAULT_PROMPTS = ASSETS_DIR / "prompts"
MAX_UPLOAD = "100mb"
CONCURRENCY = 4  # events received at once; their computations take turns on the compute thread


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python app/main.py", description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=DEFAULT_MODEL,
                        help=f"bundled model, model folder or open_clip architecture (default {DEFAULT_MODEL})")
    parser.add_argument("--pretrained", default=None, help="open_clip tag (e.g. openai) or checkpoint path")
    parser.add_argument("--prompts", default=str(DEFAULT_PROMPTS),
                        help="folder with one `vlp train` checkpoint folder per method (default assets/prompts)")
    parser.add_argument("--data", default=None, metavar="PATH",
                        help="your own images: a folder of class folders or a CoOp-format split .json; its test "
                             "images open first in the gallery, labelled in its class names")
    parser.add_argument("--host", default="127.0.0.1", help="address to serve on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=None, help="port (default: gradio's, 7860 or the next free)")
    parser.add_argument("--share", action="store_true", help="also open a public gradio share link")
    return parser.parse_args(argv)


def add_data(path: str) -> None:
    """Open a user's dataset (split on first use, as `vlp train --data PATH` does) and show its test images."""
    from app.inputs import add_own_data
    from vlp_core.data.datasets import open_dataset

    if not Path(path).exists():
        raise ValueError(f"--data {path}: no such folder or file; give a folder of class folders (one folder of "
                         "images per class) or a CoOp-format split .json")
    data = open_dataset(path, splits=("test",))
    add_own_data(data)
    print(f"  data       {data.source}: {len(data.classnames)} classes, {len(data.split('test'))} test images")


def load(model: str, pretrained: str | None, prompts: str | Path | None) -> AppModels:
    """The CLIP and all methods (loaded on the compute thread, like every computation of the
    app), printing where every method's prompts came from."""
    models = COMPUTE.run(lambda: load_models(load_clip(model, pretrained), prompts))
    for name, status in models.status.items():
        print(f"  {name:10s} {status}")
    for notice in models.notices:
        print(f"  notice: {notice}")
    return models


def serve(models: AppModels, host: str = "127.0.0.1", port: int | None = None, share: bool = False):
    """Build the app over `models` and start serving it in a background thread -> the gr.Blocks.

    port None: gradio's default (7860, or the next free port up to 7959). Gradio's own start-up
    lines (and its hint about `share=True`) stay quiet; `main` says where the app is. No run
    history: gradio's page would store every slider step's inputs and outputs in the browser's
    local storage (up to 100 events), re-reading and re-writing all of it on every step, so a
    step's work before its request would grow with every step (docs/performance.md).
    """
    from app.layout import CSS
    from app.ui import build_app

    demo = COMPUTE.run(build_app, models)  # it encodes the landing sample
    demo.queue(default_concurrency_limit=CONCURRENCY)
    demo.launch(server_name=host, server_port=port, share=share, max_file_size=MAX_UPLOAD,
                prevent_thread_lock=True, quiet=True, run_history=False, css=CSS)
    return demo


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if args.data is not None:
            add_data(args.data)
        models = load(args.model, args.pretrained, args.prompts)
    except (WeightsNotFoundError, ValueError) as error:
        print(f"app: error: {error}", file=sys.stderr)
        return 2
    demo = serve(models, args.host, args.port, args.share)
    print(f"VLP Lab ready in {time.perf_counter() - STARTED:.1f} s (imports included) at {demo.local_url}")
    if demo.share_url:
        print(f"public link: {demo.share_url}")
    elif not args.share:
        print("For a public link, start it with --share.")
    demo.block_thread()
    return 0


if __name__ == "__main__":
    sys.exit(main())
