"""The paper cards: every number cited, a per-dataset number quoted in a thread with the paper table it
quotes; each printed HM and average follows from the numbers beside it within rounding, except the
errata the cards record (expected failures, strict), and per-dataset rows get the same checks; the
transcribed numbers, what could not be sourced, the seed variance and DiSa's claims; the cards'
zero-shot templates and recipes against the project's own tables; and the validation that names what a
broken card gets wrong."""

import json
import math

import pytest

from vlp_core.experiments.paper_cards import (
    DATASETS,
    CardError,
    consistency_checks,
    expected_failures,
    harmonic_mean,
    hm_check,
    load_cards,
    paper_numbers,
    paper_recipe,
    validate_card,
)

CARDS = load_cards()


def _checks():
    for card in CARDS.values():
        expected = expected_failures(card)
        for check in consistency_checks(card):
            marks = [pytest.mark.xfail(strict=True, reason=expected[check.id])] if check.id in expected else []
            yield pytest.param(check, id=check.id, marks=marks)


@pytest.mark.parametrize("check", list(_checks()))
def test_printed_number_follows_from_the_numbers_beside_it(check):
    assert check.ok, (f"{check.id}: printed {check.printed}, the others give {check.computed:.3f} "
                      f"(rounding allows ±{check.tolerance:.3f})")


def test_the_cards_hold_every_paper_and_their_checks():
    assert list(CARDS) == ["promptsrc", "maple", "gallop", "coop", "disa"]
    counts = {card_id: len(consistency_checks(card)) for card_id, card in CARDS.items()}
    # promptsrc: 6 average HMs, 12 HMs of the issue's rerun, 1 erratum; maple: 5 average HMs, MaPLe's EuroSAT HM;
    # gallop: 4 few-shot, 4 DG, 6 x 2 OOD averages
    assert counts == {"promptsrc": 19, "maple": 6, "gallop": 20, "coop": 0, "disa": 0}


def test_each_numeric_erratum_is_a_check_that_fails():
    """An erratum that no longer matches a failing check (a fixed transcription, a renamed table) fails here."""
    for card in CARDS.values():
        checks = {check.id: check for check in consistency_checks(card)}
        for check_id in expected_failures(card):
            assert check_id in checks and not checks[check_id].ok, check_id


def test_errata_found_while_transcribing():
    errata = {(card_id, e["id"]): e for card_id, card in CARDS.items() for e in card["errata"]}
    assert set(errata) == {("promptsrc", "readme-proda-novel"), ("promptsrc", "maple-config-copy-epochs"),
                           ("gallop", "readme-clip-fewshot-average"), ("gallop", "readme-dg-sketch-emphasis")}
    proda = errata["promptsrc", "readme-proda-novel"]["values"]
    assert harmonic_mean(proda["base"], proda["novel"]) == pytest.approx(78.59, abs=0.005)
    assert harmonic_mean(81.56, 72.30) == pytest.approx(76.65, abs=0.005)  # the project page's novel value
    clip = next(r for r in _table("gallop", "fewshot_16")["rows"] if r["method"] == "zeroshot")["values"]
    assert math.fsum(clip[d][0] for d in DATASETS) / 11 == pytest.approx(64.77, abs=0.005)
    assert clip["average"] == [75.7]  # kept as printed


def test_rounding_tolerances():
    # HM(84.26, 76.10) = 79.972; two-decimal inputs move it by at most 0.01, the printed HM by 0.005
    check = hm_check("x", 84.26, 76.10, 79.97, decimals=2)
    assert check.computed == pytest.approx(79.9724, abs=1e-4)
    assert check.tolerance == pytest.approx(0.005 * 2 * (84.26 ** 2 + 76.10 ** 2) / (84.26 + 76.10) ** 2 + 0.005)
    assert check.ok and not hm_check("x", 84.26, 76.10, 79.95, decimals=2).ok


def _table(card_id, table_id):
    return next(t for t in CARDS[card_id]["tables"] if t["id"] == table_id)


