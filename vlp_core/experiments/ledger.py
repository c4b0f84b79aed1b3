"""The reproduction ledger: a run's numbers beside the papers' published numbers.

`compare_with_papers(rows, config)` sets a protocol's rows (as `results.json` holds them) beside the
paper cards (`paper_cards.load_cards`, which validates them): per method, dataset (and average) and
metric, the run's seed mean and sample SD, the paper's number, the difference and a verdict against
a stated band:

- band from a paper: `BAND_SDS` x the seed SD reported for that number (a card's `seed_variance`;
  for an average of n datasets sqrt(sum of sd_i^2) / n, for an HM the base and novel SDs propagated
  through the HM), and at least half a unit of the paper's last printed digit;
- default band, where no seed variance is reported: `BAND_SDS` x the run's own sample SD, and at
  least `DEFAULT_BAND` points; the verdict says it rests on the default band.

HM is the HM of seed-averaged base and novel (on average: of the dataset-averaged base and novel, as
the papers print it); the mean of the per-dataset HMs is shown beside it, labelled, when it differs.
When a number is outside its band, the comparison names what the run record shows differing from
the paper's recipe (template, crop scale, precision, batch size, epochs, learning rate, checkpoint,
few-shot sampling, FPR95 rule, recipe rule, backbone tag). Runs of another model or on other data are
reported as not comparable, with the reasons, and still listed.
"""

from __future__ import annotations

import json
import math
import statistics
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

from vlp_core.experiments.paper_cards import (
    AVERAGE,
    HOME_CARD,
    METHOD_TITLES,
    METHODS,
    PRECISIONS,
    PROTOCOL_DATASETS,
    PROTOCOL_METRICS,
    RECIPE_FIELDS,
    SCORES,
    PaperNumber,
    card_order,
    harmonic_mean,
    load_cards,
    paper_numbers,
    paper_recipe,
    paper_template,
    seed_variances,
)

BAND_SDS = 2.0  # a difference within BAND_SDS seed SDs is within seed variance
DEFAULT_BAND = 1.0  # points; the band where a paper reports no seed variance (the project's choice)
PAPER_BACKBONE = "CLIP ViT-B/16 with OpenAI's weights"
PAPER_MODELS = ("ViT-B-16-quickgelu", "ViT-B-16")  # open_clip names of that architecture

WITHIN = "within"
OUTSIDE = "outside"
NO_PAPER = "no paper number"
INCOMPLETE = "incomplete"  # an average over fewer datasets than the paper's
NOT_COMPARED = "not compared"


# -------------------------------------------------------------------------------------- run rows


def load_results(path: str | Path) -> tuple[list[dict], dict]:
    """(rows, config) of a protocol's results: a results folder holding results.json, or the file."""
    path = Path(path)
    file = path / "results.json" if path.is_dir() or not path.suffix else path
    if not file.is_file():
        raise FileNotFoundError(f"no results at {file}: pass a folder written by `vlp protocol ... --out DIR` "
                                f"(it holds results.json) or the results.json file itself")
    data = json.loads(file.read_text())
    if not isinstance(data, dict) or "rows" not in data or "config" not in data:
        raise ValueError(f"{file} is not a protocol's results: it needs the keys 'config' and 'rows'")
    return data["rows"], data["config"]


def protocol_of(config: dict) -> str:
    """The protocol a results config ran (config["spec"]["protocol"])."""
    protocol = config.get("spec", {}).get("protocol")
    if protocol not in PROTOCOL_METRICS:
        raise ValueError(f"the results config names protocol {protocol!r}; expected one of "
                         f"{', '.join(PROTOCOL_METRICS)} under config['spec']['protocol']")
    return protocol


@dataclass(frozen=True)
class RunKey:
    """What one entry of a comparison is about: method, dataset (the OOD set for ood), K, OOD score,
    and the in-distribution (ood) or source (dg, xd) dataset."""

    method: str
    dataset: str
    shots: int | None
    score: str | None
    context: str | None


