"""The teaching notebooks: committed clean, fast mode read at the top, formulas taken from vlp_core, and
every training run on the recipe of the committed results.

Executing them is nbmake's job (`VLP_FAST=1 pytest --nbmake notebooks/`); these checks are static.
"""

import ast
import dataclasses
import inspect
import json
import re
from pathlib import Path

import pytest

import vlp_core.methods.coop
import vlp_core.methods.disa
import vlp_core.methods.gallop
import vlp_core.methods.ood
import vlp_core.methods.promptsrc
import vlp_core.methods.saliency
import vlp_core.methods.topk
from vlp_core.data.synthworld import get_suite
from vlp_core.data.tasks import make_task
from vlp_core.engine.recipes import Recipe, SynthRule
from vlp_core.engine.trainer import TrainConfig
from vlp_core.data.tasks import held_out_classes
from vlp_core.experiments.results import committed_results, write_rows
from vlp_core.experiments.spec import PRESETS, JobSpec
from vlp_core.methods.base import PromptMethod

NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "notebooks"
EXPECTED = [
    "01_quick_start", "02_coop_to_ivlp", "03_disa_saliency", "04_disa_regularisers", "05_gallop_local",
    "06_gallop_dropout_multiscale", "07_ood_detection", "08_ablations", "09_real_clip_and_data",
    "10_what_prompts_learned", "11_your_own_images",
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
    """The nine walkthroughs, in order; later notebooks (10 and on) may follow them."""
    stems = [p.stem for p in NOTEBOOKS]
    assert stems[:len(EXPECTED)] == EXPECTED
    assert all(re.fullmatch(r"(\d{2})_\w+", stem) and int(stem[:2]) > len(EXPECTED) for stem in stems[len(EXPECTED):])


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


# ---------------------------------------------------------------------------- one recipe, everywhere
# A notebook that trains does it through the experiments API on the recipe of the committed results:
# `JobSpec()` (the synth preset's recipe table and rule), fast mode shortening the epochs only.

RECIPE_SHOTS = 16  # the recipe's shots (docs/methods.md, "The synth rule")
SPEC_KEYWORDS = {"protocol", "methods", "datasets", "seeds", "shots", "epochs",
                 "preset", "data_root", "device"}  # which runs, on which preset's data and device
ABLATING = {"06_gallop_dropout_multiscale", "08_ablations"}  # may also pass method_options: the options they ablate
TAKES_A_SPEC = {"Context", "run_job", "train_one", "evaluate_one"}  # their first argument is the job's spec
# Ways around the recipe: a trainer, optimiser settings or a rule of one's own, a few-shot draw or Task
# not made by make_task, a changed copy of a spec or recipe.
FORBIDDEN = {"TrainConfig", "train", "run_recipe", "SynthRule", "synth_sized", "scaled_options", "train_transform",
             "sample_few_shot", "few_shot_split", "Task", "setattr"}
SETTINGS = {f.name for cls in (JobSpec, TrainConfig, Recipe, SynthRule) for f in dataclasses.fields(cls)} | {"spec"}
MUTATORS = {"update", "setdefault", "append", "extend", "insert", "pop", "clear", "__setitem__"}
SUITE_KEYWORDS = {"image_size", "n_test"}  # fewer test images is not a training setting; the training pool is


class _Bindings(ast.NodeVisitor):
    """Every value a name is bound to in a notebook (all cells); None for a binding that cannot be read
    statically (a loop variable, a parameter, an augmented assignment, an import)."""

    def __init__(self):
        self.values: dict[str, list] = {}

    def bind(self, target, value):
        if isinstance(target, ast.Name):
            self.values.setdefault(target.id, []).append(value)
        elif isinstance(target, (ast.Tuple, ast.List)):
            paired = isinstance(value, (ast.Tuple, ast.List)) and len(value.elts) == len(target.elts)
            for i, element in enumerate(target.elts):
                self.bind(element, value.elts[i] if paired else None)
        elif isinstance(target, ast.Starred):
            self.bind(target.value, None)

    def visit_Assign(self, node):
        for target in node.targets:
            self.bind(target, node.value)
        self.generic_visit(node)

    def visit_AnnAssign(self, node):
        self.bind(node.target, node.value)
        self.generic_visit(node)

    def visit_AugAssign(self, node):
        self.bind(node.target, None)
        self.generic_visit(node)

    def visit_NamedExpr(self, node):
        self.bind(node.target, node.value)
        self.generic_visit(node)

    def visit_For(self, node):
        self.bind(node.target, None)
        self.generic_visit(node)

    def visit_comprehension(self, node):
        self.bind(node.target, None)
        self.generic_visit(node)

    def visit_withitem(self, node):
        if node.optional_vars is not None:
            self.bind(node.optional_vars, None)
        self.generic_visit(node)

    def visit_arguments(self, node):
        for arg in [*node.posonlyargs, *node.args, *node.kwonlyargs, node.vararg, node.kwarg]:
            if arg is not None:
                self.values.setdefault(arg.arg, []).append(None)
        self.generic_visit(node)

    def visit_alias(self, node):
        self.values.setdefault((node.asname or node.name).split(".")[0], []).append(None)


def _call_name(node: ast.Call) -> str | None:
    func = node.func
    return func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None


def _argument(node: ast.Call, position: int, keyword: str):
    """The expression passed as positional `position` or as `keyword`, or None."""
    if len(node.args) > position and not any(isinstance(a, ast.Starred) for a in node.args[:position + 1]):
        return node.args[position]
    return next((k.value for k in node.keywords if k.arg == keyword), None)


def _numbered_code_cells(notebook: dict) -> list[tuple[int, str]]:
    """(cell number, source) of each code cell; cells numbered from 1 over all cells, as an editor shows them."""
    return [(number, "".join(cell["source"])) for number, cell in enumerate(notebook["cells"], 1)
            if cell["cell_type"] == "code"]


def recipe_violations(name: str, cells: list[tuple[int, str]]) -> list[str]:
    """Every place where the code `cells` ((number, source) pairs) of notebook `name` could train with
    settings other than the recipe's, as "<notebook> cell <number>, line <line>: <what>".

    The rule is a whitelist, so that an unforeseen way of changing a setting fails rather than passes:
    - a `JobSpec(...)` takes only the protocol (its one positional argument) and the keywords that choose
      the runs (`SPEC_KEYWORDS`), no `**` expansion; `shots` is the recipe's 16; `epochs` is a name
      bound only to `<value> if FAST else None` (fast mode shortens, the full run is the recipe's);
      `preset` names a preset; `method_options` only in the notebooks that ablate (`ABLATING`);
    - `Context`, `run_job`, `train_one` and `evaluate_one` get a spec that is visibly a `JobSpec(...)`
      (the call itself or a name bound only to such calls), and `fit` gets its settings straight from
      `<context>.settings(...)` (or a name bound only to such calls): a settings object cannot be built or
      changed on the way;
    - `make_task` draws the recipe's 16 shots; `get_suite` may shrink the test split only; a loader's
      training crop scale is `<settings>.train.crop_scale`;
    - no trainer, `TrainConfig`, recipe rule, `train_transform`, own few-shot draw or `Task` of one's own
      (neither imported nor called, so an alias does not hide one), no `dataclasses.replace` or
      `setattr`, no `rule_options`, no `.backward()` or `torch.optim` (a training loop of one's own), and
      no assignment to or in-place change of an attribute named like a setting (`spec.epochs = 2`,
      `settings.options.update(...)`).
    """
    trees = [(number, ast.parse(_python(source))) for number, source in cells]
    bindings = _Bindings()
    for _, tree in trees:
        bindings.visit(tree)
    found: list[str] = []

    def resolves(node, accept, depth=0) -> bool:
        """`node` is accepted, or is a name whose every binding is (following names a few levels)."""
        if node is not None and accept(node):
            return True
        if isinstance(node, ast.Name) and depth < 4:
            values = bindings.values.get(node.id, [])
            return bool(values) and all(resolves(v, accept, depth + 1) for v in values)
        return False

    def is_call(name):
        return lambda node: isinstance(node, ast.Call) and _call_name(node) == name

    def is_recipe_shots(node):
        return isinstance(node, ast.Constant) and node.value == RECIPE_SHOTS

    def is_fast_only(node):
        return (isinstance(node, ast.IfExp) and isinstance(node.test, ast.Name) and node.test.id == "FAST"
                and isinstance(node.orelse, ast.Constant) and node.orelse.value is None)

    for number, tree in trees:
        def flag(node, what):
            found.append(f"{name} cell {number}, line {node.lineno}: {what}")

        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                for alias in node.names:
                    if alias.name in FORBIDDEN or (node.module == "dataclasses" and alias.name == "replace"):
                        flag(node, f"imports {alias.name} (train through the experiments API, on ctx.settings)")
            elif isinstance(node, ast.keyword) and node.arg == "rule_options":
                flag(node.value, "passes rule_options (the synth rule is the recipe's)")
            elif isinstance(node, ast.Attribute) and node.attr in ("rule_options", "optim"):
                flag(node, f"uses .{node.attr} (a rule or an optimiser of its own)")
            elif isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                for target in targets:
                    for part in ast.walk(target):
                        if isinstance(part, ast.Attribute) and part.attr in SETTINGS:
                            flag(node, f"assigns to .{part.attr} (a setting of the recipe or the spec)")
            elif isinstance(node, ast.Call):
                called = _call_name(node)
                func = node.func
                if called in FORBIDDEN:
                    flag(node, f"calls {called}() (train through the experiments API, on ctx.settings)")
                if called == "backward":
                    flag(node, "calls .backward() (a training loop of its own)")
                if (isinstance(func, ast.Attribute) and func.attr == "replace" and isinstance(func.value, ast.Name)
                        and func.value.id == "dataclasses"):
                    flag(node, "calls dataclasses.replace (a changed copy of a spec or recipe)")
                if (isinstance(func, ast.Attribute) and func.attr in MUTATORS and isinstance(func.value, ast.Attribute)
                        and func.value.attr in SETTINGS):
                    flag(node, f"changes .{func.value.attr} in place")
                if called == "JobSpec":
                    if len(node.args) > 1 or any(isinstance(a, ast.Starred) for a in node.args):
                        flag(node, "JobSpec takes the protocol as its only positional argument")
                    allowed = SPEC_KEYWORDS | ({"method_options"} if name in ABLATING else set())
                    for keyword in node.keywords:
                        if keyword.arg is None:
                            flag(node, "JobSpec(**...) hides its settings")
                        elif keyword.arg not in allowed:
                            flag(node, f"JobSpec({keyword.arg}=...) changes the recipe")
                        elif keyword.arg == "shots" and not (isinstance(keyword.value, (ast.List, ast.Tuple))
                                                            and all(resolves(e, is_recipe_shots)
                                                                    for e in keyword.value.elts)):
                            flag(node, f"JobSpec(shots=...) must be the recipe's [{RECIPE_SHOTS}]")
                        elif keyword.arg == "epochs" and not (isinstance(keyword.value, ast.Name)
                                                             and resolves(keyword.value, is_fast_only)):
                            flag(node, "JobSpec(epochs=...) must be a name bound only to `<n> if FAST else None`")
                        elif keyword.arg == "preset" and not (isinstance(keyword.value, ast.Constant)
                                                             and keyword.value.value in PRESETS):
                            flag(node, f"JobSpec(preset=...) must name a preset ({', '.join(PRESETS)})")
                if called in TAKES_A_SPEC:
                    if not resolves(_argument(node, 0, "spec"), is_call("JobSpec")):
                        flag(node, f"{called}() must get a JobSpec(...) (the call, or a name bound only to one)")
                if called == "fit":
                    settings = _argument(node, 1, "settings")
                    if not resolves(settings, is_call("settings")):
                        flag(node, "fit() must get its settings from ctx.settings(...)")
                if called == "make_task" and not resolves(_argument(node, 1, "shots"), is_recipe_shots):
                    flag(node, f"make_task() must draw the recipe's {RECIPE_SHOTS} shots")
                if called == "get_suite":
                    for keyword in node.keywords:
                        if keyword.arg not in SUITE_KEYWORDS:
                            flag(node, f"get_suite({keyword.arg or '**'}=...) changes the data drawn from")
                if called == "loader":
                    crop = _argument(node, 3, "train_crop_scale")
                    if crop is not None and not (isinstance(crop, ast.Attribute) and crop.attr == "crop_scale"):
                        flag(node, "a training loader's crop scale must be the recipe's (settings.train.crop_scale)")
    return found


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_training_uses_the_recipe_of_the_committed_results(path):
    violations = recipe_violations(path.stem, _numbered_code_cells(_load(path)))
    assert violations == [], "\n".join(violations)


def test_the_recipe_check_catches_each_way_around_it():
    fast = 'FAST = True\nEPOCHS = 2 if FAST else None\n'
    clean = [fast + 'spec = JobSpec(methods=["disa"], shots=[16], epochs=EPOCHS)\nctx = Context(spec, clip, out)\n'
             'task = make_task(get_suite("shapes", n_test=4), 16, 1)\n'
             'model = fit(ctx, ctx.settings("disa", "base2novel", task), task, out)\n'
             'rows = run_job(JobSpec("fewshot"), out)\nlabel = "a_b".replace("_", " ")']
    assert recipe_violations("x", [(1, clean[0])]) == []
    broken = {
        'JobSpec(shots=[4])': "shots",
        'JobSpec(epochs=3)': "epochs",
        'E = 3\nJobSpec(epochs=E)': "epochs",
        'JobSpec(rule_options={"steps": 10})': "rule_options",
        'JobSpec(precision="bf16")': "precision",
        'JobSpec(**options)': "hides",
        'JobSpec("fewshot", ["coop"])': "positional",
        'JobSpec(method_options={"gallop": {}})': "method_options",
        'Context(spec_of_my_own, clip, out)': "Context",
        'runs.Context(spec_of_my_own, clip, out)': "Context",
        'run_job(dataclass_copy, out)': "run_job",
        'spec = JobSpec()\nspec.epochs = 1': "assigns",
        'ctx.spec.method_options["disa"] = {}': "assigns",
        'settings.options.update(lr=1)': "in place",
        'fit(ctx, my_settings, task, out)': "fit",
        'make_task(data, 4, 1)': "make_task",
        'get_suite("shapes", n_train=5)': "get_suite",
        'ctx.loader(data, items, 16, (0.5, 1.0))': "crop scale",
        'from vlp_core.engine.trainer import train as t': "imports train",
        'from dataclasses import replace': "imports replace",
        'dataclasses.replace(spec, epochs=1)': "dataclasses.replace",
        'TrainConfig(lr=1)': "TrainConfig",
        'loss.backward()': "backward",
        'torch.optim.SGD(params)': "optim",
    }
    for source, expected in broken.items():
        violations = recipe_violations("x", [(3, fast + source)])
        assert violations and all(v.startswith("x cell 3, line ") for v in violations), source
        assert any(expected in v for v in violations), (source, violations)
    ablation = fast + 'JobSpec(method_options={"disa": {"mask_ratio": 0.1}})'
    assert recipe_violations("08_ablations", [(1, ablation)]) == []


# ------------------------------------------------------------------- the helpers the notebooks read with


def test_committed_results_reads_a_results_folder_and_answers_none_where_there_is_none(tmp_path):
    rows, config = [{"dataset": "shapes", "method": "disa", "seed": 1, "base": 80.0, "novel": 70.0}], {"model": "m"}
    write_rows(tmp_path / "ablation_disa" / "ratio_0.1", rows, config)
    assert committed_results("ablation_disa/ratio_0.1", root=tmp_path) == (rows, config)
    assert committed_results("ablation_disa/ratio_0.6", root=tmp_path) is None


def test_held_out_classes_split_one_dataset_into_an_id_and_an_ood_set():
    suite = get_suite("colour_shapes", n_test=2)
    kept = [5, 0, 9]
    id_set, ood_set = held_out_classes(suite, kept)
    assert id_set.classnames == [suite.classnames[c] for c in kept]
    assert sorted(id_set.classnames + ood_set.classnames) == sorted(suite.classnames)
    for part in (id_set, ood_set):
        items = part.split("test")
        assert {d.label for d in items} == set(range(len(part.classnames)))
        assert all(part.classnames[d.label] == d.classname for d in items)
    assert len(id_set.split("test")) + len(ood_set.split("test")) == len(suite.split("test"))
    task = make_task(id_set, 2, 1)
    assert len(task.train) == 2 * len(kept) and task.class_names() == id_set.classnames