def _number(card_id, method, dataset, metric, table=None, score=None):
    found = [n for n in paper_numbers({card_id: CARDS[card_id]}) if (n.method, n.dataset, n.metric, n.score)
             == (method, dataset, metric, score) and (table is None or n.table == table)]
    assert len(found) == 1, found
    return found[0]


def test_transcribed_numbers():
    assert [_number("promptsrc", "promptsrc", "average", m).value for m in ("base", "novel", "hm")] == [84.26, 76.10,
                                                                                                       79.97]
    assert _number("promptsrc", "ivlp", "average", "hm").value == 77.51
    assert _number("maple", "ivlp", "average", "hm").value == 77.90  # MaPLe's IVLP: another recipe
    assert _number("maple", "maple", "average", "novel").value == 75.14
    assert _number("gallop", "gallop", "FGVCAircraft", "acc", "fewshot_16").value == 58.3
    assert _number("gallop", "gallop", "average", "acc", "fewshot_16").value == 84.4
    assert _number("gallop", "gallop", "average", "acc", "dg").value == 61.3
    assert _number("gallop", "promptsrc", "ImageNet", "acc", "dg").value == 71.3
    assert _number("gallop", "gallop", "iNaturalist", "fpr95", score="gl_mcm").value == 13.7
    assert _number("gallop", "zeroshot", "average", "auroc", score="mcm").value == 90.8
    numbers = paper_numbers(CARDS)
    assert {n.dataset for n in numbers if n.protocol == "ood"} == {"iNaturalist", "SUN", "Places", "Textures",
                                                                    "average"}
    assert all(n.decimals == 2 for n in numbers if n.protocol == "base2novel")
    assert _number("gallop", "zeroshot", "ImageNet", "acc", "fewshot_16").shots is None  # zero-shot: any K


def test_per_dataset_numbers_quoted_in_threads():
    """The per-dataset numbers the cards hold beside GalLoP's README tables: quoted from the papers in public
    threads, each with the paper table it quotes."""
    eurosat = [_number("maple", "maple", "EuroSAT", m, "base2novel_eurosat_issue_28") for m in ("base", "novel", "hm")]
    assert [n.value for n in eurosat] == [94.07, 73.23, 82.35]
    assert {n.source for n in eurosat} == {"https://github.com/muzairkhattak/multimodal-prompt-learning/issues/28"}
    assert eurosat[0].quotes.startswith("arXiv 2210.03117, the base-to-novel comparison table")
    coop = [_number("maple", "coop", "ImageNet", m, "base2novel_imagenet_issue_69") for m in ("base", "novel")]
    assert [n.value for n in coop] == [76.47, 67.88]
    assert not [n for n in paper_numbers(CARDS) if (n.method, n.dataset, n.metric) == ("coop", "ImageNet", "hm")]
    k4 = {n.method: n for n in paper_numbers(CARDS) if n.table == "fewshot_eurosat_4shot_tcp_issue_7"}
    assert {m: (n.value, n.shots, n.dataset) for m, n in k4.items()} == {"maple": (84.50, 4, "EuroSAT"),
                                                                          "promptsrc": (86.30, 4, "EuroSAT")}
    assert k4["promptsrc"].quotes.startswith("arXiv 2307.06948, Table 13")
    assert k4["promptsrc"].source == "https://github.com/htyao89/Textual-based_Class-aware_prompt_tuning/issues/7"


def test_every_per_dataset_number_names_its_paper_table_or_the_authors_file():
    """A per-dataset number is read in the authors' own file (a repository file at a commit) or in a thread
    that quotes a named paper table (with the arXiv id of a paper the cards cover)."""
    arxiv_ids = {i.strip() for card in CARDS.values() for i in str(card.get("arxiv", "")).split(",")}
    per_dataset = [n for n in paper_numbers(CARDS) if n.dataset != "average"]
    assert {n.card for n in per_dataset} == {"promptsrc", "maple", "gallop"}
    for number in per_dataset:
        if "/blob/" in number.source:
            assert number.quotes == "", number
        else:
            assert number.quotes.split(",")[0].removeprefix("arXiv ") in arxiv_ids, number
            assert "/issues/" in number.source, number


