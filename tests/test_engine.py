"""The engine and the `vlp` command: result tables by hand, report files, the --set parser, which
datasets each protocol opens, checks before training, source reuse, and a CLI that loses no work."""

import csv
import dataclasses
import json
import math
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from fakes import image, interrupt_second_epoch, write_imagenet, write_pets
from vlp_core.commands import main as vlp
from vlp_core.commands.common import parse_options
from vlp_core.data import coop
from vlp_core.data.coop import DatasetContentError
from vlp_core.experiments import results, runs
from vlp_core.experiments.jobs import JobData, job_datasets, plan_job, run_job
from vlp_core.experiments.protocols import PROTOCOLS
from vlp_core.experiments.spec import JobSpec

ROOT = Path(__file__).resolve().parents[1]
BENCHMARK = ("ImageNet", "Caltech101", "OxfordPets", "StanfordCars", "Flowers102", "Food101", "FGVCAircraft",
             "SUN397", "DTD", "EuroSAT", "UCF101")


# ---------------------------------------------------------------- result tables by hand


def _rows():
    """Two methods on two datasets, three seeds each, with easy numbers."""
    numbers = {("a", "d1"): ([60, 62, 64], [40, 41, 45]), ("a", "d2"): ([80, 80, 80], [20, 30, 40]),
               ("b", "d1"): ([50, 50, 53], [55, 57, 59]), ("b", "d2"): ([70, 71, 72], [60, 60, 60])}
    return [{"method": m, "dataset": d, "seed": s + 1, "base": base[s], "novel": novel[s]}
            for (m, d), (base, novel) in numbers.items() for s in range(3)]


def test_harmonic_mean_of_seed_means_and_the_average_row_by_hand():
    table = {(r["method"], r["dataset"]): r for r in results.base_to_novel_table(_rows())}
    a1 = table["a", "d1"]
    assert a1["base"] == 62 and a1["novel"] == pytest.approx(42)
    assert a1["base_std"] == pytest.approx(math.sqrt(8 / 2)) and a1["seeds"] == 3  # sample SD (n - 1) over seeds
    assert a1["hm"] == pytest.approx(2 * 62 * 42 / (62 + 42))  # HM of the seed means, not the mean of HMs
    assert table["a", "d2"]["novel_std"] == pytest.approx(math.sqrt(200 / 2))
    seed_hms = [2 * b * n / (b + n) for b, n in ((60, 40), (62, 41), (64, 45))]
    assert a1["hm_std"] == pytest.approx(statistics.stdev(seed_hms))  # the spread of each seed's HM
    average = table["b", "average"]  # datasets averaged first, then the HM of the averages
    base, novel = (51 + 71) / 2, (57 + 60) / 2
    assert (average["base"], average["novel"]) == (pytest.approx(base), pytest.approx(novel))
    assert average["hm"] == pytest.approx(2 * base * novel / (base + novel))
    seed_base = [(50 + 70) / 2, (50 + 71) / 2, (53 + 72) / 2]
    seed_novel = [(55 + 60) / 2, (57 + 60) / 2, (59 + 60) / 2]
    assert average["base_std"] == pytest.approx(statistics.stdev(seed_base))
    assert average["hm_std"] == pytest.approx(statistics.stdev([2 * b * n / (b + n) for b, n in zip(seed_base, seed_novel)]))
    assert results.harmonic_mean(0.0, 0.0) == 0.0


def test_aggregate_means_and_spread_over_seeds():
    rows = [{"method": "m", "shots": k, "acc": acc} for k, acc in ((1, 10.0), (1, 20.0), (2, 30.0))]
    table = results.aggregate(rows, ["method", "shots"], ["acc", "missing"])
    assert table == [{"method": "m", "shots": 1, "acc": 15.0, "acc_std": pytest.approx(math.sqrt(50)), "seeds": 2},
                     {"method": "m", "shots": 2, "acc": 30.0, "acc_std": 0.0, "seeds": 1}]  # sample SD (n - 1)


def _recipe(method):
    return {"method": method, "protocol": "dg", "dataset": "ImageNet", "shots": 16, "rule": "paper",
            "train": {"epochs": 20, "batch_size": 4, "lr": 0.0025, "precision": "fp16"},
            "options": {"text_depth": 3, "gpa_mean": 6.0, "seed": 1}}


