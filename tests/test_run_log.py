"""Runs you can follow and compare: metrics.jsonl and curves.png written as training goes (a resumed run
appends and never repeats an epoch), TensorBoard events when tensorboard is installed, which checkpoint
every run is scored with, kept epochs for `vlp eval --epoch N`, and `vlp runs`."""

import json
import sys
import types

import pytest
import torch

from fakes import interrupt_second_epoch, write_folder
from vlp_core.commands import main as vlp
from vlp_core.data.loaders import make_loader, train_transform
from vlp_core.data.synthworld import get_suite
from vlp_core.engine import trainer
from vlp_core.engine.run_log import read_metrics, record_evaluation
from vlp_core.engine.trainer import TrainConfig, learning_rate, load_trained, train
from vlp_core.experiments.jobs import run_job
from vlp_core.experiments.spec import JobSpec
from vlp_core.methods.coop import CoOp, CoOpConfig

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def coop(tiny):
    """A CoOp run on 2 training images of each of shapes' classes, batch 8 -> (method, loader, config)."""
    suite = get_suite("shapes", image_size=tiny.image_size, n_train=2)
    mean, std = tiny.image_mean_std

    def build(epochs=3):
        method = CoOp(tiny, CoOpConfig(n_ctx=4, ctx_init="a photo of a"))
        method.set_classes(suite.classnames)
        loader = make_loader(suite, suite.split("train"), train_transform(tiny.image_size, mean, std), 8, shuffle=True)
        return method, loader, TrainConfig(epochs=epochs, batch_size=8, lr=0.05, progress=False)

    return build


def _kinds(lines, kind):
    return [line for line in lines if line["kind"] == kind]


def test_metrics_follow_each_step_and_a_resumed_run_repeats_no_epoch(coop, tmp_path, monkeypatch):
    method, loader, config = coop()
    steps, images = len(loader), len(loader.dataset)
    calls = {"n": 0}
    original = CoOp.loss

    def stop_in_the_second_epoch(self, *args):
        calls["n"] += 1
        if calls["n"] == steps + 2:
            raise KeyboardInterrupt
        return original(self, *args)

    monkeypatch.setattr(CoOp, "loss", stop_in_the_second_epoch)
    with pytest.raises(trainer.TrainingInterrupted):
        train(method, loader, config, out_dir=tmp_path, label="coop · shapes")
    lines = read_metrics(tmp_path)
    assert [(line["epoch"], line["step"]) for line in _kinds(lines, "step")] == \
        [(1, s) for s in range(1, steps + 1)] + [(2, 1)]  # the interrupted epoch's first step, logged
    monkeypatch.setattr(CoOp, "loss", original)
    method, loader, config = coop()
    result = train(method, loader, config, out_dir=tmp_path, resume=True, label="coop · shapes")
    lines = read_metrics(tmp_path)
    step_lines, epoch_lines = _kinds(lines, "step"), _kinds(lines, "epoch")
    assert [(line["epoch"], line["step"]) for line in step_lines] == [(e, s) for e in (1, 2, 3) for s in
                                                                      range(1, steps + 1)]
    assert [line["epoch"] for line in epoch_lines] == [1, 2, 3]
    assert [line["lr"] for line in epoch_lines] == pytest.approx([learning_rate(config, e) for e in range(3)])
    for line, entry in zip(epoch_lines, result.history):
        assert line == {"kind": "epoch", **entry} and line["processes"] == 1 and line["images_per_s"] > 0
        mine = [s for s in step_lines if s["epoch"] == line["epoch"]]
        assert line["ce"] == pytest.approx(sum(s["ce"] for s in mine) / steps)
    assert all(s["seconds"] > 0 and s["images_per_s"] > 0 and s["steps"] == steps for s in step_lines)
    per_step = [min(8, images - 8 * (s["step"] - 1)) for s in step_lines[:steps]]
    assert [round(s["images_per_s"] * s["seconds"]) for s in step_lines[:steps]] == per_step
    assert (tmp_path / "curves.png").read_bytes().startswith(PNG)
    record_evaluation(tmp_path, "shapes", {"acc": 50.0}, 3)
    record_evaluation(tmp_path, "shapes", {"acc": 55.0}, 3)  # a second evaluation replaces the first
    assert _kinds(read_metrics(tmp_path), "eval") == [{"kind": "eval", "what": "shapes", "epoch": 3, "acc": 55.0}]


