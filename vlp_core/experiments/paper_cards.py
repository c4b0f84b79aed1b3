"""Paper cards: the papers' published numbers as data, loaded, validated and checked.

A paper card (`papers/<id>.json`, one per paper or official code base) holds:
- "sources": where every number and fact was read, {id: {"repository", "commit", "file"[, "lines",
  "branch"]}}, {id: {"url", ...}} for an issue thread or a page, or {id: {"url", "arxiv", "version",
  "read_at"}} for the paper itself (url: its arXiv page at that version; read_at: the copy read);
- "tables": the tables the repository prints, exactly as printed: {"id", "protocol", "source",
  "caption", "shots", "decimals", "metrics", ["average_of"], ["dataset" (OOD: the ID set) |
  "source_dataset" (DG)], ["quotes"], "rows": [{"method", ["score"], ["shots"], ["epochs"], "values":
  {dataset: [one number per metric]}}]}, "average" among the datasets. A table read in a thread or page
  (a "url" source other than the paper) rather than in the paper or the authors' own files quotes a
  paper's table: "quotes" names it, {"arxiv": its arXiv id, "where": the table and the part quoted};
- "zero_shot_templates": the template per dataset behind the zero-shot CLIP numbers (or null);
- "recipes": what the papers trained with, [{"method", "protocol", ["datasets"], ["shots"], "epochs",
  "batch_size", "lr", "precision", "crop_scale", "checkpoint", ["sampling"], ["fpr95_rule"],
  "sources"}], later and more specific entries overriding earlier ones;
- "seed_variance": the seed spread reported for the numbers, with per-dataset SDs ("sd");
- "errata": what was found wrong while transcribing, kept as printed: {"id", "kind" (hm, average,
  config, emphasis), "source", "where", "description", and for a numeric erratum the "check" it fails
  or its own "values"};
- "not_sourced", "notes", and "claims" (a paper without public numbers).
Dataset, method and OOD-set names are the project's (`DATASETS`, `METHODS`, `OOD_SETS`).
"""

from __future__ import annotations

import json
import re
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

PAPERS_DIR = Path(__file__).parent / "papers"

METHODS = ("zeroshot", "coop", "cocoop", "ivlp", "maple", "promptsrc", "disa", "gallop")
METHOD_TITLES = {"zeroshot": "CLIP", "coop": "CoOp", "cocoop": "CoCoOp", "ivlp": "IVLP", "maple": "MaPLe",
                 "promptsrc": "PromptSRC", "disa": "DiSa", "gallop": "GalLoP"}
DATASETS = ("ImageNet", "Caltech101", "OxfordPets", "StanfordCars", "Flowers102", "Food101", "FGVCAircraft",
            "SUN397", "DTD", "EuroSAT", "UCF101")
DG_SOURCE = "ImageNet"
DG_TARGETS = ("ImageNet-V2", "ImageNet-Sketch", "ImageNet-A", "ImageNet-R")
OOD_SETS = ("iNaturalist", "SUN", "Places", "Textures")
AVERAGE = "average"
PROTOCOL_DATASETS: dict[str, tuple[str, ...]] = {
    "base2novel": DATASETS, "fewshot": DATASETS, "xd": DATASETS, "dg": (DG_SOURCE, *DG_TARGETS), "ood": OOD_SETS}
PROTOCOL_METRICS: dict[str, tuple[str, ...]] = {
    "base2novel": ("base", "novel", "hm"), "fewshot": ("acc",), "xd": ("acc",), "dg": ("acc",),
    "ood": ("fpr95", "auroc")}
SCORES = ("mcm", "l_mcm", "gl_mcm")
PRECISIONS = {
    "fp16": "fp16 autocast with a grad scaler",
    "bf16": "bf16 autocast",
    "fp32": "float32",
    "half": "CLIP's weights and the prompts in float16, no autocast (Dassl's PREC fp16)",
}
RECIPE_FIELDS = ("epochs", "batch_size", "lr", "precision", "crop_scale", "checkpoint", "sampling", "fpr95_rule")
ERRATUM_KINDS = ("hm", "average", "config", "emphasis")
CARD_KEYS = ("id", "title", "public_numbers", "sources", "tables", "zero_shot_templates", "recipes",
             "seed_variance", "errata", "not_sourced", "notes", "claims")
