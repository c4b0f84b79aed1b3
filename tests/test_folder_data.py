"""A user's own images (`vlp_core.data.folder`): a folder of class folders or a CoOp split file, read by
path through `open_dataset`; its split written once and reused; every bad input refused with its path and
fix before anything trains; and a small folder trained, evaluated and diagnosed from the command line."""

import json
import logging
from pathlib import Path

import pytest

from fakes import draw, photo_crops, write_folder
from vlp_core.commands import main as vlp
from vlp_core.data.datasets import open_dataset
from vlp_core.data.folder import SPLIT_FILE, FolderDataError, split_counts
from vlp_core.data.tasks import make_task
from vlp_core.experiments.jobs import JobData, plan_job
from vlp_core.experiments.spec import JobSpec


# ------------------------------------------------------------------------------- reading a folder


def test_split_counts_by_hand():
    assert split_counts(3) == {"train": 1, "val": 1, "test": 1}
    assert split_counts(10) == {"train": 5, "val": 2, "test": 3}
    assert split_counts(31) == {"train": 16, "val": 6, "test": 9}  # test round(9.3), val round(6.2)
    assert split_counts(5) == {"train": 2, "val": 1, "test": 2}  # test round(1.5) = 2: halves round up


def test_a_folder_is_split_once_and_reused(tmp_path, caplog):
    folder = write_folder(tmp_path / "shapes_i_drew", {"red_star": 10, "blue_circle": 5, "square": 31})
    caplog.set_level(logging.INFO, logger="vlp")
    data = open_dataset(str(folder))
    assert data.name == "shapes_i_drew"
    assert data.classnames == ["blue circle", "red star", "square"]  # sorted folders, underscores as spaces
    per_class = {split: [sum(d.label == c for d in data.split(split)) for c in range(3)] for split in
                 ("train", "val", "test")}
    assert per_class == {"train": [2, 5, 16], "val": [1, 2, 6], "test": [2, 3, 9]}
    assert data.split("train")[0].key.startswith("blue_circle/") and data.load_image(data.split("test")[0]).size == (48, 48)
    stored = json.loads((folder / SPLIT_FILE).read_text())
    assert stored["seed"] == 1 and stored["fractions"] == {"train": 0.5, "val": 0.2, "test": 0.3}
    assert len(stored["train"]) == 23 and stored["train"][0][1:] == [0, "blue circle"]
    assert f"written to {folder / SPLIT_FILE}; later runs reuse it" in caplog.text
    caplog.clear()
    again = open_dataset(str(folder))
    assert f"reusing the split in {folder / SPLIT_FILE}" in caplog.text
    assert [again.split(s) for s in ("train", "val", "test")] == [data.split(s) for s in ("train", "val", "test")]
    draw(folder / "square" / "new.png", "square", 99)
    open_dataset(str(folder))
    assert f"its split {folder / SPLIT_FILE} does not list, and that are not used: square/new.png; delete the split file" \
        in caplog.text


def test_few_shot_draws_are_kept_in_the_folder_and_are_no_class(tmp_path):
    folder = write_folder(tmp_path / "mine", {"star": 8, "circle": 8})
    task = make_task(open_dataset(str(folder)), shots=2, seed=3)
    assert (folder / "split_fewshot" / "shot_2-seed_3.json").is_file() and len(task.train) == 4
    assert open_dataset(str(folder)).classnames == ["circle", "star"]  # split_fewshot/ is not a class


def test_classnames_txt_names_the_classes(tmp_path):
    folder = write_folder(tmp_path / "mine", {"n01": 4, "n02": 4}, shape_of=lambda name: "star")
    (folder / "classnames.txt").write_text("n01 red star\nn02 blue_circle\n")
    assert open_dataset(str(folder)).classnames == ["red star", "blue circle"]
    (folder / "classnames.txt").write_text("n01 red star\nn03 square\n")
    with pytest.raises(FolderDataError) as error:
        open_dataset(str(folder))
    assert str(error.value) == (
        f"{folder / 'classnames.txt'} names no class for n02 and lists n03, which are not class folders: it holds "
        f"one line \"<folder> <class name>\" for every class folder of {folder} (or delete it to name classes by "
        f"their folders)")


def test_renaming_a_class_keeps_its_split_and_draws(tmp_path):
    folder = write_folder(tmp_path / "mine", {"star": 8, "circle": 8})
    before = make_task(open_dataset(str(folder)), shots=2, seed=1)
    (folder / "classnames.txt").write_text("circle type A\nstar type B\n")
    renamed = open_dataset(str(folder))
    after = make_task(renamed, shots=2, seed=1)
    assert renamed.classnames == ["type A", "type B"] and after.class_names() == ["type A", "type B"]
    assert [(d.key, d.label) for d in after.train] == [(d.key, d.label) for d in before.train]
    assert {d.classname for d in after.train} == {"type A", "type B"}


