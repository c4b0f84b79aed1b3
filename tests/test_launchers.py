"""Many runs at once: a protocol's runs as independent jobs (local processes, or submitit's local
cluster when submitit is installed) give the sequential table; finished runs are collected and not
run again, failed ones are listed, reported as missing and rerun alone."""

import dataclasses
import json
import multiprocessing
import os
import shutil
from pathlib import Path

import pytest
import torch

from vlp_core.commands import main as vlp
from vlp_core.engine import trainer
from vlp_core.experiments import jobs, launchers
from vlp_core.experiments.jobs import ERROR, ROWS, RunsFailed, run_job
from vlp_core.experiments.spec import JobSpec
from vlp_core.experiments.launchers import LocalLauncher, MissingExtraError, require

ROOT = Path(__file__).resolve().parents[1]
SPEC = JobSpec("base2novel", methods=["coop", "gallop"], datasets=["shapes"], seeds=[1, 2], shots=[2], epochs=2,
               model="vlp-tiny")


@pytest.fixture
def one_thread():
    """Sequential runs and the launchers' workers both on one CPU thread, so their float results are
    bit for bit the same."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def sequential(tmp_path_factory):
    """The small protocol run one run after the other in this process -> (rows, results.md, folder)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("sequential")
    rows = run_job(SPEC, out, progress=False)
    torch.set_num_threads(threads)
    return rows, (out / "results.md").read_text(), out


def _table(results_md: str) -> str:
    """results.md without the recipes section (whose rows are the same by construction)."""
    return results_md.split("## Recipes that ran")[0]


@pytest.fixture
def runs_and_epochs(monkeypatch):
    """[runs started in this process, epochs trained in this process]."""
    counts = [0, 0]
    real_execute, real_epoch = jobs.execute, trainer._train_epoch

    def execute(*args, **kwargs):
        counts[0] += 1
        return real_execute(*args, **kwargs)

    def epoch(*args, **kwargs):
        counts[1] += 1
        return real_epoch(*args, **kwargs)

    monkeypatch.setattr(jobs, "execute", execute)
    monkeypatch.setattr(trainer, "_train_epoch", epoch)
    return counts


def test_finished_runs_are_collected_not_run_again(sequential, runs_and_epochs, one_thread):
    rows, text, out = sequential
    assert len(rows) == 4 and {(r["method"], r["seed"]) for r in rows} == {(m, s) for m in ("coop", "gallop")
                                                                           for s in (1, 2)}
    saved = json.loads((out / "runs" / "base2novel" / "gallop" / "shapes" / "seed2" / ROWS).read_text())
    assert saved["rows"] == [r for r in rows if (r["method"], r["seed"]) == ("gallop", 2)]
    assert run_job(SPEC, out, progress=False) == rows
    assert runs_and_epochs == [0, 0]
    changed = dataclasses.replace(SPEC, fpr95_rule="closest")  # another setting: its rows are not these
    assert run_job(changed, out, progress=False) == rows  # the same numbers: scored again from the checkpoints
    assert runs_and_epochs == [4, 0]
    assert json.loads((out / "runs" / "base2novel" / "gallop" / "shapes" / "seed2" / ROWS).read_text())[
        "run"]["settings"]["fpr95_rule"] == "closest"
    assert run_job(SPEC, out, progress=False, overwrite=True) == rows  # afresh: trained again, same numbers
    assert runs_and_epochs == [8, 8]


def test_two_local_processes_give_the_sequential_table(sequential, tmp_path, one_thread):
    rows, text, _ = sequential
    parallel = run_job(SPEC, tmp_path, launcher=LocalLauncher(2))
    assert parallel == rows
    assert _table((tmp_path / "results.md").read_text()) == _table(text)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["launcher"] == {"launcher": "local", "jobs": 2, "gpus": []} and config["missing_runs"] == []