ARXIV_ID = re.compile(r"\d{4}\.\d{4,5}")
CARD_PRIORITY = ("promptsrc", "maple", "gallop", "coop", "disa")  # whose number a run is set against first
HOME_CARD = {"coop": "coop", "cocoop": "coop", "ivlp": "promptsrc", "maple": "maple", "promptsrc": "promptsrc",
             "disa": "disa", "gallop": "gallop"}  # a method's own paper, preferred when it prints the number


class CardError(ValueError):
    """A paper card that does not follow the card format; the message names the file and the problems."""


# ---------------------------------------------------------------------------------------------- cards


def load_cards(directory: Path = PAPERS_DIR) -> dict[str, dict]:
    """Every `*.json` card of `directory`, validated, keyed by id in `CARD_PRIORITY` order (others after,
    by id). Raises CardError naming the file and its problems."""
    paths = sorted(Path(directory).glob("*.json"))
    if not paths:
        raise CardError(f"no paper cards (*.json) in {directory}")
    cards = {}
    for path in paths:
        card = json.loads(path.read_text())
        problems = validate_card(card)
        if card.get("id") != path.stem:
            problems.append(f"id {card.get('id')!r} differs from the file name {path.stem!r}")
        if problems:
            raise CardError(f"{path}: " + "; ".join(problems))
        cards[card["id"]] = card
    return {card_id: cards[card_id] for card_id in card_order(cards)}


def card_order(cards: Iterable[str], prefer: str | None = None) -> list[str]:
    """Card ids: `prefer` first, then `CARD_PRIORITY`, then the rest by id."""
    ids = list(cards)
    rank = {card_id: i for i, card_id in enumerate(CARD_PRIORITY)}
    ordered = sorted(ids, key=lambda card_id: (rank.get(card_id, len(rank)), card_id))
    if prefer in ids:
        ordered.remove(prefer)
        ordered.insert(0, prefer)
    return ordered


def validate_card(card: dict) -> list[str]:
    """The problems of a card (an empty list when it follows the format): keys, sources, tables,
    templates, recipes, seed variance, errata and claims."""
    missing = [key for key in CARD_KEYS if key not in card]
    if missing:
        return [f"missing keys: {', '.join(missing)}"]
    sources = card["sources"]
    problems = [problem for source_id, source in sources.items() for problem in _source_problems(source_id, source)]
    problems += _table_problems(card["tables"], sources)
    problems += _template_problems(card["zero_shot_templates"], sources)
    problems += [problem for recipe in card["recipes"] for problem in _recipe_problems(recipe, sources)]
    problems += [problem for entry in card["seed_variance"] for problem in _variance_problems(entry, sources)]
    problems += _errata_problems(card["errata"], sources)
    problems += [f"claim {claim.get('id')!r}: unknown source {claim.get('source')!r}"
                 for claim in card["claims"] if claim.get("source") not in sources]
    if not card["public_numbers"] and card["tables"]:
        problems.append("public_numbers is false but the card has tables")
    return problems


def _source_problems(source_id: str, source: dict) -> list[str]:
    if "arxiv" in source:
        expected = f"https://arxiv.org/abs/{source['arxiv']}{source.get('version', '')}"
        if not ARXIV_ID.fullmatch(str(source["arxiv"])) or not re.fullmatch(r"v\d+", str(source.get("version"))) \
                or source.get("url") != expected or not source.get("read_at"):
            return [f"source {source_id!r}: a paper needs its arXiv id, a version (v1, v2, ...), the url {expected} "
                    f"and read_at (the copy read)"]
        return []
    if "url" in source:
        return []
    missing = [key for key in ("repository", "commit", "file") if key not in source]
    if missing:
        return [f"source {source_id!r}: needs a url, or repository, commit and file (missing {', '.join(missing)})"]
    commit = source["commit"]
    if len(commit) != 40 or any(c not in "0123456789abcdef" for c in commit):
        return [f"source {source_id!r}: commit {commit!r} is not a full 40-character hash"]
    return []