def run_key(row: dict, protocol: str) -> RunKey:
    """The RunKey of a result row of `protocol` (K from the row, or its recipe: OOD rows record it there)."""
    shots = row.get("shots", (row.get("recipe") or {}).get("shots"))
    if protocol == "ood":
        return RunKey(row["method"], row["ood"], shots, row.get("score"), row["dataset"])
    context = row.get("source") if protocol in ("dg", "xd") else None
    return RunKey(row["method"], row["dataset"], shots, None, context)


def per_seed(rows: Sequence[dict], metric: str) -> dict[int, float]:
    """{seed: value} of `metric` over the rows of one RunKey; "hm" is each seed's HM of base and novel."""
    values: dict[int, float] = {}
    for row in rows:
        if row["seed"] in values:
            raise ValueError(f"two rows for seed {row['seed']} of {row['method']} on {row['dataset']}: a results "
                             f"file holds one row per run")
        values[row["seed"]] = harmonic_mean(row["base"], row["novel"]) if metric == "hm" else row[metric]
    return values


def seed_mean(rows: Sequence[dict], metric: str) -> float:
    """The seed mean of `metric`; for "hm" the HM of the seed-averaged base and novel."""
    if metric == "hm":
        return harmonic_mean(seed_mean(rows, "base"), seed_mean(rows, "novel"))
    return statistics.fmean(per_seed(rows, metric).values())


def sample_sd(values: Iterable[float]) -> float | None:
    """The sample standard deviation (n - 1), None for fewer than two values."""
    values = list(values)
    return statistics.stdev(values) if len(values) > 1 else None


# ------------------------------------------------------------------------------------- comparison


@dataclass(frozen=True)
class Band:
    """How far from the paper's number a run may be and still be within: ±half_width points.
    source: "paper" (the seed SD `sd` a card cites, from `citation`) or "default" (sd None)."""

    half_width: float
    source: str
    sd: float | None
    citation: str


@dataclass(frozen=True)
class Entry:
    """One run number beside the paper's: the run's seed mean (None: no data) and sample SD (None with
    one seed), the paper's number (None when no card prints one) and the differing numbers other cards
    print for it, the difference run - paper, the band and the verdict (WITHIN, OUTSIDE, NO_PAPER,
    INCOMPLETE, NOT_COMPARED)."""

    key: RunKey
    metric: str
    seeds: tuple[int, ...]
    run: float | None
    run_sd: float | None
    paper: PaperNumber | None
    others: tuple[PaperNumber, ...]
    diff: float | None
    band: Band | None
    verdict: str
    note: str = ""


@dataclass(frozen=True)
class Difference:
    """Something the run record shows differing from the paper's recipe, with the datasets it concerns
    and where the paper's value comes from."""

    what: str
    run: str
    paper: str
    datasets: tuple[str, ...]
    source: str


@dataclass(frozen=True)
class MethodComparison:
    """One method's entries, the paper datasets the run lacks, the recipe differences the run record
    shows, what the record does not let us check, and notes (a paper's claims when it has no numbers)."""

    method: str
    entries: tuple[Entry, ...]
    missing: tuple[str, ...]
    differences: tuple[Difference, ...]
    unchecked: tuple[str, ...]
    notes: tuple[str, ...]

    @property
    def outside(self) -> bool:
        return any(entry.verdict == OUTSIDE for entry in self.entries)


@dataclass(frozen=True)
class Comparison:
    """A protocol's run beside the papers: the backbone, whether it is comparable at all (and why
    not), and one MethodComparison per method."""

    protocol: str
    model: str | None
    pretrained: str | None
    comparable: bool
    reasons: tuple[str, ...]
    notes: tuple[str, ...]
    methods: tuple[MethodComparison, ...]