def test_report_files_of_a_transfer_run(tmp_path):
    rows = [{"source": "ImageNet", "dataset": d, "method": "disa", "seed": s, "shots": 16, "acc": acc + s,
             "recipe": _recipe("disa")} for d, acc in (("ImageNet", 70.0), ("ImageNet-V2", 60.0)) for s in (1, 2)]
    config = {"spec": {"shots": [16], "seeds": [1, 2]}, "model": "ViT-B-16-quickgelu", "pretrained": "openai",
              "recipes": [_recipe("disa")]}
    PROTOCOLS["dg"].write_report(rows, tmp_path, config)
    text = (tmp_path / "results.md").read_text()
    assert "| disa | ImageNet-V2 | 61.5 ± 0.7 |" in text  # sample SD of 61 and 62 and "ViT-B-16-quickgelu" in text
    assert "| disa | ImageNet | 16 | 20 | 4 | 0.0025 | fp16 | gpa_mean=6.0, text_depth=3 |" in text
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["rows"] == rows and saved["config"] == config
    assert json.loads((tmp_path / "config.json").read_text()) == config
    with open(tmp_path / "results.csv", newline="") as handle:
        csv_rows = list(csv.DictReader(handle))
    assert list(csv_rows[0]) == ["acc", "dataset", "method", "recipe", "seed", "shots", "source"]
    assert float(csv_rows[1]["acc"]) == 72.0 and json.loads(csv_rows[1]["recipe"]) == _recipe("disa")
    assert (tmp_path / "accuracy_by_dataset.png").stat().st_size > 1000


def test_set_parser():
    assert parse_options(["disa.mask_ratio=0.2", "disa.dir_loss=mse", "gallop.topk=[5,5,5,5]",
                          "coop.ctx_init=null", "gallop.dropout_sampling=without_replacement"]) == {
        "disa": {"mask_ratio": 0.2, "dir_loss": "mse"},
        "gallop": {"topk": [5, 5, 5, 5], "dropout_sampling": "without_replacement"},
        "coop": {"ctx_init": None}}
    for bad in ("mask_ratio=0.2", "disa.mask_ratio", "disa=1"):
        with pytest.raises(ValueError, match="METHOD.OPTION=VALUE"):
            parse_options([bad])


