"""The README's first screen: what this is, a picture, the two commands and a Python example that runs."""

import re
from pathlib import Path

from vlp_core.data.datasets import open_dataset
from vlp_core.data.tasks import make_task

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_first_screen_holds_the_commands_and_the_example():
    first_screen = "\n".join(README.splitlines()[:40])
    for marker in ("<!-- main-command -->", "<!-- test-command -->", "```python", "![", "pip install -e ."):
        assert marker in first_screen, marker
    assert first_screen.count("```") % 2 == 0  # the example closes on the first screen


def test_the_python_example_runs(tmp_path, monkeypatch):
    """The example as printed, with one epoch (it trains DiSa for the recipe's 15 otherwise) and its run
    folder in a temporary directory."""
    code = re.search(r"```python\n(.*?)```", README, re.S).group(1)
    assert "JobSpec()" in code and '"runs/readme"' in code
    code = code.replace("JobSpec()", "JobSpec(epochs=1)").replace('"runs/readme"', repr(str(tmp_path)))
    printed = []
    monkeypatch.setattr("builtins.print", lambda *args, **kwargs: printed.append(args))
    exec(compile(code, "README.md", "exec"), {})
    scores, predicted = printed
    assert 0 <= scores[0]["acc"] <= 100
    novel = make_task(open_dataset("colour_shapes"), shots=16, seed=1, part="novel").class_names()
    assert predicted[0] in novel and len(novel) == 16  # one of the classes DiSa never trained on
    assert (tmp_path / "disa" / "checkpoint.json").is_file()