class FakeWriter:
    """torch.utils.tensorboard.SummaryWriter as far as the run log uses it, recording what it is given."""

    made: list["FakeWriter"] = []

    def __init__(self, log_dir, purge_step=None):
        self.log_dir, self.purge_step, self.scalars, self.closed = log_dir, purge_step, [], False
        FakeWriter.made.append(self)

    def add_scalar(self, tag, value, step):
        self.scalars.append((tag, step))

    def flush(self):
        pass

    def close(self):
        self.closed = True


def test_tensorboard_scalars_follow_dassl_and_a_resume_purges_the_lost_steps(coop, tmp_path, monkeypatch):
    module = types.ModuleType("torch.utils.tensorboard")
    module.SummaryWriter = FakeWriter
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", module)
    FakeWriter.made.clear()
    method, loader, config = coop(epochs=1)
    train(method, loader, config, out_dir=tmp_path)
    steps = len(loader)
    (writer,) = FakeWriter.made
    assert (writer.log_dir, writer.purge_step, writer.closed) == (str(tmp_path / "tensorboard"), 1, True)
    assert [step for tag, step in writer.scalars if tag == "train/ce"] == list(range(1, steps + 1))
    assert {tag for tag, _ in writer.scalars} == {"train/ce", "train/total", "train/lr", "train/images_per_s"}
    method, loader, config = coop(epochs=2)
    monkeypatch.setattr(trainer, "_load_checkpoint", lambda *args: trainer.TrainResult(epochs_run=1))
    train(method, loader, config, out_dir=tmp_path, resume=True)
    assert FakeWriter.made[-1].purge_step == steps + 1  # the steps of epoch 2 written before are discarded
    record_evaluation(tmp_path, "shapes", {"acc": 40.0}, 2)
    assert FakeWriter.made[-1].scalars == [("test/shapes/acc", 2)]


@pytest.mark.skipif("tensorboard" in sys.modules or __import__("importlib").util.find_spec("tensorboard"),
                    reason="tensorboard is installed: its events are written (tested with a fake writer above)")
def test_without_tensorboard_no_events_and_no_error(coop, tmp_path):
    method, loader, config = coop(epochs=1)
    train(method, loader, config, out_dir=tmp_path)
    assert not (tmp_path / "tensorboard").exists() and (tmp_path / "metrics.jsonl").is_file()