@pytest.mark.parametrize("bad, message", [
    ("gallop.topk=5", "gallop.topk takes a list of integers"),
    ("disa.mask_ratio=abc", "disa.mask_ratio takes a number, got 'abc'"),
])
def test_bad_set_values_are_one_line_before_anything_loads(capsys, tmp_path, bad, message):
    assert vlp(["protocol", "base2novel", "--model", "nonexistent-model", "--set", bad, "--out", str(tmp_path)]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith(f"vlp: error: {message}") and len(error.splitlines()) == 1


# ---------------------------------------------------------------- which datasets each protocol opens


@pytest.mark.parametrize("preset, protocol, trained, tested", [
    ("synth", "base2novel", ["shapes", "colour_shapes", "patterns", "scenes"], []),
    ("synth", "fewshot", ["shapes"], []),
    ("synth", "dg", ["shapes"], ["shapes@sketch", "shapes@noisy", "shapes@pixelated", "shapes@painted"]),
    ("synth", "xd", ["shapes"], ["colour_shapes", "patterns", "scenes"]),
    ("synth", "ood", ["shapes"], ["ood"]),
    ("vitb16", "base2novel", list(BENCHMARK), []),
    ("vitb16", "fewshot", list(BENCHMARK), []),
    ("vitb16", "dg", ["ImageNet"], ["ImageNet-V2", "ImageNet-Sketch", "ImageNet-A", "ImageNet-R"]),
    ("vitb16", "xd", ["ImageNet"], list(BENCHMARK[1:])),
    ("vitb16", "ood", ["ImageNet"], ["iNaturalist", "SUN", "Places", "Textures"]),
])
def test_dataset_resolution_for_every_protocol(preset, protocol, trained, tested):
    assert job_datasets(JobSpec(protocol, preset=preset)) == (trained, tested)
    override = JobSpec(protocol, preset=preset, datasets=["X"])
    assert job_datasets(override) == ((["X"], []) if protocol in ("base2novel", "fewshot") else (trained, ["X"]))


@pytest.fixture
def real_root(tmp_path, monkeypatch):
    """A data root with a 4-class ImageNet, its shifts (4 or 2 classes) and the four OOD folders, the
    table's class counts set to the fakes' sizes."""
    root = write_imagenet(tmp_path / "data")
    for wnid, name in (("n01000000", "q"), ("n03000000", "r")):
        image(root / "imagenet-adversarial" / "imagenet-a" / wnid / f"{name}.jpg")
        image(root / "imagenet-sketch" / "images" / wnid / f"{name}.jpg")
    for folder in ("1", "2"):
        image(root / "imagenetv2" / "imagenetv2-matched-frequency-format-val" / folder / "c.jpeg")
    for folder in ("iNaturalist", "SUN", "Places", "dtd/images/banded"):
        image(root / folder / "x.jpg")
    for spec in coop.DATASETS:
        classes = {"ImageNet": 4, "ImageNet-V2": 4, "ImageNet-Sketch": 4, "ImageNet-A": 2, "ImageNet-R": 2}
        if spec.name in classes:
            for key in {coop._normalised(spec.name), coop._normalised(spec.folder)}:
                monkeypatch.setitem(coop._BY_NAME, key, dataclasses.replace(spec, num_classes=classes[spec.name]))
    return root


def test_real_paths_of_the_transfer_and_ood_sets(tiny, real_root):
    spec = JobSpec("ood", preset="vitb16", data_root=str(real_root))
    opened = {name: spec.open(name, tiny, ("test",), ood=True) for name in job_datasets(spec)[1]}
    assert {n: d.image_root for n, d in opened.items()} == {
        "iNaturalist": real_root / "iNaturalist", "SUN": real_root / "SUN", "Places": real_root / "Places",
        "Textures": real_root / "dtd" / "images"}
    assert len(opened["Textures"].split("test")) == 1
    spec = JobSpec("dg", preset="vitb16", data_root=str(real_root))
    shifts = [spec.open(name, tiny, ("test",)) for name in job_datasets(spec)[1]]
    assert [len(d.classnames) for d in shifts] == [4, 4, 2, 2]


@pytest.fixture
def count_trainings(monkeypatch):
    calls = []
    real = runs.train

    def counting(method, *args, **kwargs):
        calls.append(method.name)
        return real(method, *args, **kwargs)

    monkeypatch.setattr(runs, "train", counting)
    return calls


def test_dg_then_ood_train_the_imagenet_source_once(tiny, real_root, tmp_path, count_trainings):
    spec = JobSpec("dg", methods=["zeroshot", "coop"], preset="vitb16", seeds=[1], shots=[1],
                   data_root=str(real_root), epochs=1)
    rows = run_job(spec, tmp_path / "dg", progress=False, clip=tiny)
    assert count_trainings == ["coop"]
    assert [r["dataset"] for r in rows if r["method"] == "coop"] == [
        "ImageNet", "ImageNet-V2", "ImageNet-Sketch", "ImageNet-A", "ImageNet-R"]  # reported: no KeyError
    coop_recipe = next(r["recipe"] for r in rows if r["method"] == "coop")
    assert coop_recipe["train"]["epochs"] == 1 and coop_recipe["train"]["batch_size"] == 32
    assert (tmp_path / "dg" / "runs" / "source" / "coop" / "ImageNet" / "shots1" / "seed1" / "checkpoint.json").is_file()
    ood = dataclasses.replace(spec, protocol="ood", source_prompts=str(tmp_path / "dg"))
    rows = run_job(ood, tmp_path / "ood", progress=False, clip=tiny)
    assert count_trainings == ["coop"]  # the source was loaded, not trained again
    assert {r["ood"] for r in rows} == {"iNaturalist", "SUN", "Places", "Textures"}
    assert next(r for r in rows if r["method"] == "coop")["recipe"]["loaded_from"].endswith("seed1")
    assert "FPR95 rule: threshold" in (tmp_path / "ood" / "results.md").read_text()


def test_broken_data_is_refused_before_any_training(tiny, real_root, tmp_path, count_trainings):
    (real_root / "Places" / "x.jpg").unlink()  # an empty OOD folder
    spec = JobSpec("ood", methods=["coop"], preset="vitb16", seeds=[1], shots=[1], data_root=str(real_root))
    with pytest.raises(DatasetContentError, match=f"no images in the test split under {real_root / 'Places'}"):
        run_job(spec, tmp_path / "out", progress=False, clip=tiny)
    assert count_trainings == []


def test_plan_names_every_run(tiny):
    spec = JobSpec("fewshot", methods=["coop", "disa"], seeds=[1, 2], shots=[1, 4], datasets=["shapes"])
    plan = plan_job(spec, JobData(spec, tiny))
    assert [run.what for run in plan] == [f"{m} · shapes · seed {s} · {k} shots"
                                          for m in ("coop", "disa") for s in (1, 2) for k in (1, 4)]


# ---------------------------------------------------------------- the command loses and hides no work


def _train(out, *extra):
    return vlp(["train", "--method", "coop", "--model", "vlp-tiny", "--shots", "1", "--epochs", "2",
                "--out", str(out), *extra])


def test_train_refuses_another_run_in_out_and_overwrite_starts_afresh(tmp_path, capsys):
    assert _train(tmp_path, "--quiet") == 0
    assert capsys.readouterr().err == ""  # --quiet: no bars, no log lines
    assert _train(tmp_path) == 0  # the same run: resumed, found finished
    assert "already finished: " in capsys.readouterr().err
    assert _train(tmp_path, "--data", "colour_shapes", "--quiet") == 2
    error = capsys.readouterr().err
    assert 'record.dataset: "shapes" -> "colour_shapes"' in error and "--overwrite" in error
    assert "Traceback" not in error
    assert _train(tmp_path, "--data", "colour_shapes", "--overwrite", "--quiet") == 0
    assert json.loads((tmp_path / "run.json").read_text())["dataset"] == "colour_shapes"
    assert vlp(["eval", "--prompts", str(tmp_path), "--classes", "novel"]) == 0
    printed = capsys.readouterr().out
    assert "coop on colour_shapes, test split, novel classes (16: " in printed  # data from the checkpoint


def test_ctrl_c_is_one_line_and_the_run_resumes_where_it_stopped(tmp_path, capsys, monkeypatch):
    interrupt_second_epoch(monkeypatch)
    assert _train(tmp_path) == 130
    error = capsys.readouterr().err.strip().splitlines()
    assert error[-1] == "vlp: interrupted at epoch 2 of 2; the finished epochs are saved: run the same command to resume"
    monkeypatch.undo()  # training runs whole again
    assert _train(tmp_path) == 0
    assert f"resuming: {tmp_path} holds epochs 1-1 of 2" in capsys.readouterr().err


def test_ctrl_c_while_starting_says_what_was_stopped(tmp_path, capsys, monkeypatch):
    def stop(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(JobSpec, "clip", stop)
    assert _train(tmp_path) == 130
    assert capsys.readouterr().err.strip() == (
        "vlp: interrupted outside a training epoch (starting, scoring or writing); finished epochs and runs are "
        "saved: run the same command to resume")
    assert vlp(["eval", "--method", "zeroshot", "--data", "shapes"]) == 130
    assert capsys.readouterr().err.strip() == "vlp: interrupted"


def test_out_must_be_a_folder_of_this_command_before_anything_loads(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(JobSpec, "clip", lambda *args: pytest.fail("loaded a model before refusing --out"))
    file = tmp_path / "notes.txt"
    file.write_text("mine")
    assert _train(file) == 2
    assert capsys.readouterr().err.strip() == f"vlp: error: --out {file} is a file: name a folder (it is made if missing)"
    for command, made, owner in (("train", "diagnosis.json", "diagnose"), ("train", "results.json", "protocol"),
                                 ("train", "rows.json", "protocol"), ("protocol", "run.json", "train"),
                                 ("protocol", "checkpoint.json", "train"), ("diagnose", "training.json", "pretrain-synth")):
        out = tmp_path / f"{command}-{made}"
        out.mkdir()
        (out / made).write_text("{}")
        line = {"train": ["train", "--method", "coop", "--out", str(out)],
                "protocol": ["protocol", "fewshot", "--out", str(out)], "diagnose": ["diagnose", "--out", str(out)]}
        assert vlp(line[command]) == 2
        assert capsys.readouterr().err.strip() == (f"vlp: error: --out {out} holds the output of `vlp {owner}` ({made}): "
                                                   f"give `vlp {command}` a folder of its own")


def test_options_of_a_method_the_job_does_not_run_are_refused(tmp_path, capsys):
    assert _train(tmp_path, "--set", "disa.mask_ratio=0.2") == 2
    assert capsys.readouterr().err.strip() == (
        "vlp: error: --set disa.mask_ratio: this job does not run disa (it runs coop); drop the option, or run disa too")
    assert vlp(["protocol", "fewshot", "--methods", "gallop", "coop", "--set", "disa.mask_ratio=0.2",
                "disa.dir_loss=mse", "--out", str(tmp_path / "p")]) == 2
    assert capsys.readouterr().err.strip() == (
        "vlp: error: --set disa.mask_ratio disa.dir_loss: this job does not run disa (it runs gallop, coop); drop the "
        "option, or run disa too")


def test_another_run_in_out_is_refused_with_the_telling_differences_first(tmp_path, capsys):
    assert _train(tmp_path, "--quiet") == 0
    assert vlp(["train", "--method", "disa", "--model", "vlp-tiny", "--shots", "2", "--epochs", "3", "--out",
                str(tmp_path), "--quiet"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"vlp: error: {tmp_path} holds another run (saved -> asked for):",
        '  method: "coop" -> "disa"',  # the method first; its options' lines (another method's) left out
        "  record.shots: 1 -> 2",
        "  config.epochs: 2 -> 3",
        "  config.lr: 0.001 -> 0.01",
        "Use the same settings to resume it, another output folder, or --overwrite to start afresh."]


def test_pretrain_synth_needs_an_out_and_keeps_a_finished_model(tmp_path, capsys):
    with pytest.raises(SystemExit):
        vlp(["pretrain-synth"])
    assert "the following arguments are required: --out" in capsys.readouterr().err
    (tmp_path / "open_clip_model.safetensors").write_bytes(b"weights")
    assert vlp(["pretrain-synth", "--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"vlp: error: --out {tmp_path} holds a finished model ({tmp_path / 'open_clip_model.safetensors'}): train into "
        f"another folder, or pass --overwrite to train a new one from scratch in its place")
    assert vlp(["pretrain-synth", "--out", str(ROOT / "assets" / "synth-clip")]) == 2
    assert "holds the bundled model, on which assets/prompts and docs/results were trained" in capsys.readouterr().err


def test_a_broken_image_mid_run_is_one_line(tmp_path, capsys, monkeypatch):
    root = write_pets(tmp_path / "data")
    spec = coop._BY_NAME["oxfordpets"]
    monkeypatch.setitem(coop._BY_NAME, "oxfordpets", dataclasses.replace(spec, num_classes=3))
    broken = root / "oxford_pets" / "images" / "yorkshire_terrier" / "train_0.jpg"
    broken.write_bytes(b"not a jpeg")  # exists, so the check passes; reading it fails during training
    code = vlp(["train", "--method", "coop", "--model", "vlp-tiny", "--preset", "vitb16", "--data-root", str(root),
                "--data", "OxfordPets", "--classes", "all", "--shots", "8", "--epochs", "1", "--workers", "1",
                "--out", str(tmp_path / "out"), "--quiet"])
    error = capsys.readouterr().err.strip()
    assert code == 2 and len(error.splitlines()) == 1
    assert error.startswith(f"vlp: error: cannot read image {broken}")


def test_help_imports_neither_torch_nor_open_clip():
    code = ("import sys; from vlp_core.commands import build_parser; build_parser().format_help(); "
            "print(sorted(m for m in ('torch', 'open_clip') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True).stdout
    assert out.strip() == "[]"