def test_a_failed_run_is_listed_reported_missing_and_rerun_alone(sequential, tmp_path, one_thread):
    rows, text, reference = sequential
    foreign = tmp_path / "runs" / "base2novel" / "coop" / "shapes" / "seed2"
    shutil.copytree(reference / "runs" / "base2novel" / "coop" / "shapes" / "seed2", foreign)
    meta = json.loads((foreign / "checkpoint.json").read_text())
    meta["config"]["lr"] *= 2  # the folder now holds another run: this one must fail, the others not
    (foreign / "checkpoint.json").write_text(json.dumps(meta))
    (foreign / ROWS).unlink()
    with pytest.raises(RunsFailed, match=r"1 of 4 runs failed .*\n  coop · shapes · seed 2: .* holds another run"):
        run_job(SPEC, tmp_path, launcher=LocalLauncher(2))
    assert "holds another run" in (foreign / ERROR).read_text()
    report = (tmp_path / "results.md").read_text()
    assert "**Missing runs** (failed; the same command reruns them): coop · shapes · seed 2" in report
    assert len(json.loads((tmp_path / "results.json").read_text())["rows"]) == 3
    others = {p: p.stat().st_mtime_ns for p in (tmp_path / "runs").rglob(ROWS)}
    assert len(others) == 3
    (foreign / "checkpoint.json").unlink()
    assert run_job(SPEC, tmp_path, launcher=LocalLauncher(2)) == rows
    assert {p: p.stat().st_mtime_ns for p in others} == others  # only the failed run ran again
    assert not (foreign / ERROR).exists()
    assert _table((tmp_path / "results.md").read_text()) == _table(text)


def test_a_worker_takes_its_gpu_and_its_threads(monkeypatch):
    counter = multiprocessing.get_context("spawn").Value("i", 0)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    threads = torch.get_num_threads()
    try:
        seen = []
        for _ in range(3):
            launchers._start_worker(counter, ["2", "5"], 1)
            seen.append(os.environ["CUDA_VISIBLE_DEVICES"])
        assert seen == ["2", "5", "2"] and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)


def test_a_launcher_refuses_a_clip_it_cannot_send_and_a_fixed_gpu(tiny, tmp_path):
    with pytest.raises(ValueError, match="pass no clip with a launcher"):
        run_job(SPEC, tmp_path, clip=tiny, launcher=LocalLauncher(2))
    with pytest.raises(ValueError, match="each job of a launcher takes its own GPU: use --device cuda"):
        run_job(dataclasses.replace(SPEC, device="cuda:1"), tmp_path, launcher=LocalLauncher(2))
    with pytest.raises(ValueError, match="--jobs must be at least 1"):
        LocalLauncher(0)


def test_slurm_parameters_need_the_submitit_launcher(tmp_path, capsys):
    assert vlp(["protocol", "base2novel", "--slurm", "slurm_partition=gpu", "--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == "vlp: error: --slurm sets submitit's parameters: add --launcher submitit"


def test_a_missing_extra_names_the_install():
    with pytest.raises(MissingExtraError, match=r"--launcher x needs the no_such_module package: pip install "
                                                r"'vlp-lab\[cluster\]' \(or pip install no_such_module\)"):
        require("no_such_module", "--launcher x")


def test_submitit_local_cluster_gives_the_sequential_rows(sequential, tmp_path, monkeypatch, one_thread):
    pytest.importorskip("submitit", reason="submitit is an optional extra (pip install 'vlp-lab[cluster]')")
    monkeypatch.setenv("PYTHONPATH", str(ROOT))  # submitit's job processes import vlp_core from here
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setattr(launchers.SubmititLauncher, "POLL_S", 1)
    rows, _, _ = sequential
    spec = dataclasses.replace(SPEC, methods=["gallop"])
    launcher = launchers.SubmititLauncher(tmp_path / "submitit", 2, {"cluster": "local", "timeout_min": 10})
    assert run_job(spec, tmp_path, launcher=launcher) == [r for r in rows if r["method"] == "gallop"]
    assert json.loads((tmp_path / "config.json").read_text())["launcher"]["cluster"] == "local"