def compare_with_papers(rows: Sequence[dict], config: dict, method: str | None = None,
                        cards: dict[str, dict] | None = None) -> Comparison:
    """A protocol's rows (as `results.json` holds them) and config beside the paper cards.

    rows: the project's result rows of one protocol (see the module docstring); config: the results'
    config ({"spec": {"protocol", ...}, "model", "pretrained", ...}); method: only this method;
    cards: `load_cards()` by default. Returns a Comparison (render it with `render_comparison`).
    """
    cards = load_cards() if cards is None else cards
    protocol = protocol_of(config)
    rows = _rows_of_method(rows, method)
    numbers = [n for n in paper_numbers(cards) if n.protocol == protocol]
    groups: dict[RunKey, list[dict]] = defaultdict(list)
    for row in rows:
        groups[run_key(row, protocol)].append(row)
    status, backbone_note = backbone_status(config)
    reasons = not_comparable_reasons(status, backbone_note, groups, numbers, protocol)
    notes = [] if numbers else [f"the paper cards hold no {protocol} numbers"]
    methods = [m for m in METHODS if any(k.method == m for k in groups)]
    methods += sorted({k.method for k in groups} - set(methods))
    against = [] if reasons else numbers  # a run that is not comparable is listed on its own
    compared = tuple(_compare_method(m, protocol, groups, against, cards, config, not reasons) for m in methods)
    return Comparison(protocol, config.get("model"), config.get("pretrained"), not reasons, tuple(reasons),
                      tuple(notes), compared)


def _rows_of_method(rows: Sequence[dict], method: str | None) -> list[dict]:
    if method is None:
        return list(rows)
    chosen = [row for row in rows if row["method"] == method]
    if not chosen:
        present = sorted({row["method"] for row in rows})
        raise ValueError(f"no rows of method {method!r} in these results; they hold {', '.join(present) or 'none'}")
    return chosen


def backbone_status(config: dict) -> tuple[str, str]:
    """("paper" | "variant" | "other", a description) of a results config's backbone against the papers'
    CLIP ViT-B/16 with OpenAI's weights. "variant": the architecture and weights may match but the run
    record shows a known difference (open_clip's GELU ViT-B-16, or a local weights file)."""
    model, pretrained = config.get("model"), config.get("pretrained")
    shown = f"{model} ({pretrained or 'no pretrained tag'})"
    if model not in PAPER_MODELS or not pretrained:
        return "other", f"other model: {shown}; the papers' numbers are for {PAPER_BACKBONE}"
    if pretrained != "openai":
        if "/" in pretrained or pretrained.endswith((".pt", ".pth", ".bin", ".safetensors")):
            return "variant", (f"{shown}: weights from a local file, taken to be OpenAI's ViT-B/16 (QuickGELU is "
                               f"forced only for OpenAI's TorchScript archive or the -quickgelu model)")
        return "other", f"other weights: {shown}; the papers' numbers are for {PAPER_BACKBONE}"
    if model != "ViT-B-16-quickgelu":
        return "variant", (f"{shown}: open_clip's ViT-B-16 uses GELU while OpenAI's weights were trained with "
                           f"QuickGELU (use ViT-B-16-quickgelu)")
    return "paper", f"{shown}: {PAPER_BACKBONE}"


def not_comparable_reasons(status: str, backbone_note: str, groups: dict[RunKey, list[dict]],
                           numbers: Sequence[PaperNumber], protocol: str) -> list[str]:
    """Why a run cannot be set against the papers at all (an empty list when it can): another model,
    or none of its datasets in the papers' benchmark."""
    reasons = [backbone_note] if status == "other" else []
    known = set(PROTOCOL_DATASETS[protocol]) | {n.context for n in numbers if n.context}
    datasets = sorted({k.dataset for k in groups} | {k.context for k in groups if k.context})
    if datasets and not set(datasets) & known:
        reasons.append(f"other data: {', '.join(datasets)} are not datasets of the papers' {protocol} benchmark "
                       f"({', '.join(PROTOCOL_DATASETS[protocol])})")
    return reasons