def test_photographs_read_as_classes(tmp_path):
    folder = photo_crops(tmp_path / "photos", per_class=6)
    data = open_dataset(str(folder))
    assert data.classnames == ["cat", "coffee cup", "rocket"]
    assert data.load_image(data.split("train")[0]).size == (64, 64)


# ------------------------------------------------------------------------------- a split file


@pytest.mark.parametrize("under", ["", "images", "jpg"])
def test_a_split_file_reads_paths_under_its_folder_or_the_folder_beside_it(tmp_path, under):
    for name in ("star", "circle"):
        draw(tmp_path / under / name / "a.png", name, 0)
    split = tmp_path / "split_zhou_MyShapes.json"
    split.write_text(json.dumps({s: [["star/a.png", 0, "star"], ["circle/a.png", 1, "circle"]]
                                 for s in ("train", "val", "test")}))
    data = open_dataset(str(split))
    assert (data.name, data.classnames, data.image_root) == ("MyShapes", ["star", "circle"], tmp_path / under)
    assert data.load_image(data.split("test")[1]).size == (48, 48)


def test_a_split_file_with_missing_images_lists_them(tmp_path):
    draw(tmp_path / "images" / "star" / "a.png", "star", 0)
    split = tmp_path / "mine.json"
    listed = [["star/a.png", 0, "star"]] + [[f"circle/{i}.png", 1, "circle"] for i in range(7)]
    split.write_text(json.dumps({"train": listed, "test": listed}))
    with pytest.raises(FolderDataError) as error:
        open_dataset(str(split))
    assert str(error.value) == (
        f"{split} lists 14 images (of 16) that do not exist under {tmp_path / 'images'}, e.g.\n"
        + "".join(f"  circle/{i}.png\n" for i in range(5))
        + "Paths are relative to the JSON's folder or to the one folder beside it that holds them (CoOp's images/, "
          "jpg/, ...): move the file or fix its paths")


def test_a_file_that_is_no_split_file_says_what_it_needs(tmp_path):
    split = tmp_path / "mine.json"
    split.write_text(json.dumps({"train": [["a.png", 0]]}))
    with pytest.raises(FolderDataError, match=r"is not a CoOp split file \(.*\): it holds \{\"train\": \[\[relpath, "
                                              r"label, classname\], \.\.\.\], \"val\": \[\.\.\.\], \"test\": \[\.\.\.\]\}"):
        open_dataset(str(split))


# ------------------------------------------------------------------------------- bad folders


def _refusal(folder: Path) -> str:
    with pytest.raises(FolderDataError) as error:
        open_dataset(str(folder))
    return str(error.value)


def test_an_empty_folder(tmp_path):
    assert _refusal(tmp_path) == (
        f"{tmp_path} holds no class folders: put each class's images in a folder named after the class "
        f"({tmp_path / 'cat'}/1.jpg, {tmp_path / 'dog'}/1.jpg, ...), or pass a CoOp split file "
        f"(--data path/to/split.json)")


def test_every_problem_of_a_folder_in_one_message(tmp_path):
    write_folder(tmp_path, {"red_car": 4, "Red car": 4, "star": 2}, shape_of=lambda name: "square")
    (tmp_path / "star" / "notes.txt").write_text("not an image")
    (tmp_path / "star" / "old").mkdir()
    draw(tmp_path / "loose.png", "star", 0)
    assert _refusal(tmp_path) == (
        f"{tmp_path} cannot be used as a folder of class folders:\n"
        f"  - images outside the class folders: loose.png; move each into the folder of its class\n"
        f"  - folders inside class folders, which hold images only: star/old/; move their images up into their "
        f"class folder, or out of {tmp_path}\n"
        f"  - files that are not images (.bmp .gif .jpeg .jpg .png .ppm .tif .tiff .webp): star/notes.txt; move "
        f"them out of the class folders\n"
        f"  - classes with fewer than 3 images, one each for train, val and test: star/ (2); add images\n"
        f"  - the folders Red car/, red_car/ all name the class 'red car' (underscores read as spaces, case "
        f"ignored): rename or merge them")


def test_one_class_only(tmp_path):
    write_folder(tmp_path, {"star": 5})
    assert _refusal(tmp_path).endswith("- it holds one class folder (star/): a classifier needs at least two; add "
                                       "a folder for each other class beside it")