def test_not_sourced_says_where_the_missing_tables_are():
    promptsrc = {entry["what"]: entry["why"] for entry in CARDS["promptsrc"]["not_sourced"]}
    few_shot = next(why for what, why in promptsrc.items() if what.startswith("few-shot accuracy per dataset"))
    assert "Table 13" in few_shot and "issue #14" in few_shot
    assert CARDS["promptsrc"]["sources"]["issue_14"]["url"] == "https://github.com/muzairkhattak/PromptSRC/issues/14"
    paper = CARDS["promptsrc"]["sources"]["paper"]
    assert (paper["url"], paper["version"]) == ("https://arxiv.org/abs/2307.06948v2", "v2")
    maple = " ".join(entry["what"] for entry in CARDS["maple"]["not_sourced"])
    assert "except MaPLe on EuroSAT" in maple and "CoOp^dag" in maple


def _eleven_dataset_table(base, novel, hm=None, average=None):
    """A synthetic base-to-novel table with the 11 datasets and an average row, HMs computed unless given."""
    values = {d: [b, n, round(harmonic_mean(b, n), 2)] for d, b, n in zip(DATASETS, base, novel)}
    if hm:
        values.update({d: [*values[d][:2], h] for d, h in hm.items()})
    mean_base, mean_novel = (round(math.fsum(v) / 11, 2) for v in (base, novel))
    values["average"] = average or [mean_base, mean_novel, round(harmonic_mean(mean_base, mean_novel), 2)]
    return {"id": "synthetic", "protocol": "base2novel", "source": "readme", "caption": "synthetic", "shots": 16,
            "decimals": 2, "metrics": ["base", "novel", "hm"], "rows": [{"method": "ivlp", "values": values}]}


def test_per_dataset_rows_are_checked_for_hm_and_for_the_printed_average():
    """What a per-dataset base-to-novel table gets: an HM check per dataset and the average, and the printed
    average base and novel against the mean of the 11 rows."""
    base = [80.0 + i for i in range(11)]
    novel = [70.0 + i / 2 for i in range(11)]
    card = {**CARDS["promptsrc"], "tables": [_eleven_dataset_table(base, novel)], "seed_variance": [], "errata": []}
    checks = {check.id: check for check in consistency_checks(card)}
    assert len(checks) == 12 + 2 and all(check.ok for check in checks.values())
    assert checks["promptsrc/synthetic/ivlp/base/average"].computed == pytest.approx(85.0)
    broken = _eleven_dataset_table(base, novel, hm={"DTD": 70.0}, average=[85.5, 72.5, 78.47])
    card["tables"] = [broken]
    failing = sorted(check.id for check in consistency_checks(card) if not check.ok)
    assert failing == ["promptsrc/synthetic/ivlp/DTD/hm", "promptsrc/synthetic/ivlp/base/average"]


def test_every_number_is_cited_by_commit_or_url():
    for number in paper_numbers(CARDS):
        assert number.source.startswith("https://github.com/"), number
        if "/blob/" in number.source:
            commit = number.source.split("/blob/")[1].split("/")[0]
            assert len(commit) == 40, number.source


def test_seed_variance_of_promptsrc_is_the_issue_rerun():
    (variance,) = CARDS["promptsrc"]["seed_variance"]
    assert CARDS["promptsrc"]["sources"][variance["source"]]["url"] == \
        "https://github.com/muzairkhattak/PromptSRC/issues/3"
    assert variance["rerun"]["average"] == [84.24, 75.67, 79.73]
    assert variance["sd"]["DTD"]["novel"] == 3.52 and variance["sd"]["EuroSAT"]["novel"] == 3.92
    assert set(variance["sd"]) == set(DATASETS)
    for card_id in ("maple", "gallop", "coop", "disa"):
        assert CARDS[card_id]["seed_variance"] == []


