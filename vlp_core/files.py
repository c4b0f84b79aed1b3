"""Writing files so that a reader, or a run killed half-way, never sees half a file."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable


def write_atomically(path: str | Path, write: Callable[[Path], object]) -> None:
    """`write(temporary)` a file beside `path`, then rename it to `path` in one step.

    The temporary name carries this process's id, so processes writing the same file (runs of a
    job drawing the same few-shot split) never write into each other's temporary file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        write(temporary)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def write_text_atomically(path: str | Path, text: str) -> None:
    """`path` holds `text` (UTF-8), written atomically."""
    write_atomically(path, lambda temporary: temporary.write_text(text, encoding="utf-8"))
