"""The teaching notebooks: committed clean, fast mode read at the top, formulas taken from vlp_core.

Executing them is nbmake's job (`VLP_FAST=1 pytest --nbmake notebooks/`); these checks are static.
"""

import ast
import inspect
import json
from pathlib import Path

import pytest

import vlp_core.methods.coop
import vlp_core.methods.disa
import vlp_core.methods.gallop
import vlp_core.methods.ood
import vlp_core.methods.promptsrc
import vlp_core.methods.saliency
import vlp_core.methods.topk
from vlp_core.methods.base import PromptMethod

NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "notebooks"
EXPECTED = [
    "01_quick_start", "02_coop_to_ivlp", "03_disa_saliency", "04_disa_regularisers", "05_gallop_local",
    "06_gallop_dropout_multiscale", "07_ood_detection", "08_ablations", "09_real_clip_and_data", "11_your_own_images",
]
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
FAST_LINE = 'FAST = os.environ.get("VLP_FAST") == "1"'
# Calls that would mean a notebook computes a loss itself instead of asking the method for it.
LOSS_PRIMITIVES = {"cross_entropy", "kl_div", "log_softmax", "l1_loss", "mse_loss", "cosine_embedding_loss"}


def _core_helpers() -> set[str]:
    """Names of the functions the method modules define (losses, saliency, top-k, OOD scores, ...)."""
    modules = (vlp_core.methods.coop, vlp_core.methods.promptsrc, vlp_core.methods.disa, vlp_core.methods.saliency,
               vlp_core.methods.gallop, vlp_core.methods.topk, vlp_core.methods.ood)
    names = {name for module in modules for name, value in vars(module).items()
             if inspect.isfunction(value) and value.__module__ == module.__name__}
    classes, todo = [], [PromptMethod]
    while todo:  # every method class, subclasses of subclasses included
        cls = todo.pop()
        classes.append(cls)
        todo += cls.__subclasses__()
    methods = {name for cls in classes for name in vars(cls) if not name.startswith("__")}
    return names | methods


def _load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def _code_cells(notebook: dict) -> list[str]:
    return ["".join(cell["source"]) for cell in notebook["cells"] if cell["cell_type"] == "code"]


def _python(source: str) -> str:
    """Cell source with IPython magics and shell lines commented out, so `ast` can parse it."""
    return "\n".join("# " + line if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines())


def test_the_notebooks_are_there():
    assert [p.stem for p in NOTEBOOKS] == EXPECTED


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_kernelspec_is_python3(path):
    spec = _load(path)["metadata"]["kernelspec"]
    assert spec == {"name": "python3", "display_name": "Python 3", "language": "python"}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_outputs_are_stripped(path):
    notebook = _load(path)
    assert notebook["nbformat"] == 4
    for cell in notebook["cells"]:
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [], f"{path.name}: a code cell has outputs"
            assert cell["execution_count"] is None, f"{path.name}: a code cell has an execution count"
        assert "attachments" not in cell or not cell["attachments"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_fast_mode_is_read_at_the_top(path):
    notebook = _load(path)
    assert notebook["cells"][0]["cell_type"] == "markdown"
    assert "".join(notebook["cells"][0]["source"]).startswith("# ")
    first_code = _code_cells(notebook)[0]
    assert "import os" in first_code and FAST_LINE in first_code
    assert sum(FAST_LINE in source for source in _code_cells(notebook)) == 1


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_cell_parses_and_imports_come_from_vlp_core(path):
    sources = [_python(source) for source in _code_cells(_load(path))]
    trees = [ast.parse(source) for source in sources]
    imported = {node.module.split(".")[0] for tree in trees for node in ast.walk(tree)
                if isinstance(node, ast.ImportFrom) and node.module}
    imported |= {alias.name.split(".")[0] for tree in trees for node in ast.walk(tree)
                 if isinstance(node, ast.Import) for alias in node.names}
    assert "vlp_core" in imported


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_no_method_is_reimplemented(path):
    helpers = _core_helpers()
    for source in _code_cells(_load(path)):
        for node in ast.walk(ast.parse(_python(source))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                assert node.name not in helpers, f"{path.name} defines {node.name}(), a vlp_core helper"
            if isinstance(node, ast.ClassDef):
                assert not node.bases, f"{path.name} defines a subclass ({node.name}); methods live in vlp_core"
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                assert node.func.attr not in LOSS_PRIMITIVES, f"{path.name} calls {node.func.attr}: use the method's loss"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_figures_are_inline_after_the_imports(path):
    """`%matplotlib inline` must follow the vlp_core imports: vlp_core.experiments.results selects the Agg
    backend when imported, which would otherwise hide every figure of the notebook."""
    cells = _code_cells(_load(path))
    with_magic = [i for i, source in enumerate(cells) if "%matplotlib inline" in source.splitlines()]
    assert len(with_magic) == 1
    later_imports = [line for source in cells[with_magic[0] + 1:] for line in source.splitlines()
                     if line.startswith(("from vlp_core", "import vlp_core"))]
    assert later_imports == [], f"{path.name} imports vlp_core after enabling inline figures"
    lines = cells[with_magic[0]].splitlines()
    last_import = max(i for i, line in enumerate(lines) if line.startswith(("from ", "import ")))
    assert lines.index("%matplotlib inline") > last_import