def _table_problems(tables: list[dict], sources: dict) -> list[str]:
    problems = []
    ids = [table.get("id") for table in tables]
    problems += [f"table id {table_id!r} is not unique" for table_id in set(ids) if ids.count(table_id) > 1]
    for table in tables:
        protocol = table.get("protocol")
        where = f"table {table.get('id')!r}"
        if protocol not in PROTOCOL_METRICS:
            problems.append(f"{where}: unknown protocol {protocol!r}")
            continue
        if table.get("source") not in sources:
            problems.append(f"{where}: unknown source {table.get('source')!r}")
        else:
            problems += _quote_problems(table, sources[table["source"]], where)
        if not isinstance(table.get("decimals"), int):
            problems.append(f"{where}: decimals must be an integer")
        metrics = table.get("metrics", [])
        unknown = [m for m in metrics if m not in PROTOCOL_METRICS[protocol]]
        if not metrics or unknown:
            problems.append(f"{where}: metrics {metrics} (allowed for {protocol}: {PROTOCOL_METRICS[protocol]})")
        for row in table.get("rows", []):
            problems += _row_problems(row, protocol, len(metrics), where)
    return problems


def _quote_problems(table: dict, source: dict, where: str) -> list[str]:
    """A table read in a thread or page names the paper table it quotes; one read in the paper or in the
    authors' own files (a repository file) quotes none."""
    quotes = table.get("quotes")
    secondhand = "url" in source and "arxiv" not in source
    if quotes is None:
        return [f"{where}: read in {source['url']}, so it must name the paper table it quotes "
                f"(\"quotes\": {{\"arxiv\", \"where\"}})"] if secondhand else []
    if not secondhand:
        return [f"{where}: read in the paper or the authors' own files, so it quotes no paper table"]
    if not ARXIV_ID.fullmatch(str(quotes.get("arxiv", ""))) or not quotes.get("where"):
        return [f"{where}: quotes {quotes!r} (an arXiv id such as 2307.06948 and where in the paper needed)"]
    return []


def _row_problems(row: dict, protocol: str, n_metrics: int, where: str) -> list[str]:
    label = f"{where}, row {row.get('method')!r}"
    problems = [] if row.get("method") in METHODS else [f"{label}: unknown method (known: {', '.join(METHODS)})"]
    if (protocol == "ood") != ("score" in row) or row.get("score", SCORES[0]) not in SCORES:
        problems.append(f"{label}: ood rows need a score in {SCORES}, other rows none")
    known = set(PROTOCOL_DATASETS[protocol]) | {AVERAGE}
    for dataset, values in row.get("values", {}).items():
        if dataset not in known:
            problems.append(f"{label}: unknown dataset {dataset!r} for {protocol}")
        if len(values) != n_metrics:
            problems.append(f"{label}, {dataset}: {len(values)} values for {n_metrics} metrics")
    return problems


def _template_problems(templates: dict | None, sources: dict) -> list[str]:
    if templates is None:
        return []
    problems = [] if templates.get("source") in sources else [f"templates: unknown source {templates.get('source')!r}"]
    known = set(DATASETS) | set(DG_TARGETS)
    for dataset, template in templates.get("by_dataset", {}).items():
        if dataset not in known or template.count("{}") != 1:
            problems.append(f"templates: {dataset!r} -> {template!r} (a known dataset and one {{}} needed)")
    return problems


def _recipe_problems(recipe: dict, sources: dict) -> list[str]:
    label = f"recipe {recipe.get('method')}/{recipe.get('protocol')}"
    problems = []
    if recipe.get("method") not in METHODS or recipe.get("protocol") not in PROTOCOL_METRICS:
        problems.append(f"{label}: unknown method or protocol")
    if recipe.get("precision", "fp16") not in PRECISIONS:
        problems.append(f"{label}: precision {recipe['precision']!r} (known: {', '.join(PRECISIONS)})")
    problems += [f"{label}: unknown source {s!r}" for s in recipe.get("sources", []) if s not in sources]
    if not recipe.get("sources"):
        problems.append(f"{label}: no sources")
    return problems


def _variance_problems(entry: dict, sources: dict) -> list[str]:
    label = f"seed variance {entry.get('method')}/{entry.get('protocol')}"
    problems = [] if entry.get("source") in sources else [f"{label}: unknown source {entry.get('source')!r}"]
    known = set(PROTOCOL_DATASETS.get(entry.get("protocol"), ()))
    problems += [f"{label}: unknown dataset {d!r}" for d in entry.get("sd", {}) if d not in known]
    return problems