def _compare_method(method: str, protocol: str, groups: dict[RunKey, list[dict]], numbers: Sequence[PaperNumber],
                    cards: dict[str, dict], config: dict, comparable: bool) -> MethodComparison:
    first_seen: dict[str, int] = {}
    for i, key in enumerate(groups):
        first_seen.setdefault(key.dataset, i)
    keys = sorted((k for k in groups if k.method == method), key=lambda k: _key_order(k, protocol, first_seen))
    own_numbers = [n for n in numbers if n.method == method]
    variances = seed_variances(cards, method, protocol)
    entries = [_entry(key, metric, groups[key], own_numbers, variances, comparable)
               for key in keys for metric in PROTOCOL_METRICS[protocol] if _has_metric(groups[key], metric)]
    entries += _average_entries(method, protocol, keys, groups, own_numbers, variances, comparable)
    entries.sort(key=lambda e: (e.key.shots or 0, SCORES.index(e.key.score) if e.key.score in SCORES else -1,
                                e.key.dataset != AVERAGE))  # stable: the average first, as the papers print it
    rows = [row for key in keys for row in groups[key]]
    differences, unchecked = recipe_differences(method, protocol, rows, config, cards) if comparable else ([], [])
    return MethodComparison(method, tuple(entries), _missing_datasets(keys, own_numbers), tuple(differences),
                            tuple(unchecked), _method_notes(method, cards))


def _has_metric(rows: Sequence[dict], metric: str) -> bool:
    needed = ("base", "novel") if metric == "hm" else (metric,)
    return all(all(name in row for name in needed) for row in rows)


def _key_order(key: RunKey, protocol: str, first_seen: dict[str, int]) -> tuple:
    """K, then OOD score, then the benchmark's dataset order (other datasets in order of appearance)."""
    datasets = PROTOCOL_DATASETS[protocol]
    position = datasets.index(key.dataset) if key.dataset in datasets else len(datasets) + first_seen[key.dataset]
    return (key.shots or 0, SCORES.index(key.score) if key.score in SCORES else -1, position)


def matching_numbers(key: RunKey, metric: str, numbers: Sequence[PaperNumber]) -> list[PaperNumber]:
    """The papers' numbers for a run entry, the method's own paper first (`HOME_CARD`), then
    `CARD_PRIORITY`; a zero-shot row (shots None) matches every K."""
    found = [n for n in numbers
             if (n.method, n.dataset, n.metric, n.score) == (key.method, key.dataset, metric, key.score)
             and n.shots in (None, key.shots) and (n.context is None or n.context == key.context)]
    order = card_order({n.card for n in found}, HOME_CARD.get(key.method))
    return sorted(found, key=lambda n: order.index(n.card))


def _entry(key: RunKey, metric: str, rows: Sequence[dict], numbers: Sequence[PaperNumber],
           variances: Sequence[dict], comparable: bool) -> Entry:
    values = per_seed(rows, metric)
    run = seed_mean(rows, metric)
    run_sd = sample_sd(values.values())
    found = matching_numbers(key, metric, numbers)
    paper = found[0] if found else None
    point = _paper_point(key, numbers) if metric == "hm" else None
    band = band_for(key.dataset, metric, paper, run_sd, variances, point) if paper else None
    return Entry(key, metric, tuple(sorted(values)), run, run_sd, paper, _others(found), _diff(run, paper), band,
                 _verdict(run, paper, band, comparable, complete=True))