def test_a_coop_dataset_folder_is_pointed_at_its_split_file(tmp_path):
    write_folder(tmp_path / "images", {"star": 3, "circle": 3})
    (tmp_path / "split_zhou_Mine.json").write_text("{}")
    assert _refusal(tmp_path) == (f"{tmp_path} holds a CoOp-format dataset (split_zhou_Mine.json), not class folders: "
                                  f"pass its split file, --data {tmp_path / 'split_zhou_Mine.json'}")
    (tmp_path / "split_zhou_Mine.json").unlink()
    assert _refusal(tmp_path) == (f"the folders in {tmp_path} (images/) hold folders, not images: if those are the "
                                  f"classes, pass --data {tmp_path / 'images'}")


def test_unreadable_images_are_listed_before_the_split_is_written(tmp_path):
    write_folder(tmp_path, {"star": 4, "circle": 4})
    for i in range(7):
        (tmp_path / "circle" / f"broken{i}.jpg").write_bytes(b"not a jpeg")
    assert _refusal(tmp_path) == (
        f"images under {tmp_path} that cannot be read: "
        + ", ".join(f"circle/broken{i}.jpg (UnidentifiedImageError)" for i in range(5))
        + " and 2 more (7 in all); replace or remove them")
    assert not (tmp_path / SPLIT_FILE).exists()


# ------------------------------------------------------------------------------- shots


def test_a_class_short_of_the_shots_is_named_with_its_count(tmp_path):
    folder = write_folder(tmp_path / "mine", {"star": 10, "circle": 31, "square": 12})
    data = open_dataset(str(folder))
    with pytest.raises(FolderDataError) as error:
        make_task(data, shots=8, seed=1)
    assert str(error.value) == (
        f"class 'star' (and 1 more class) has 5 training images, fewer than the 8 shots asked: the split of "
        f"{folder} keeps about half of each class for training, so put at least 16 images in {folder / 'star'} "
        f"and delete {folder / SPLIT_FILE} to split again, or ask for --shots 5 or fewer")
    assert split_counts(16)["train"] == 8 and split_counts(15)["train"] == 7
    assert len(make_task(data, shots=5, seed=1).train) == 15


def test_a_protocol_refuses_short_classes_before_any_run(tiny, tmp_path):
    folder = write_folder(tmp_path / "mine", {"star": 10, "circle": 10})
    spec = JobSpec("fewshot", methods=["coop"], datasets=[str(folder)], seeds=[1], shots=[1, 2, 8])
    with pytest.raises(FolderDataError, match="has 5 training images, fewer than the 8 shots asked"):
        plan_job(spec, JobData(spec, tiny))
    spec = JobSpec("fewshot", methods=["coop"], datasets=[str(folder)], seeds=[1], shots=[1, 4])
    assert [run.what for run in plan_job(spec, JobData(spec, tiny))] == [
        "coop · mine · seed 1 · 1 shots", "coop · mine · seed 1 · 4 shots"]


# ------------------------------------------------------------------------------- end to end


def test_train_eval_and_diagnose_a_folder_from_the_command_line(tmp_path, capsys):
    try:
        folder = photo_crops(tmp_path / "my_photos", per_class=10)
    except pytest.skip.Exception:
        folder = write_folder(tmp_path / "my_photos", {"star": 10, "circle": 10, "square": 10})
    out = tmp_path / "run"
    assert vlp(["train", "--method", "coop", "--model", "vlp-tiny", "--data", str(folder), "--classes", "all",
                "--shots", "4", "--epochs", "2", "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("coop on my_photos, all classes, 4 shots, seed 1: 2 epochs")
    record = json.loads((out / "run.json").read_text())
    assert (record["dataset"], record["data"]) == ("my_photos", str(folder))
    assert vlp(["eval", "--prompts", str(out), "--quiet"]) == 0  # the data found again from the record
    evaluated = capsys.readouterr().out
    assert evaluated.startswith("coop on my_photos, test split, all classes (3: ")
    assert evaluated.splitlines()[1] == f"acc {record['test']['acc']:.1f} %  (prompts: last epoch)"
    assert vlp(["diagnose", "--model", "vlp-tiny", "--data", str(folder), "--ood", "--shots", "4", "--seeds", "1",
                "--out", str(tmp_path / "diagnosis")]) == 0
    report = json.loads((tmp_path / "diagnosis" / "diagnosis.json").read_text())
    assert [(row["dataset"], row["classes"], row["test_images"]) for row in report["datasets"]] == [("my_photos", 3, 9)]