def test_disa_card_holds_claims_only():
    disa = CARDS["disa"]
    assert disa["public_numbers"] is False and disa["code"] is None and disa["tables"] == []
    assert "no code and no result table are public" in disa["not_sourced"][0]["why"]
    claims = {claim["id"]: claim["claim"] for claim in disa["claims"]}
    assert "25-35 %" in claims["masking-ratio"] and "K = 1, 2 and 4" in claims["few-shot-low-k"]
    assert "L_CE + L_SR + L_CIR + lambda * L_DiR" in claims["objective"]


def test_zero_shot_templates_are_the_projects():
    from vlp_core.methods.templates import COOP_TEMPLATES

    for card_id in ("coop", "promptsrc", "maple"):
        assert CARDS[card_id]["zero_shot_templates"]["by_dataset"] == COOP_TEMPLATES
    for dataset, template in CARDS["gallop"]["zero_shot_templates"]["by_dataset"].items():
        assert template.lower() == COOP_TEMPLATES[dataset]  # GalLoP capitalises; CLIP's tokenizer lowercases


FOLLOWED = [("promptsrc", "promptsrc", "base2novel"), ("promptsrc", "ivlp", "base2novel"),
            ("promptsrc", "coop", "base2novel"), ("promptsrc", "promptsrc", "fewshot"),
            ("promptsrc", "promptsrc", "dg"), ("promptsrc", "promptsrc", "xd"), ("gallop", "gallop", "fewshot"),
            ("gallop", "gallop", "dg"), ("gallop", "gallop", "ood"), ("coop", "coop", "fewshot"),
            ("coop", "coop", "dg")]
DISAGREEMENTS = {  # the card states the source as printed; the project's table chose otherwise
    ("promptsrc", "coop", "base2novel", "ImageNet"):
        "PromptSRC's README gives CoOp 200 epochs, one number for the 11 datasets; the project's table trains "
        "CoOp 50 epochs on ImageNet in every protocol, as CoOp's own few-shot schedule does",
}


def _followed():
    for card_id, method, protocol in FOLLOWED:
        for dataset in DATASETS if protocol in ("base2novel", "fewshot") else ("ImageNet",):
            reason = DISAGREEMENTS.get((card_id, method, protocol, dataset))
            marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
            yield pytest.param(card_id, method, protocol, dataset, id=f"{card_id}-{method}-{protocol}-{dataset}",
                               marks=marks)


@pytest.mark.parametrize("card_id, method, protocol, dataset", list(_followed()))
def test_card_recipes_are_the_projects_paper_recipes(card_id, method, protocol, dataset):
    """The recipes the cards cite are the ones `vlp recipe` gives under the paper rule (epochs, batch, lr,
    crop scale)."""
    from vlp_core.engine.recipes import recipe

    stated, citations = paper_recipe({card_id: CARDS[card_id]}, method, protocol, dataset, 16)
    train = recipe(method, protocol, dataset, 16, "paper").train
    assert citations
    assert (stated["epochs"], stated["batch_size"], stated["lr"]) == (train.epochs, train.batch_size, train.lr)
    assert tuple(stated["crop_scale"]) == train.crop_scale


def test_maple_recipe_differs_from_the_projects_ivlp():
    stated, _ = paper_recipe({"maple": CARDS["maple"]}, "ivlp", "base2novel", "DTD", 16)
    assert (stated["epochs"], stated["lr"]) == (5, 0.0035)


def _broken(**changes):
    card = json.loads(json.dumps(CARDS["gallop"]))
    for path, value in changes.items():
        *keys, last = path.split("__")
        target = card
        for key in keys:
            target = target[int(key)] if key.isdigit() else target[key]
        target[int(last) if last.isdigit() else last] = value
    return card