def _average_entries(method: str, protocol: str, keys: Sequence[RunKey], groups: dict[RunKey, list[dict]],
                     numbers: Sequence[PaperNumber], variances: Sequence[dict], comparable: bool) -> list[Entry]:
    """One "average" entry per (K, score, context) and metric: over the datasets the paper averages
    when it prints an average (INCOMPLETE when the run lacks some), else over the run's datasets."""
    entries = []
    for shots, score, context in dict.fromkeys((k.shots, k.score, k.context) for k in keys):
        by_dataset = {k.dataset: groups[k] for k in keys if (k.shots, k.score, k.context) == (shots, score, context)}
        average_key = RunKey(method, AVERAGE, shots, score, context)
        for metric in PROTOCOL_METRICS[protocol]:
            if all(_has_metric(rows, metric) for rows in by_dataset.values()):
                entries += _average_entry(average_key, metric, by_dataset, numbers, variances, comparable)
    return entries


def _average_entry(key: RunKey, metric: str, by_dataset: dict[str, list[dict]], numbers: Sequence[PaperNumber],
                   variances: Sequence[dict], comparable: bool) -> list[Entry]:
    found = matching_numbers(key, metric, numbers)
    paper = found[0] if found else None
    averaged = list(paper.average_of) if paper else [d for d in by_dataset if d != key.context]
    present = [d for d in averaged if d in by_dataset]
    if len(present) < 2 and paper is None:
        return []
    if not present:
        return [Entry(key, metric, (), None, None, paper, _others(found), None, None, INCOMPLETE,
                      "the run has none of the datasets the paper averages")]
    run, per_seed_averages = _run_average({d: by_dataset[d] for d in present}, metric)
    run_sd = sample_sd(per_seed_averages.values())
    point = _paper_point(key, numbers) if metric == "hm" else None
    band = band_for(AVERAGE, metric, paper, run_sd, variances, point) if paper else None
    missing = [d for d in averaged if d not in by_dataset]
    note = f"the run lacks {', '.join(missing)}: its average is over {len(present)} of {len(averaged)} datasets" \
        if missing else _per_dataset_hm_note({d: by_dataset[d] for d in present}, run, metric)
    verdict = _verdict(run, paper, band, comparable, complete=not missing)
    return [Entry(key, metric, tuple(sorted(per_seed_averages)), run, run_sd, paper, _others(found),
                  _diff(run, paper), band, verdict, note)]


def _run_average(by_dataset: dict[str, list[dict]], metric: str) -> tuple[float, dict[int, float]]:
    """The run's average over datasets (HM of the averaged base and novel for "hm") and the same
    average per seed, over the seeds every dataset has."""
    if metric == "hm":
        base, base_seeds = _run_average(by_dataset, "base")
        novel, novel_seeds = _run_average(by_dataset, "novel")
        return harmonic_mean(base, novel), {s: harmonic_mean(base_seeds[s], novel_seeds[s]) for s in base_seeds}
    values = {dataset: per_seed(rows, metric) for dataset, rows in by_dataset.items()}
    common = set.intersection(*(set(v) for v in values.values()))
    average = statistics.fmean(statistics.fmean(v.values()) for v in values.values())
    return average, {s: statistics.fmean(v[s] for v in values.values()) for s in sorted(common)}


def _per_dataset_hm_note(by_dataset: dict[str, list[dict]], hm: float, metric: str) -> str:
    if metric != "hm":
        return ""
    mean_hm = statistics.fmean(seed_mean(rows, "hm") for rows in by_dataset.values())
    if abs(mean_hm - hm) < 0.005:
        return ""
    return (f"mean of the per-dataset HMs: {mean_hm:.2f} (the HM shown is of the averaged base and novel, "
            f"as the papers print it)")


def _paper_point(key: RunKey, numbers: Sequence[PaperNumber]) -> tuple[float, float] | None:
    """The paper's (base, novel) for a base-to-novel key, where an HM band is propagated."""
    base = matching_numbers(key, "base", numbers)
    novel = matching_numbers(key, "novel", numbers)
    return (base[0].value, novel[0].value) if base and novel else None


def _others(found: Sequence[PaperNumber]) -> tuple[PaperNumber, ...]:
    """The numbers other cards print for the same entry, where they differ from the reference's."""
    return tuple(n for n in found[1:] if n.value != found[0].value)


