"""Few-shot splits persisted as JSON (CoOp's practice) and GalLoP's official-protocol options.

CoOp samples a few-shot split once per (dataset, K, seed) and keeps it in the dataset's folder as
`split_fewshot/shot_{K}-seed_{seed}.pkl`; here the same name ends in `.json`, so a run is
reproducible without re-sampling and a person can read which images were chosen. The file is
reloaded whenever it exists; delete it to sample again.

Options, each off by default (the default is the CoOp protocol of docs/methods.md); a
non-default choice is added to the file name so it never reads another protocol's file:
- `sampling="stratified_total"` (GalLoP's scripts): shots·C training images drawn as one
  class-proportional stratified sample instead of `shots` per class. Class quotas are the
  largest-remainder rounding of shots·C·n_c/N; GalLoP draws with scikit-learn's
  StratifiedShuffleSplit, so its draws (not its quotas) differ from these. Val is CoOp's.
  File suffix "-stratified_total".
- `train_on_trainval=True` (GalLoP's FGVCAircraft): the training pool is train + val and there
  is no validation split. File suffix "-trainval".
- `class_order="first_appearance"` (GalLoP's class indices): says that `data` is labelled in order
  of first appearance (`vlp_core.data.base.FirstAppearanceOrder`), so its files, whose items carry
  those labels, never mix with the CoOp-labelled ones. File suffix "-first_appearance".
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict
from pathlib import Path
from typing import Literal, Sequence

from vlp_core.choices import check_choice
from vlp_core.data.base import ClassificationData, ClassOrder, Datum
from vlp_core.data.fewshot import group_by_label, sample_few_shot
from vlp_core.files import write_text_atomically

Sampling = Literal["per_class", "stratified_total"]
SAMPLINGS: tuple[Sampling, ...] = ("per_class", "stratified_total")


def few_shot_path(
    cache_dir: str | Path, shots: int, seed: int, sampling: Sampling = "per_class",
    train_on_trainval: bool = False, class_order: ClassOrder = "label",
) -> Path:
    """`cache_dir/split_fewshot/shot_{K}-seed_{seed}[-stratified_total][-trainval][-first_appearance].json`."""
    suffix = ("" if sampling == "per_class" else f"-{sampling}") + ("-trainval" if train_on_trainval else "")
    suffix += "" if class_order == "label" else f"-{class_order}"
    return Path(cache_dir) / "split_fewshot" / f"shot_{shots}-seed_{seed}{suffix}.json"


def few_shot_split(
    data: ClassificationData,
    shots: int,
    seed: int,
    cache_dir: str | Path | None,
    sampling: Sampling = "per_class",
    train_on_trainval: bool = False,
    class_order: ClassOrder = "label",
) -> tuple[list[Datum], list[Datum]]:
    """(train, val) few-shot items of `data`, read from `few_shot_path(cache_dir, ...)` if it
    exists, else sampled and written there (`cache_dir=None`: sampled, not persisted).

    Per class (default) the sample is `sample_few_shot`'s: K per class from train, then
    min(K, 4) per class from val (`check_shots` first). Pass a dataset's own folder as `cache_dir` (for a
    `CoOpDataset`, its `folder`), as files of different datasets share names.
    """
    check_choice("sampling", sampling, SAMPLINGS)
    check_shots(data, shots, sampling, train_on_trainval)
    train, val = data.split("train"), data.split("val")
    if train_on_trainval:
        train, val = train + val, []
    header = {
        "dataset": data.name, "shots": shots, "seed": seed, "sampling": sampling,
        "train_on_trainval": train_on_trainval,
        **({} if class_order == "label" else {"class_order": class_order}),  # files written before it stay valid
    }
    path = None if cache_dir is None else few_shot_path(cache_dir, shots, seed, sampling, train_on_trainval,
                                                        class_order)
    if path is not None and path.exists():
        return _load(path, header, train, val)
    few_train, few_val = sample_few_shot(train, val, shots, seed)
    if sampling == "stratified_total":
        few_train = sample_stratified_total(train, shots, seed)
    if path is not None:
        _save(path, header, few_train, few_val)
    return few_train, few_val


def check_shots(data: ClassificationData, shots: int, sampling: Sampling = "per_class",
                train_on_trainval: bool = False) -> None:
    """Have a dataset that refuses classes with fewer training images than `shots` (a user's folder,
    `vlp_core.data.folder`: its `require_shots`) check a per-class draw from its train split; CoOp's
    benchmarks and SynthWorld keep all of a short class."""
    check = getattr(data, "require_shots", None)
    if check is not None and sampling == "per_class" and not train_on_trainval:
        check(shots)


def sample_stratified_total(items: Sequence[Datum], shots: int, seed: int) -> list[Datum]:
    """min(shots·C, N) items of C classes, each class's count proportional to its share of `items`.

    Quotas: floor(total·n_c/N), the remaining items going one each to the classes with the
    largest remainders (ties: order of first appearance). One `random.Random(seed)` draws the
    classes in order of first appearance.
    """
    if shots < 1:
        raise ValueError(f"shots must be >= 1, got {shots}")
    groups = list(group_by_label(items).values())
    total = min(shots * len(groups), len(items))
    rng = random.Random(seed)
    chosen: list[Datum] = []
    for group, quota in zip(groups, _proportional_quotas([len(g) for g in groups], total)):
        chosen += rng.sample(group, quota)
    return chosen


def _proportional_quotas(counts: Sequence[int], total: int) -> list[int]:
    """Largest-remainder apportionment of `total` (<= sum(counts)) over `counts`."""
    size = sum(counts)
    quotas = [total * count // size for count in counts]
    by_remainder = sorted(range(len(counts)), key=lambda i: -(total * counts[i] % size))
    for i in by_remainder[: total - sum(quotas)]:
        quotas[i] += 1
    return quotas


def _save(path: Path, header: dict, train: Sequence[Datum], val: Sequence[Datum]) -> None:
    """Write header and items as JSON, via a temporary file of this process so a reader never sees
    half a file, even while runs in other processes write the same draw."""
    content = {**header, "train": [asdict(d) for d in train], "val": [asdict(d) for d in val]}
    write_text_atomically(path, json.dumps(content, indent=1))


def _load(
    path: Path, header: dict, train: Sequence[Datum], val: Sequence[Datum]
) -> tuple[list[Datum], list[Datum]]:
    """The items of a saved split, checked against the request and the dataset's current splits. A draw
    names images (key and label): each comes back as the dataset has it now, so renaming a class keeps
    its draws."""
    content = json.loads(path.read_text(encoding="utf-8"))
    stored = {key: content.get(key) for key in header}
    if stored != header:
        raise ValueError(f"{path} holds the split {stored}, not {header}; pass this dataset's own cache_dir")
    drawn = []
    for part, pool in (("train", train), ("val", val)):
        current = {(d.key, d.label): d for d in pool}
        chosen = [(d["key"], d["label"]) for d in content[part]]
        stale = [key for key, label in chosen if (key, label) not in current]
        if stale:
            raise ValueError(f"{path} lists items no longer in {header['dataset']} (e.g. {stale[0]}); "
                             "delete it to sample again")
        drawn.append([current[item] for item in chosen])
    return drawn[0], drawn[1]
