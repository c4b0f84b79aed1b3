"""Publish the notebooks, executed in full mode, as Markdown pages with their figures.

    python docs/make_notebook_pages.py                      # every notebook in notebooks/
    python docs/make_notebook_pages.py 03_disa_saliency     # one page (names without .ipynb)

Runs each notebook top to bottom on a fresh `python3` kernel with `VLP_FAST` unset (full mode, the
bundled model unless the notebook says otherwise, `VLP_PAGE=1`: interactive widgets drawn once at their
initial values) and this checkout's `vlp_core` first on the path,
then writes `docs/notebooks/<name>.md` with its figures in `docs/notebooks/<name>_files/`, and the
index `docs/notebooks/README.md`. The committed notebooks stay stripped of outputs. Each page
records the SHA-256 of its notebook's cells (type and source, outputs ignored):
`tests/test_notebook_pages.py` fails when a notebook changed after its page was made. Progress bars
and warnings (stderr) are left out of the pages. Needs only nbformat, nbclient and nbconvert
(installed with jupyterlab); set OMP_NUM_THREADS to the cores to use.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
PAGES = ROOT / "docs" / "notebooks"
HASH_LINE = "<!-- notebook cells sha256: {} -->"
HASH_PATTERN = re.compile(r"<!-- notebook cells sha256: ([0-9a-f]{64}) -->")
LINK = re.compile(r"(\]\()([^)\s]+)(\))")  # a Markdown link's or picture's target
FAST_ENV = "VLP_FAST"
PAGE_ENV = "VLP_PAGE"  # set for the kernels: a live widget is drawn once, as its page shows it


def cells_hash(notebook: dict) -> str:
    """SHA-256 of a notebook's cells, each as (type, source): outputs and metadata do not count."""
    cells = [(cell["cell_type"], "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"])
             for cell in notebook["cells"]]
    return hashlib.sha256(json.dumps(cells, ensure_ascii=False).encode("utf-8")).hexdigest()


def recorded_hash(page: str) -> str | None:
    """The cells hash a page was made from, or None when the page records none."""
    found = HASH_PATTERN.search(page)
    return found.group(1) if found else None


def title(notebook: dict) -> str:
    """The first Markdown heading of a notebook (its first cell), without the '#'."""
    first = "".join(notebook["cells"][0]["source"]).splitlines()[0]
    return first.lstrip("#").strip()


def execute(path: Path):
    """The notebook at `path` run in full mode on a fresh kernel, in its own folder -> nbformat node."""
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.read(path, as_version=4)
    NotebookClient(notebook, timeout=None, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    return notebook


def drop_stderr(notebook) -> None:
    """Remove the stderr streams (progress bars, warnings) from every code cell's outputs."""
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.outputs = [out for out in cell.outputs if not (out.output_type == "stream" and out.name == "stderr")]


def relink(markdown: str, figures: str) -> str:
    """Links written relative to notebooks/ made relative to docs/notebooks/ (web addresses,
    anchors and the page's own `figures` folder unchanged)."""
    def move(match: re.Match) -> str:
        target = match.group(2)
        if re.match(r"[a-z]+:|#|/", target) or target.startswith(f"{figures}/"):
            return match.group(0)
        moved = os.path.relpath(os.path.normpath(NOTEBOOKS / target), PAGES)
        return f"{match.group(1)}{Path(moved).as_posix()}{match.group(3)}"

    return LINK.sub(move, markdown)


def write_page(notebook, name: str, digest: str, seconds: float) -> Path:
    """docs/notebooks/<name>.md and its figures folder from an executed notebook -> the page's path."""
    from nbconvert import MarkdownExporter

    figures = PAGES / f"{name}_files"
    shutil.rmtree(figures, ignore_errors=True)
    body, resources = MarkdownExporter().from_notebook_node(notebook, resources={"output_files_dir": f"{name}_files"})
    for relative, data in resources["outputs"].items():
        target = PAGES / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    header = (f"{HASH_LINE.format(digest)}\n"
              f"*[`notebooks/{name}.ipynb`](../../notebooks/{name}.ipynb) executed in full mode "
              f"({seconds:.0f} s on {os.environ.get('OMP_NUM_THREADS', 'all')} CPU thread(s)); "
              f"regenerate with `python docs/make_notebook_pages.py {name}`. [All notebooks](README.md)*\n\n")
    page = PAGES / f"{name}.md"
    page.write_text(header + relink(body.strip(), figures.name) + "\n", encoding="utf-8")
    return page


def write_index() -> Path:
    """docs/notebooks/README.md: one link per published page, in notebook order."""
    lines = ["# The notebooks, executed", "",
             "Each page is a notebook of `notebooks/` run top to bottom in full mode on the bundled model, with its",
             "printed numbers and figures. Regenerate them all with `python docs/make_notebook_pages.py`.", ""]
    for path in sorted(NOTEBOOKS.glob("*.ipynb")):
        if (PAGES / f"{path.stem}.md").exists():
            lines.append(f"- [{title(json.loads(path.read_text(encoding='utf-8')))}]({path.stem}.md)")
    index = PAGES / "README.md"
    index.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return index


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="notebook names without .ipynb (default: all)")
    args = parser.parse_args(argv)
    paths = [NOTEBOOKS / f"{name}.ipynb" for name in args.names] or sorted(NOTEBOOKS.glob("*.ipynb"))
    missing = [str(path) for path in paths if not path.exists()]
    if missing:
        print(f"make_notebook_pages: no such notebook: {', '.join(missing)}", file=sys.stderr)
        return 2
    os.environ.pop(FAST_ENV, None)  # full mode: the kernels inherit this environment
    os.environ[PAGE_ENV] = "1"  # a page cannot move a slider, and a live widget's output can hang nbclient
    # the kernels import this checkout's vlp_core, whatever copy the environment has installed
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, (str(ROOT), os.environ.get("PYTHONPATH"))))
    PAGES.mkdir(parents=True, exist_ok=True)
    for path in paths:
        digest = cells_hash(json.loads(path.read_text(encoding="utf-8")))  # the cells that will run
        start = time.perf_counter()
        notebook = execute(path)
        drop_stderr(notebook)
        seconds = time.perf_counter() - start
        page = write_page(notebook, path.stem, digest, seconds)
        print(f"{page.relative_to(ROOT)}: {seconds:.0f} s", flush=True)
    write_index()
    return 0


if __name__ == "__main__":
    sys.exit(main())
