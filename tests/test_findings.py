"""The pages of findings (claims, results, sensitivity, README's findings) are what the committed result
files give through docs/make_findings.py: a page older than the results or the code fails here."""

import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
IMAGE = re.compile(r"!\[[^\]]*\]\(([^)\s]+)\)")


def _findings():
    spec = importlib.util.spec_from_file_location("make_findings", ROOT / "docs" / "make_findings.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def pages(tmp_path_factory):
    return _findings().pages(figures_dir=tmp_path_factory.mktemp("figures"))


@pytest.mark.parametrize("name", ["docs/claims.md", "docs/results.md", "docs/sensitivity.md", "README.md",
                                  "assets/prompts/README.md"])
def test_page_is_what_the_results_give(pages, name):
    path = ROOT / name
    assert path.read_text(encoding="utf-8") == pages[path], (
        f"{name} is older than docs/results or docs/make_findings.py: run `python docs/make_findings.py`")


@pytest.mark.parametrize("name", ["docs/claims.md", "docs/results.md", "docs/sensitivity.md"])
def test_every_figure_a_page_shows_is_committed(name):
    text = (ROOT / name).read_text(encoding="utf-8")
    missing = [target for target in IMAGE.findall(text) if not (ROOT / "docs" / target).is_file()]
    assert missing == []


def test_every_claim_is_graded_and_the_readme_states_them_as_claims_md_does():
    claims = (ROOT / "docs" / "claims.md").read_text(encoding="utf-8")
    module = _findings()
    assert all(claim.statement in claims for claim in module.CLAIMS)
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = readme[readme.index(module.README_START):readme.index(module.README_END)]
    stated = [line[2:] for line in block.splitlines() if line.startswith("- ")]
    assert len(stated) == len(module.HEADLINE)
    results = (ROOT / "docs" / "results.md").read_text(encoding="utf-8")
    for sentence in stated:  # word for word: the README's claim sentences are results.md's
        assert sentence in results, sentence
