"""The dry run (`vlp train --dry-run`, `vlp protocol --dry-run`): the job's own plan, measured on real steps,
extrapolated consistently, nothing trained or written; a batch that runs out of memory is halved."""

import math

import pytest
import torch

from fakes import write_folder
from vlp_core.commands import main as vlp
from vlp_core.data.tasks import make_task
from vlp_core.experiments import estimate
from vlp_core.experiments.estimate import MEASURED_STEPS, WARMUP_STEPS, estimate_job
from vlp_core.experiments.jobs import JobData, plan_job
from vlp_core.experiments.spec import JobSpec


@pytest.fixture
def folder(tmp_path):
    return write_folder(tmp_path / "mine", {"star": 12, "circle": 12, "square": 12})


def test_the_estimate_lists_the_plan_and_adds_up(tiny, folder):
    spec = JobSpec("fewshot", methods=["zeroshot", "coop", "disa"], datasets=[str(folder)], seeds=[1, 2],
                   shots=[1, 2], epochs=3)
    job = estimate_job(spec, tiny)
    assert [r.run for r in job.runs] == plan_job(spec, JobData(spec, tiny))
    assert job.seconds == pytest.approx(sum(r.train_seconds + r.scoring_seconds for r in job.runs))
    assert job.startup_seconds > 0 and job.peak_memory_mb > 0
    for r in job.runs:
        task = make_task(JobData(spec, tiny).trained(r.run.dataset), r.run.shots, r.run.seed, keep_draw=False)
        assert r.evaluated == (len(task.test()),) and r.measured.scoring_seconds_per_image > 0
        if r.run.method == "zeroshot":
            assert (r.epochs, r.steps_per_epoch, r.train_seconds, r.measured.batch_size) == (0, 0, 0.0, None)
            continue
        assert r.epochs == 3 and r.recipe["train"]["epochs"] == 3 and r.recipe["method"] == r.run.method
        assert r.steps_per_epoch == math.ceil(len(task.train) / r.recipe["train"]["batch_size"]) == 1
        assert r.measured.step_seconds > 0 and r.measured.batch_size == r.measured.asked_batch_size == 16
        assert r.train_seconds >= 3 * r.measured.step_seconds
    twins = [r for r in job.runs if r.run.method == "disa" and r.run.shots == 2]
    assert twins[0].measured is twins[1].measured  # seeds 1 and 2: measured once
    assert not (folder / "split_fewshot").exists()  # no few-shot draw written


def test_a_batch_that_runs_out_of_memory_is_halved_until_it_fits(tiny, folder, monkeypatch):
    real, batches = estimate.train_step, []

    def tight_memory(method, optimizer, loss_of, step_context, scaler, images, *args):
        batches.append(len(images))
        if len(images) > 4:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory")
        return real(method, optimizer, loss_of, step_context, scaler, images, *args)

    monkeypatch.setattr(estimate, "train_step", tight_memory)
    spec = JobSpec("fewshot", methods=["coop"], datasets=[str(folder)], seeds=[1], shots=[6], epochs=2)
    (run,) = estimate_job(spec, tiny).runs
    assert batches == [16, 8] + [4] * (WARMUP_STEPS + MEASURED_STEPS)
    assert (run.measured.asked_batch_size, run.measured.batch_size, run.steps_per_epoch) == (16, 4, 5)  # 18 images
    report = estimate.render_estimate(estimate.JobEstimate((run,), "cuda:0", 1.0))
    assert ("coop on mine: batch 16 does not fit in the memory of cuda:0; batch 4 fits, and its times are for batch 4. "
            "To keep batch 16, train it over 4 GPUs (torchrun: the batch is split over the processes); under the "
            "synth rule, --rule batch_size=4 trains at the batch that fits.") in report


def test_dry_runs_from_the_command_line_write_nothing(tiny, folder, tmp_path, capsys):
    out = tmp_path / "out"
    assert vlp(["train", "--method", "disa", "--model", "vlp-tiny", "--data", str(folder), "--classes", "all",
                "--shots", "2", "--epochs", "4", "--out", str(out), "--dry-run"]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("Dry run on cpu: nothing is trained or written.")
    assert "| disa · mine · seed 1 · 2 shots | 4 x 1 | 16 |" in printed and "The whole job: 1 run, " in printed
    assert "| disa | mine | 2 | 4 | 16 | 0.01 | fp32 |" in printed  # its recipe
    assert vlp(["protocol", "base2novel", "--methods", "coop", "--model", "vlp-tiny", "--datasets", str(folder),
                "--seeds", "1", "--shots", "2", "--epochs", "2", "--out", str(out), "--dry-run"]) == 0
    printed = capsys.readouterr().out
    assert "| coop · mine · seed 1 | 2 x 1 | 16 |" in printed and "The whole job: 1 run, " in printed
    assert not out.exists() and not (folder / "split_fewshot").exists()