def _diff(run: float, paper: PaperNumber | None) -> float | None:
    return run - paper.value if paper else None


def _verdict(run: float, paper: PaperNumber | None, band: Band | None, comparable: bool, complete: bool) -> str:
    if not comparable:
        return NOT_COMPARED
    if paper is None or band is None:
        return NO_PAPER
    if not complete:
        return INCOMPLETE
    return WITHIN if abs(run - paper.value) <= band.half_width + 1e-9 else OUTSIDE


def band_for(dataset: str, metric: str, paper: PaperNumber, run_sd: float | None, variances: Sequence[dict],
             point: tuple[float, float] | None) -> Band:
    """The band of an entry: from a cited seed SD when a card reports one for it, else the default."""
    floor = 0.5 * 10 ** -paper.decimals
    for variance in variances:
        sd = cited_sd(variance, dataset, metric, point)
        if sd is not None:
            return Band(max(BAND_SDS * sd, floor), "paper", sd, variance["citation"])
    run_part = BAND_SDS * run_sd if run_sd is not None else 0.0
    return Band(max(run_part, DEFAULT_BAND, floor), "default", None, "")


def cited_sd(variance: dict, dataset: str, metric: str, point: tuple[float, float] | None) -> float | None:
    """The seed SD a seed-variance entry gives for (dataset, metric): printed per dataset; for the
    average sqrt(sum sd_i^2) / n over every dataset it lists; for "hm" the base and novel SDs
    propagated through HM at `point` = (base, novel). None when it gives none."""
    sds = variance.get("sd", {})
    if metric == "hm":
        base, novel = (cited_sd(variance, dataset, m, None) for m in ("base", "novel"))
        if base is None or novel is None or point is None:
            return None
        b, n = point
        return math.hypot(2 * n ** 2 / (b + n) ** 2 * base, 2 * b ** 2 / (b + n) ** 2 * novel)
    if dataset == AVERAGE:
        per_dataset = [sds[d].get(metric) for d in sds]
        if not per_dataset or None in per_dataset:
            return None
        return math.sqrt(sum(sd ** 2 for sd in per_dataset)) / len(per_dataset)
    return sds.get(dataset, {}).get(metric)


def _missing_datasets(keys: Sequence[RunKey], numbers: Sequence[PaperNumber]) -> tuple[str, ...]:
    """Datasets the papers print for this method (at the run's K) that the run lacks."""
    run_shots = {k.shots for k in keys}
    have = {k.dataset for k in keys}
    printed = dict.fromkeys(d for n in numbers if n.shots is None or n.shots in run_shots
                            for d in (n.average_of if n.dataset == AVERAGE else (n.dataset,)))
    return tuple(d for d in printed if d not in have)


def _method_notes(method: str, cards: dict[str, dict]) -> tuple[str, ...]:
    """For a method no card prints a number of: why its paper has none, and its claims."""
    card = cards.get(HOME_CARD.get(method, ""))
    if card is None or any(n.method == method for n in paper_numbers(cards)):
        return ()
    claims = [f"claim ({card['sources'][c['source']].get('part', c['source'])}): {c['claim']}" for c in card["claims"]]
    return (f"{card['title']}: no public numbers ({card['not_sourced'][0]['why']})", *claims)


# ------------------------------------------------------------------------------ recipe differences


def recipe_differences(method: str, protocol: str, rows: Sequence[dict], config: dict,
                       cards: dict[str, dict]) -> tuple[list[Difference], list[str]]:
    """What the run record (rows' recipes, checkpoints and OOD rules, the config's few-shot sampling and
    backbone) shows differing from the papers' recipes, merged over datasets, and what it does not
    record (so cannot be checked)."""
    found: dict[tuple[str, str, str, str], list[str]] = {}
    unchecked: set[str] = set()
    for row in rows:
        for what, run, paper, source in _row_differences(method, protocol, row, config, cards, unchecked):
            found.setdefault((what, run, paper, source), []).append(row["dataset"])
    differences = [Difference(what, run, paper, tuple(dict.fromkeys(datasets)), source)
                   for (what, run, paper, source), datasets in found.items()]
    status, note = backbone_status(config)
    if status == "variant":
        differences.append(Difference("backbone", note, PAPER_BACKBONE, (), ""))
    return differences, sorted(unchecked)