def _errata_problems(errata: list[dict], sources: dict) -> list[str]:
    problems = []
    ids = [erratum.get("id") for erratum in errata]
    problems += [f"erratum id {e!r} is not unique" for e in set(ids) if ids.count(e) > 1]
    for erratum in errata:
        label = f"erratum {erratum.get('id')!r}"
        if erratum.get("kind") not in ERRATUM_KINDS:
            problems.append(f"{label}: kind {erratum.get('kind')!r} (known: {', '.join(ERRATUM_KINDS)})")
        if erratum.get("source") not in sources:
            problems.append(f"{label}: unknown source {erratum.get('source')!r}")
        numeric = erratum.get("kind") in ("hm", "average")
        if numeric and ("check" in erratum) == ("values" in erratum):
            problems.append(f"{label}: a numeric erratum names the check it fails or carries its own values")
    return problems


def cite(source: dict) -> str:
    """A source as one line: its URL, or the file's URL at its commit (with the lines when given)."""
    if "url" in source:
        return source["url"]
    text = f"https://github.com/{source['repository']}/blob/{source['commit']}/{source['file']}"
    return f"{text} (lines {source['lines']})" if "lines" in source else text


# ------------------------------------------------------------------------------------ paper numbers


@dataclass(frozen=True)
class PaperNumber:
    """One number of a card's table, as printed.

    dataset: a dataset, DG target or OOD set, or "average" (of `average_of`); shots None: any K (a
    zero-shot row); score: the OOD score (ood only); context: the in-distribution dataset (ood) or the
    source dataset (dg), None elsewhere; source: `cite` of the table's source.
    """

    card: str
    table: str
    protocol: str
    method: str
    dataset: str
    metric: str
    value: float
    decimals: int
    shots: int | None
    score: str | None
    context: str | None
    average_of: tuple[str, ...]
    source: str
    caption: str
    epochs: int | None
    quotes: str = ""


def paper_numbers(cards: dict[str, dict]) -> list[PaperNumber]:
    """Every number of every card's tables, in card order."""
    return [number for card in cards.values() for table in card["tables"] for row in table["rows"]
            for number in _row_numbers(card, table, row)]


def _row_numbers(card: dict, table: dict, row: dict) -> list[PaperNumber]:
    protocol = table["protocol"]
    datasets = [d for d in row["values"] if d != AVERAGE]
    average_of = tuple(table.get("average_of") or datasets or PROTOCOL_DATASETS[protocol])
    context = table.get("dataset") or table.get("source_dataset")
    shots = row["shots"] if "shots" in row else table.get("shots")
    return [PaperNumber(card["id"], table["id"], protocol, row["method"], dataset, metric, value, table["decimals"],
                        shots, row.get("score"), context, average_of if dataset == AVERAGE else (),
                        cite(card["sources"][table["source"]]), table.get("caption", ""), row.get("epochs"),
                        quoted(table))
            for dataset, values in row["values"].items() for metric, value in zip(table["metrics"], values)]


def quoted(table: dict) -> str:
    """The paper table a table quotes, as one line ("" for a table read in the authors' own files)."""
    quotes = table.get("quotes")
    return f"arXiv {quotes['arxiv']}, {quotes['where']}" if quotes else ""


# ----------------------------------------------------------------------------------- consistency


@dataclass(frozen=True)
class Check:
    """A printed number against what the other printed numbers give: an HM from its base and novel, or
    an average from its datasets. tolerance: what rounding to the printed digits allows."""

    id: str
    kind: str
    printed: float
    computed: float
    tolerance: float

    @property
    def ok(self) -> bool:
        return abs(self.printed - self.computed) <= self.tolerance + 1e-9


def harmonic_mean(base: float, novel: float) -> float:
    """HM = 2·B·N / (B + N) (0 when both are 0)."""
    return 2 * base * novel / (base + novel) if base + novel > 0 else 0.0


def hm_check(check_id: str, base: float, novel: float, hm: float, decimals: int) -> Check:
    """HM(base, novel) against the printed HM. Rounding base and novel to `decimals` moves the HM by at
    most u·(dH/dB + dH/dN) and rounding the HM by u, with u half a unit of the last digit."""
    unit = 0.5 * 10 ** -decimals
    slope = 2 * (base ** 2 + novel ** 2) / (base + novel) ** 2  # dH/dB + dH/dN
    return Check(check_id, "hm", hm, harmonic_mean(base, novel), unit * slope + unit)


def average_check(check_id: str, values: Sequence[float], printed: float, decimals: int) -> Check:
    """The mean of the printed values against the printed average: each side off by at most half a unit."""
    return Check(check_id, "average", printed, statistics.fmean(values), 10 ** -decimals)


