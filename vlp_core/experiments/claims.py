"""Every claim of the two papers, graded on the project's result files by one declared rule
(`vlp_core.experiments.statistics`): a paired difference with its 95 % bootstrap interval over seeds
and test images, and the verdict that interval gives.

A claim is data: what the paper says and where, the number it is about (`metric`), and the two sides
of the comparison (`Side`: a results folder, a method, a head or an OOD score). `grade` reads the
per-image outcomes the runs kept and returns a `Graded` claim; `claims_table` renders them.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Sequence

import numpy as np

from vlp_core.experiments import statistics
from vlp_core.experiments.statistics import Interval

Metric = Literal["base", "novel", "hm", "acc", "fpr95", "auroc"]
PERCENT = {"base": "base top-1", "novel": "novel top-1", "hm": "HM", "acc": "top-1", "fpr95": "FPR95",
           "auroc": "AUROC"}


@dataclass(frozen=True)
class Side:
    """One side of a comparison: `method`'s runs in the results folder `results` (relative to the
    results root), its combined prediction or one `head` ("global", "local"), or one OOD `score`."""

    results: str
    method: str
    head: str = ""
    score: str = "mcm"

    def label(self) -> str:
        head = f" ({self.head} head)" if self.head else ""
        variant = "" if "/" not in self.results else f" [{self.results.split('/', 1)[1]}]"
        return f"{self.method}{head}{variant}"


@dataclass(frozen=True)
class Claim:
    """A claim of a paper: A is better than B on `metric`, over `datasets` (None: every dataset both
    sides ran; for dg / xd the targets, not the source) at K = `shots` (None: the runs' only K)."""

    id: str
    paper: Literal["DiSa", "GalLoP"]
    statement: str
    source: str
    metric: Metric
    a: Side
    b: Side
    datasets: tuple[str, ...] | None = None
    shots: int | None = None


def _b2n(method: str, results: str = "base2novel", head: str = "") -> Side:
    return Side(results, method, head)


B2N = "base2novel"
SUITES = ("shapes", "colour_shapes", "patterns", "scenes")
ABLATION = ("colour_shapes",)


TITLES = {"zeroshot": "zero-shot CLIP", "coop": "CoOp", "ivlp": "IVLP", "promptsrc": "PromptSRC", "disa": "DiSa",
          "gallop": "GalLoP"}


def _few_shot_claims(method: str, baseline: str, source: str, shots: Sequence[int] = (1, 2, 4, 8, 16)) -> list[Claim]:
    paper = TITLES[method]
    return [Claim(f"{method}.fewshot.k{k}.vs_{baseline}", paper,
                  f"{paper} beats {TITLES[baseline]} in few-shot classification with {k} shot{'s' * (k > 1)}", source,
                  "acc", Side("few_shot", method), Side("few_shot", baseline), shots=k) for k in shots]


CLAIMS: tuple[Claim, ...] = (
    # DiSa (KDD 2025): abstract, TL;DR and figure captions
    *(Claim(f"disa.b2n.{metric}.vs_{baseline}", "DiSa",
            f"DiSa beats {name} on {what} in base-to-novel generalisation", "abstract; spec section 5", metric,
            _b2n("disa"), _b2n(baseline), SUITES)
      for baseline, name in (("promptsrc", "PromptSRC"), ("ivlp", "IVLP"), ("coop", "CoOp"))
      for metric, what in (("base", "base classes"), ("novel", "novel classes"), ("hm", "the harmonic mean"))),
    *_few_shot_claims("disa", "promptsrc", "figure 3: few-shot gains, largest at 1-4 shots"),
    Claim("disa.dg.vs_promptsrc", "DiSa", "DiSa beats PromptSRC in domain generalisation (target average)",
          "abstract: domain generalisation", "acc", Side("domain_generalisation", "disa"),
          Side("domain_generalisation", "promptsrc")),
    Claim("disa.xd.vs_promptsrc", "DiSa", "DiSa beats PromptSRC in cross-dataset transfer (target average)",
          "abstract: cross-dataset generalisation", "acc", Side("cross_dataset", "disa"),
          Side("cross_dataset", "promptsrc")),
    Claim("disa.ablation.cir", "DiSa", "cross-interactive regularisation raises the harmonic mean",
          "figure 2 and ablation", "hm", _b2n("disa"), _b2n("disa", "ablation_disa/no_cir"), ABLATION),
    Claim("disa.ablation.dir", "DiSa", "directional regularisation raises the harmonic mean", "figure 2 and ablation",
          "hm", _b2n("disa"), _b2n("disa", "ablation_disa/no_dir"), ABLATION),
    Claim("disa.ablation.mask", "DiSa", "saliency-aware masking in CIR raises novel-class accuracy over no masking",
          "figure 4", "novel", _b2n("disa"), _b2n("disa", "ablation_disa/no_mask"), ABLATION),
    Claim("disa.ablation.saliency", "DiSa", "masking the least salient patches beats masking random patches",
          "figure 4b", "novel", _b2n("disa"), _b2n("disa", "ablation_disa/pool_random"), ABLATION),
    Claim("disa.ablation.random_pool", "DiSa",
          "a random draw among the 50 % least informative patches beats the fixed least salient ones",
          "figure 4b", "novel", _b2n("disa"), _b2n("disa", "ablation_disa/pool_bottom"), ABLATION),
    Claim("disa.ablation.ratio_low", "DiSa", "novel accuracy at 30 % masked beats no masking (peak at 25-35 %)",
          "figure 4a", "novel", _b2n("disa"), _b2n("disa", "ablation_disa/ratio_0.0"), ABLATION),
    Claim("disa.ablation.ratio_high", "DiSa", "novel accuracy at 30 % masked beats 60 % masked (peak at 25-35 %)",
          "figure 4a", "novel", _b2n("disa"), _b2n("disa", "ablation_disa/ratio_0.6"), ABLATION),
    *(Claim(f"disa.ablation.dir_{loss}", "DiSa",
            f"directional (cosine) alignment with the prototypes beats {loss} alignment", "figure 4c", "hm",
            _b2n("disa"), _b2n("disa", f"ablation_disa/dir_{loss}"), ABLATION) for loss in ("mse", "l1")),
    # GalLoP (ECCV 2024)
    *_few_shot_claims("gallop", "promptsrc", "tables 1-2 and figure 3: few-shot classification"),
    *_few_shot_claims("gallop", "coop", "table 1", shots=(16,)),
    Claim("gallop.dg.vs_promptsrc", "GalLoP", "GalLoP beats PromptSRC in domain generalisation (target average)",
          "table 2", "acc", Side("domain_generalisation", "gallop"), Side("domain_generalisation", "promptsrc")),
    Claim("gallop.dg.vs_zeroshot", "GalLoP", "GalLoP beats zero-shot CLIP in domain generalisation (target average)",
          "table 2", "acc", Side("domain_generalisation", "gallop"), Side("domain_generalisation", "zeroshot")),
    Claim("gallop.ood.fpr95", "GalLoP", "GalLoP with GL-MCM has a lower FPR95 than zero-shot CLIP with MCM",
          "table 3", "fpr95", Side("ood", "gallop", score="gl_mcm"), Side("ood", "zeroshot", score="mcm")),
    Claim("gallop.ood.auroc", "GalLoP", "GalLoP with GL-MCM has a higher AUROC than zero-shot CLIP with MCM",
          "table 3", "auroc", Side("ood", "gallop", score="gl_mcm"), Side("ood", "zeroshot", score="mcm")),
    Claim("gallop.ood.gl_mcm_fpr95", "GalLoP", "for GalLoP, GL-MCM has a lower FPR95 than MCM", "table 3",
          "fpr95", Side("ood", "gallop", score="gl_mcm"), Side("ood", "gallop", score="mcm")),
    Claim("gallop.ood.gl_mcm_auroc", "GalLoP", "for GalLoP, GL-MCM has a higher AUROC than MCM", "table 3",
          "auroc", Side("ood", "gallop", score="gl_mcm"), Side("ood", "gallop", score="mcm")),
    *(Claim(f"gallop.heads.{metric}.vs_{head}", "GalLoP",
            f"global and local prompts together beat the {head} prompts alone on {what}", "table 4",
            metric, _b2n("gallop"), _b2n("gallop", head=head), SUITES)
      for head in ("global", "local") for metric, what in (("base", "base classes"), ("novel", "novel classes"))),
    *(Claim(f"gallop.heads.k16.vs_{head}", "GalLoP",
            f"global and local prompts together beat the {head} prompts alone with 16 shots", "table 4", "acc",
            Side("few_shot", "gallop"), Side("few_shot", "gallop", head=head), shots=16) for head in ("global", "local")),
    Claim("gallop.ablation.sparse", "GalLoP", "sparse top-k local scores beat dense (all patches) ones",
          "table 4 and figure 4", "hm", _b2n("gallop"), _b2n("gallop", "ablation_gallop/k_dense"), ABLATION),
    Claim("gallop.ablation.multiscale", "GalLoP", "a different k per local prompt (multiscale) beats one k for all",
          "table 4", "hm", _b2n("gallop"), _b2n("gallop", "ablation_gallop/k_single"), ABLATION),
    Claim("gallop.ablation.dropout", "GalLoP", "prompt dropout on the global prompts raises the harmonic mean",
          "table 4", "hm", _b2n("gallop"), _b2n("gallop", "ablation_gallop/no_dropout"), ABLATION),
    Claim("gallop.ablation.local_proj", "GalLoP", "the learned local projection raises the harmonic mean",
          "table 4", "hm", _b2n("gallop"), _b2n("gallop", "ablation_gallop/no_local_proj"), ABLATION),
)


@dataclass(frozen=True)
class Graded:
    """A claim with its measurement: each side's value, the paired interval (None when a side has no
    runs), the seeds, datasets and test images it rests on."""

    claim: Claim
    value_a: float | None
    value_b: float | None
    interval: Interval | None
    seeds: tuple[int, ...]
    datasets: tuple[str, ...]
    images: int

    @property
    def verdict(self) -> str:
        return self.interval.verdict if self.interval is not None else "not run"


class Results:
    """The rows of the results folders under one root, each folder read once."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self._rows: dict[str, list[dict]] = {}

    def rows(self, folder: str) -> list[dict]:
        if folder not in self._rows:
            path = self.root / folder / "results.json"
            self._rows[folder] = json.loads(path.read_text())["rows"] if path.is_file() else []
        return self._rows[folder]

    def files(self) -> list[Path]:
        """Every results.json under the root (what the claims read)."""
        return sorted(self.root.rglob("results.json"))


def _outcome_key(metric: str, head: str) -> str:
    return f"{metric}_{head}" if head else metric


def _side_rows(results: Results, side: Side, shots: int | None) -> list[dict]:
    rows = [r for r in results.rows(side.results) if r["method"] == side.method]
    if shots is not None:
        rows = [r for r in rows if r["shots"] == shots]
    return rows


def _datasets(claim: Claim, rows_a: list[dict], rows_b: list[dict]) -> list[str]:
    """The datasets a claim averages over: its own list, or every dataset both sides ran (dg / xd:
    the targets, not the source), in the order of A's rows."""
    shared = [d for d in dict.fromkeys(r["dataset"] for r in rows_a) if any(r["dataset"] == d for r in rows_b)]
    if claim.datasets is not None:
        return [d for d in claim.datasets if d in shared]
    return [d for d in shared if not any(r.get("source") == d for r in rows_a)]


def _seeds(rows_a: list[dict], rows_b: list[dict], datasets: Sequence[str]) -> list[int]:
    """Seeds that both sides ran on every dataset."""
    def seeds(rows: list[dict], dataset: str) -> set[int]:
        return {r["seed"] for r in rows if r["dataset"] == dataset}
    common = [seeds(rows_a, d) & seeds(rows_b, d) for d in datasets]
    return sorted(set.intersection(*common)) if common else []


def _matrix(rows: list[dict], dataset: str, seeds: Sequence[int], key: str) -> np.ndarray:
    """0/1 outcomes (S, N) of `key` for `dataset`, one row per seed."""
    by_seed = {r["seed"]: r for r in rows if r["dataset"] == dataset}
    return np.array([[c == "1" for c in by_seed[s]["outcomes"][key]] for s in seeds], dtype=float)


def _ood_matrices(rows: list[dict], score: str, seeds: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    by_seed = {r["seed"]: r for r in rows if r["score"] == score}
    return (np.array([by_seed[s]["scores"]["id"] for s in seeds]), np.array([by_seed[s]["scores"]["ood"] for s in seeds]))


def grade(claim: Claim, results: Results) -> Graded:
    """Measure `claim` on the result files: each side's value, the paired interval and the verdict."""
    rows_a, rows_b = _side_rows(results, claim.a, claim.shots), _side_rows(results, claim.b, claim.shots)
    if claim.metric in ("fpr95", "auroc"):
        return _grade_ood(claim, rows_a, rows_b)
    datasets = _datasets(claim, rows_a, rows_b)
    seeds = _seeds(rows_a, rows_b, datasets)
    if not seeds:
        return Graded(claim, None, None, None, (), tuple(datasets), 0)
    if claim.metric == "hm":
        parts = {(side, part): [_matrix(rows, d, seeds, _outcome_key(part, side.head)) for d in datasets]
                 for side, rows in ((claim.a, rows_a), (claim.b, rows_b)) for part in ("base", "novel")}
        interval = statistics.hm_difference(parts[claim.a, "base"], parts[claim.a, "novel"],
                                            parts[claim.b, "base"], parts[claim.b, "novel"])
        values = [float(statistics.harmonic_mean(np.mean([100 * m.mean() for m in parts[s, "base"]]),
                                                  np.mean([100 * m.mean() for m in parts[s, "novel"]])))
                  for s in (claim.a, claim.b)]
        images = sum(m.shape[1] for m in parts[claim.a, "base"] + parts[claim.a, "novel"])
    else:
        a = [_matrix(rows_a, d, seeds, _outcome_key(claim.metric, claim.a.head)) for d in datasets]
        b = [_matrix(rows_b, d, seeds, _outcome_key(claim.metric, claim.b.head)) for d in datasets]
        interval = statistics.accuracy_difference(a, b)
        values = [float(np.mean([100 * m.mean() for m in side])) for side in (a, b)]
        images = sum(m.shape[1] for m in a)
    return Graded(claim, values[0], values[1], interval, tuple(seeds), tuple(datasets), images)


def _grade_ood(claim: Claim, rows_a: list[dict], rows_b: list[dict]) -> Graded:
    import torch

    from vlp_core.methods.ood import auroc, fpr_at_95_tpr

    seeds = sorted({r["seed"] for r in rows_a if r["score"] == claim.a.score} &
                   {r["seed"] for r in rows_b if r["score"] == claim.b.score})
    datasets = tuple(dict.fromkeys(r["ood"] for r in rows_a))
    if not seeds:
        return Graded(claim, None, None, None, (), datasets, 0)
    (a_id, a_ood), (b_id, b_ood) = _ood_matrices(rows_a, claim.a.score, seeds), _ood_matrices(rows_b, claim.b.score, seeds)
    if claim.metric == "fpr95":
        def metric(id_scores, ood_scores):
            return 100 * fpr_at_95_tpr(torch.from_numpy(id_scores), torch.from_numpy(ood_scores))
    else:
        def metric(id_scores, ood_scores):
            return 100 * auroc(torch.from_numpy(id_scores), torch.from_numpy(ood_scores))
    lower = claim.metric == "fpr95"
    interval = statistics.ood_difference(a_id, a_ood, b_id, b_ood, metric, lower_is_better=lower)
    values = [float(np.mean([metric(i[s], o[s]) for s in range(len(seeds))])) for i, o in ((a_id, a_ood), (b_id, b_ood))]
    return Graded(claim, values[0], values[1], interval, tuple(seeds), datasets, a_id.shape[1] + a_ood.shape[1])


def grade_all(results: Results, claims: Sequence[Claim] = CLAIMS) -> list[Graded]:
    return [grade(claim, results) for claim in claims]


def sentence(graded: Graded) -> str:
    """The claim and its grade in one sentence, the wording every page uses:
    "DiSa beats PromptSRC on novel classes ...: shown (+1.2 points, 95 % interval +0.3 to +2.1)"."""
    claim, interval = graded.claim, graded.interval
    if interval is None:
        return f"{claim.statement}: not run"
    unit = "points" if claim.metric != "fpr95" else "points lower"
    return (f"{claim.statement}: {graded.verdict} ({interval.difference:+.1f} {unit}, 95 % interval "
            f"{interval.low:+.1f} to {interval.high:+.1f})")


def claims_table(graded: Sequence[Graded]) -> str:
    """The markdown table of graded claims, one row each."""
    lines = ["| claim | paper, where | measured as | A | B | A - B [95 % interval] | seeds | verdict |",
             "|---|---|---|---|---|---|---|---|"]
    for g in graded:
        claim, interval = g.claim, g.interval
        where = f"{claim.a.results}" + (f", K = {claim.shots}" if claim.shots else "")
        datasets = ", ".join(g.datasets) if g.datasets else "-"
        measured = f"{PERCENT[claim.metric]}, {where}; {datasets} ({g.images} test images)"
        if interval is None:
            cells = [claim.statement, f"{claim.paper}, {claim.source}", measured, claim.a.label(), claim.b.label(),
                     "-", "-", "**not run**"]
        else:
            sign = "B - A" if claim.metric == "fpr95" else "A - B"
            cells = [claim.statement, f"{claim.paper}, {claim.source}", measured,
                     f"{claim.a.label()} {g.value_a:.1f}", f"{claim.b.label()} {g.value_b:.1f}",
                     f"{interval.difference:+.1f} [{interval.low:+.1f}, {interval.high:+.1f}]"
                     + (f" ({sign})" if claim.metric == "fpr95" else ""),
                     ", ".join(map(str, g.seeds)), f"**{g.verdict}**"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def verdict_counts(graded: Sequence[Graded]) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for g in graded:
        counts[g.verdict] += 1
    return dict(counts)