def _row_differences(method: str, protocol: str, row: dict, config: dict, cards: dict[str, dict],
                     unchecked: set[str]) -> list[tuple[str, str, str, str]]:
    """(what, run value, paper value, citation) for one row."""
    recipe = row.get("recipe") or {}
    if recipe.get("rule", "paper") != "paper":
        return [("recipe rule", str(recipe["rule"]), "paper", "")]
    if method == "zeroshot":
        return _template_difference(row, cards, unchecked)
    trained_on = row["dataset"] if protocol in ("base2novel", "fewshot", "ood") else row.get("source", row["dataset"])
    paper, citations = paper_recipe(cards, method, protocol, trained_on, row.get("shots"), HOME_CARD.get(method))
    if not paper:
        unchecked.add(f"the recipe (no card states the papers' {method} recipe for {protocol})")
        return []
    run = {**(recipe.get("train") or {}), "checkpoint": checkpoint_kind(row.get("checkpoint")),
           "fpr95_rule": row.get("fpr95_rule"),
           "sampling": config.get("spec", {}).get("sampling")}
    source = "; ".join(citations)
    differences = []
    for field in RECIPE_FIELDS:
        if field not in paper or paper[field] is None:
            continue
        if run.get(field) is None:
            unchecked.add(f"{field.replace('_', ' ')} (not in the run record)")
        elif _normalised(run[field]) != _normalised(paper[field]):
            what = field.replace("_", " ")
            differences.append((what, _shown(field, run[field]), _shown(field, paper[field]), source))
    return differences


def checkpoint_kind(checkpoint: str | None) -> str | None:
    """A row's checkpoint as the paper cards name it: "GPA aggregate of epochs 1-20" -> "GPA aggregate"."""
    return checkpoint.split(" of epochs")[0] if checkpoint else checkpoint


def _template_difference(row: dict, cards: dict[str, dict], unchecked: set[str]) -> list[tuple[str, str, str, str]]:
    template = (row.get("recipe") or {}).get("options", {}).get("template")
    paper = paper_template(cards, row["dataset"])
    if paper is None:
        return []
    if template is None:
        unchecked.add("template (not in the run's options)")
        return []
    if template.strip().lower() != paper[0].strip().lower():  # CLIP's tokenizer lowercases text
        return [("template", template, paper[0], paper[1])]
    return []