def consistency_checks(card: dict) -> list[Check]:
    """Every HM and average of a card's tables, of its seed-variance reruns and of its errata's own
    numbers, recomputed from the numbers printed beside it."""
    checks = [check for table in card["tables"] for row in table["rows"] for check in _row_checks(card, table, row)]
    for entry in card["seed_variance"]:
        rerun = {"rows": [{"method": entry["method"], "values": entry.get("rerun", {})}],
                 "metrics": entry.get("metrics", []), "decimals": entry.get("decimals", 2),
                 "id": f"seed_variance/{entry['protocol']}"}
        checks += [c for c in _row_checks(card, rerun, rerun["rows"][0]) if c.kind == "hm"]
    for erratum in card["errata"]:
        values = erratum.get("values")
        if erratum["kind"] == "hm" and values:
            checks.append(hm_check(erratum_check_id(card, erratum), values["base"], values["novel"], values["hm"],
                                   erratum["decimals"]))
    return checks


def erratum_check_id(card: dict, erratum: dict) -> str:
    """The check an erratum fails: the one it names, or the check of its own numbers."""
    return erratum.get("check") or f"{card['id']}/errata/{erratum['id']}/{erratum['kind']}"


def expected_failures(card: dict) -> dict[str, str]:
    """{check id: the erratum's description} for every numeric erratum of a card."""
    return {erratum_check_id(card, e): e["description"] for e in card["errata"] if e["kind"] in ("hm", "average")}


def _row_checks(card: dict, table: dict, row: dict) -> list[Check]:
    metrics = list(table["metrics"])
    name = "/".join([card["id"], table["id"], row["method"], *([row["score"]] if "score" in row else [])])
    values = row["values"]
    checks = []
    if {"base", "novel", "hm"} <= set(metrics):
        b, n, h = metrics.index("base"), metrics.index("novel"), metrics.index("hm")
        checks += [hm_check(f"{name}/{dataset}/hm", v[b], v[n], v[h], table["decimals"])
                   for dataset, v in values.items()]
    averaged = table.get("average_of") or [d for d in values if d != AVERAGE]
    if AVERAGE in values and len(averaged) > 1 and all(d in values for d in averaged):
        checks += [average_check(f"{name}/{metric}/{AVERAGE}", [values[d][i] for d in averaged], values[AVERAGE][i],
                                 table["decimals"])
                   for i, metric in enumerate(metrics) if metric != "hm"]
    return checks


# --------------------------------------------------------------------------------- recipes, variance


def paper_recipe(cards: dict[str, dict], method: str, protocol: str, dataset: str, shots: int | None,
                 prefer: str | None = None) -> tuple[dict, list[str]]:
    """The recipe a paper states for (method, protocol, dataset trained on, K): the matching recipe
    entries of the first card that has any (`prefer`, then `card_order`), merged in order (a later,
    more specific entry overrides), with their citations. ({}, []) when no card states one."""
    for card_id in card_order(cards, prefer):
        card = cards[card_id]
        matching = [r for r in card["recipes"] if r["method"] == method and r["protocol"] == protocol
                    and dataset in r.get("datasets", [dataset]) and shots in r.get("shots", [shots])]
        if matching:
            merged = {k: v for r in matching for k, v in r.items() if k in RECIPE_FIELDS}
            citations = list(dict.fromkeys(cite(card["sources"][s]) for r in matching for s in r["sources"]))
            return merged, citations
    return {}, []


def paper_template(cards: dict[str, dict], dataset: str, prefer: str | None = None) -> tuple[str, str] | None:
    """(template, citation) of zero-shot CLIP on `dataset` in the first card that gives one."""
    for card_id in card_order(cards, prefer):
        templates = cards[card_id]["zero_shot_templates"]
        if templates and dataset in templates["by_dataset"]:
            return templates["by_dataset"][dataset], cite(cards[card_id]["sources"][templates["source"]])
    return None


def seed_variances(cards: dict[str, dict], method: str, protocol: str) -> list[dict]:
    """The seed-variance entries the cards report for (method, protocol), each with its "citation"."""
    return [{**entry, "citation": cite(card["sources"][entry["source"]])} for card in cards.values()
            for entry in card["seed_variance"] if (entry["method"], entry["protocol"]) == (method, protocol)]