def test_kept_epochs_are_scored_by_vlp_eval_epoch(tmp_path, capsys):
    out = tmp_path / "disa"
    assert vlp(["train", "--method", "disa", "--model", "vlp-tiny", "--shots", "1", "--epochs", "2", "--keep-epochs",
                "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "(test split; scored with the GPA aggregate of epochs 1-2)" in printed
    record = json.loads((out / "run.json").read_text())
    assert (record["checkpoint"], record["processes"]) == ("GPA aggregate of epochs 1-2", 1)
    assert sorted(p.name for p in (out / "epochs").iterdir()) == ["epoch_1.safetensors", "epoch_2.safetensors"]
    assert _kinds(read_metrics(out), "eval") == [{"kind": "eval", "what": "shapes", "epoch": 2, **record["test"]}]
    from vlp_core.backbone import load_clip

    clip = load_clip("vlp-tiny")
    aggregate, second = load_trained(out, clip), load_trained(out, clip, epoch=2)
    assert not torch.equal(aggregate.text_deep, second.text_deep)  # GPA's aggregate is not epoch 2's prompts
    assert vlp(["eval", "--prompts", str(out), "--classes", "base", "--epoch", "1", "--quiet"]) == 0
    assert capsys.readouterr().out.splitlines()[1].endswith("%  (prompts: epoch 1)")
    assert vlp(["eval", "--prompts", str(out), "--classes", "base", "--epoch", "3", "--quiet"]) == 2
    assert capsys.readouterr().err.strip() == (
        f"vlp: error: {out} has no tensors of epoch 3: it kept epochs 1, 2. Without --epoch, eval scores what the run "
        f"is scored with: GPA aggregate of epochs 1-2")
    plain = tmp_path / "coop"
    assert vlp(["train", "--method", "coop", "--model", "vlp-tiny", "--shots", "1", "--epochs", "1", "--out",
                str(plain), "--quiet"]) == 0
    assert vlp(["eval", "--prompts", str(plain), "--epoch", "1", "--quiet"]) == 2
    assert capsys.readouterr().err.strip().endswith(
        "has no tensors of epoch 1: it kept no epoch's tensors (train with --keep-epochs to keep them). Without "
        "--epoch, eval scores what the run is scored with: last epoch")


def test_vlp_runs_lists_train_and_protocol_runs_and_committed_rows(tiny, tmp_path, capsys, monkeypatch):
    folder = write_folder(tmp_path / "data" / "mine", {"star": 8, "circle": 8})
    assert vlp(["train", "--method", "coop", "--model", "vlp-tiny", "--data", str(folder), "--classes", "all",
                "--shots", "2", "--epochs", "2", "--out", str(tmp_path / "runs" / "coop"), "--quiet"]) == 0
    spec = JobSpec("fewshot", methods=["zeroshot", "disa"], datasets=[str(folder)], seeds=[1], shots=[2], epochs=2)
    rows = run_job(spec, tmp_path / "results" / "fs", progress=False, clip=tiny)
    assert [row.get("checkpoint") for row in rows] == [None, "GPA aggregate of epochs 1-2"]
    interrupt_second_epoch(monkeypatch)
    assert vlp(["train", "--method", "ivlp", "--model", "vlp-tiny", "--shots", "1", "--epochs", "3", "--out",
                str(tmp_path / "runs" / "ivlp"), "--quiet"]) == 130
    trained_only = tmp_path / "runs" / "trained-only"  # trained, never scored (a dg source)
    trained_only.mkdir()
    for name in ("checkpoint.json", "checkpoint.safetensors"):
        (trained_only / name).write_bytes((tmp_path / "runs" / "coop" / name).read_bytes())
    committed = tmp_path / "docs" / "b2n"
    committed.mkdir(parents=True)
    recipe = {"method": "promptsrc", "protocol": "base2novel", "dataset": "shapes", "shots": 16, "rule": "synth",
              "train": {"epochs": 15, "batch_size": 16, "lr": 0.01}, "options": {"gpa_mean": 11.25}}
    (committed / "results.json").write_text(json.dumps({"config": {"run_seconds": {"promptsrc · shapes · seed 2": 61.0}},
                                                        "rows": [{"dataset": "shapes", "method": "promptsrc", "seed": 2,
                                                                  "shots": 16, "base": 80.0, "novel": 60.0,
                                                                  "recipe": recipe}]}))
    capsys.readouterr()
    assert vlp(["runs", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    table = [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[2:] if line.startswith("| ")]
    cells = {row[0]: row for row in table}
    trained = json.loads((tmp_path / "runs" / "coop" / "run.json").read_text())
    assert cells["runs/coop"][1:8] == ["coop", "mine", "2", "1", "2 ep · lr 0.001 · batch 16", "2/2",
                                       f"acc {trained['test']['acc']:.1f}"]
    assert cells["runs/coop"][9] == "last epoch"
    assert cells["runs/ivlp"][6] == "1/3 (unfinished)" and cells["runs/ivlp"][7] == "-"
    assert cells["runs/ivlp"][8].endswith(" so far") and cells["runs/ivlp"][9] == "last epoch"
    assert cells["results/fs/runs/fewshot/disa/mine/shots2/seed1"][1:7] == ["disa", "mine", "2", "1",
                                                                            "2 ep · lr 0.01 · batch 16", "2/2"]
    assert cells["results/fs/runs/fewshot/disa/mine/shots2/seed1"][9] == "GPA aggregate of epochs 1-2"
    assert cells["docs/b2n (results.json)"] == ["docs/b2n (results.json)", "promptsrc", "shapes", "16", "2",
                                                "15 ep · lr 0.01 · batch 16", "15/15", "base 80.0 novel 60.0 HM 68.6",
                                                "1 min 1 s", "GPA aggregate of epochs 1-15"]
    assert lines[-1] == (f"{committed / 'results.json'}: its run folders are not here, so its runs are read from its "
                         f"rows (no epochs in progress, metrics or curves)")
    assert list(cells) == ["results/fs/runs/fewshot/disa/mine/shots2/seed1",
                           "results/fs/runs/fewshot/zeroshot/mine/shots2/seed1", "runs/coop", "runs/ivlp",
                           "runs/trained-only", "docs/b2n (results.json)"]
    assert cells["runs/trained-only"][6:8] == ["2/2", "-"] and not cells["runs/trained-only"][8].endswith("so far")
    zero_shot = cells["results/fs/runs/fewshot/zeroshot/mine/shots2/seed1"]
    assert (zero_shot[5], zero_shot[6], zero_shot[9]) == ("-", "-", "-")  # no recipe, epochs or checkpoint