def _normalised(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def _shown(field: str, value: Any) -> str:
    if field == "precision":
        return f"{value} ({PRECISIONS.get(value, 'unknown')})"
    if field == "crop_scale":
        return f"({value[0]:g}, {value[1]:g})"
    return f"{value:g}" if isinstance(value, float) else str(value)


# ------------------------------------------------------------------------------------- rendering


def verdict_text(entry: Entry) -> str:
    """The verdict in words, naming the band it rests on."""
    if entry.verdict not in (WITHIN, OUTSIDE):
        return entry.verdict
    band = "the papers' reported seed variance" if entry.band.source == "paper" else "the default band"
    return f"{entry.verdict} {band}"


def render_comparison(comparison: Comparison) -> str:
    """A comparison as plain text: a header, then per method a table of entries and what explains them."""
    lines = [f"{comparison.protocol}: {comparison.model} ({comparison.pretrained}) beside the papers"]
    if not comparison.comparable:
        lines.append("NOT COMPARABLE with the papers' numbers:")
        lines += [f"  - {reason}" for reason in comparison.reasons]
        lines.append("  The run's numbers are listed for reference only.")
    lines += [f"  ({note})" for note in comparison.notes]
    for method in comparison.methods:
        lines += ["", *_method_lines(method)]
    lines += ["", _band_legend()]
    return "\n".join(lines)


def _method_lines(method: MethodComparison) -> list[str]:
    lines = [f"{METHOD_TITLES.get(method.method, method.method)} ({method.method})"]
    header = ("dataset", "K", "metric", "run", "sd", "seeds", "paper", "diff", "band", "verdict")
    table = [header] + [_entry_cells(entry) for entry in method.entries]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    lines += ["  " + "  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in table]
    lines += [f"  {entry.key.dataset} {entry.metric}: {entry.note}" for entry in method.entries if entry.note]
    lines += _reference_lines(method)
    if method.missing:
        lines.append(f"  paper datasets missing from the run: {', '.join(method.missing)}")
    if method.differences:
        heading = "likely causes (the run record differs from the paper's recipe):" if method.outside else \
            "recipe differences (the run record differs from the paper's recipe):"
        lines.append(f"  {heading}")
        lines += [_difference_line(d) for d in method.differences]
    if method.unchecked:
        lines.append(f"  not checked: {'; '.join(method.unchecked)}")
    lines += [f"  {note}" for note in method.notes]
    return lines


def _difference_line(difference: Difference) -> str:
    line = f"    - {difference.what}: run {difference.run}; paper {difference.paper}"
    if difference.datasets:
        line += f" [{', '.join(difference.datasets)}]"
    return line + (f" (source: {difference.source})" if difference.source else "")


def _entry_cells(entry: Entry) -> tuple[str, ...]:
    dataset = entry.key.dataset + (f" ({entry.key.score})" if entry.key.score else "")
    paper = f"{entry.paper.value:.{entry.paper.decimals}f}" if entry.paper else "-"
    diff = f"{entry.diff:+.2f}" if entry.diff is not None else "-"
    band = f"±{entry.band.half_width:.2f} {entry.band.source}" if entry.band else "-"
    run = "-" if entry.run is None else f"{entry.run:.2f}"
    sd = f"{entry.run_sd:.2f}" if entry.run_sd is not None else "-"
    return (dataset, str(entry.key.shots if entry.key.shots is not None else "-"), entry.metric, run, sd,
            str(len(entry.seeds)), paper, diff, band, verdict_text(entry))


def _reference_lines(method: MethodComparison) -> list[str]:
    """Where the paper numbers come from (each table once, with the paper table a thread quotes), and what
    other cards print differently."""
    references = dict.fromkeys((e.paper.card, e.paper.caption, e.paper.source, e.paper.quotes)
                               for e in method.entries if e.paper)
    lines = [f"  paper numbers: {card} card, {caption} ({source}{f'; quoting {quotes}' if quotes else ''})"
             for card, caption, source, quotes in references]
    cited: dict[str, list[str]] = defaultdict(list)
    for e in method.entries:
        if e.band and e.band.source == "paper":
            cited[e.band.citation].append(f"{e.key.dataset} {e.metric} {e.band.sd:.2f}")
    lines += [f"  paper band: {BAND_SDS:g} x the seed SD reported in {citation} ({', '.join(sds)})"
              for citation, sds in cited.items()]
    others = [(e, other) for e in method.entries for other in e.others]
    lines += [f"  also printed: {e.key.dataset} {e.metric} {other.value:.{other.decimals}f} in the {other.card} card "
              f"({other.caption})" for e, other in others]
    return lines


def _band_legend() -> str:
    return (f"Bands: 'paper' = {BAND_SDS:g} x the seed SD a paper card cites for that number; 'default' = the larger "
            f"of {BAND_SDS:g} x the run's sample SD and {DEFAULT_BAND:g} point, where the paper reports no seed "
            f"variance. sd is the run's sample SD over its seeds.")