@pytest.mark.parametrize("changes, problem", [
    ({"tables__0__rows__0__values__ImageNet": [66.7, 1.0]}, "2 values for 1 metrics"),
    ({"tables__0__rows__0__method": "clip"}, "unknown method"),
    ({"tables__0__rows__1__values__Imagenet": [1.0]}, "unknown dataset 'Imagenet'"),
    ({"tables__2__rows__0__score": "msp"}, "ood rows need a score"),
    ({"tables__0__source": "paper"}, "unknown source 'paper'"),
    ({"sources__readme__commit": "f75999e"}, "not a full 40-character hash"),
    ({"recipes__0__precision": "amp"}, "precision 'amp'"),
    ({"errata__0__kind": "typo"}, "kind 'typo'"),
    ({"zero_shot_templates__by_dataset__DTD": "texture"}, "one {} needed"),
    ({"public_numbers": False}, "public_numbers is false but the card has tables"),
])
def test_validation_names_the_problem(changes, problem):
    assert validate_card(CARDS["gallop"]) == []
    problems = validate_card(_broken(**changes))
    assert any(problem in p for p in problems), problems


QUOTED_TABLE = {"id": "quoted", "protocol": "fewshot", "source": "thread", "caption": "a thread's quote",
                "shots": 4, "decimals": 2, "metrics": ["acc"], "rows": [{"method": "gallop", "values": {"DTD": [1.0]}}]}
PAPER = {"url": "https://arxiv.org/abs/2407.01400v2", "arxiv": "2407.01400", "version": "v2",
         "read_at": "https://arxiv.org/pdf/2407.01400v2"}


def _with_table(source, quotes):
    """The gallop card with one more table, read in `source`, quoting `quotes` (None: no quotes key)."""
    card = _broken(sources__thread=source)
    card["tables"].append({**QUOTED_TABLE, **({"quotes": quotes} if quotes else {})})
    return card


@pytest.mark.parametrize("source, quotes, problem", [
    ({"url": "https://github.com/o/r/issues/1"}, None, "must name the paper table it quotes"),
    ({"url": "https://github.com/o/r/issues/1"}, {"arxiv": "2407.140", "where": "Table 2"}, "an arXiv id such as"),
    ({"url": "https://github.com/o/r/issues/1"}, {"arxiv": "2407.01400"}, "where in the paper needed"),
    ({"repository": "o/r", "commit": "f" * 40, "file": "README.md"}, {"arxiv": "2407.01400", "where": "Table 2"},
     "quotes no paper table"),
    (PAPER, {"arxiv": "2407.01400", "where": "Table 2"}, "quotes no paper table"),
    ({**PAPER, "version": "2"}, None, "a version (v1, v2, ...)"),
    ({**PAPER, "url": "https://arxiv.org/abs/2407.01400"}, None, "the url https://arxiv.org/abs/2407.01400v2"),
    ({key: value for key, value in PAPER.items() if key != "read_at"}, None, "read_at (the copy read)"),
])
def test_a_table_read_in_a_thread_names_the_paper_table_it_quotes(source, quotes, problem):
    problems = validate_card(_with_table(source, quotes))
    assert any(problem in p for p in problems), problems


@pytest.mark.parametrize("source, quotes", [
    ({"url": "https://github.com/o/r/issues/1"}, {"arxiv": "2407.01400", "where": "Table 2, DTD, K = 4"}),
    (PAPER, None),  # read in the paper itself
    ({"repository": "o/r", "commit": "f" * 40, "file": "README.md"}, None),  # the authors' own file
])
def test_tables_read_in_the_paper_its_code_or_a_quoting_thread_are_valid(source, quotes):
    assert validate_card(_with_table(source, quotes)) == []


def test_a_broken_card_file_is_named(tmp_path):
    card = _broken(tables__0__rows__0__method="clip")
    (tmp_path / "gallop.json").write_text(json.dumps(card))
    with pytest.raises(CardError, match=r"gallop\.json: .*unknown method"):
        load_cards(tmp_path)
    (tmp_path / "gallop.json").write_text(json.dumps({**CARDS["gallop"], "id": "galop"}))
    with pytest.raises(CardError, match="differs from the file name"):
        load_cards(tmp_path)
    with pytest.raises(CardError, match="no paper cards"):
        load_cards(tmp_path / "empty")
