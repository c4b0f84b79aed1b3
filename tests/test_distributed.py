"""One run over several processes: global batches, per-image crops and draws, losses that split over
processes, and DistributedDataParallel on gloo (CPU) giving the one-process answer, resumable with
any number of processes. NCCL is the same code on CUDA devices; these tests run on the CPU."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from safetensors.torch import load_file

from vlp_core.backbone import load_clip
from vlp_core.data.loaders import GlobalBatches, eval_transform, make_loader, start_epoch, train_transform
from vlp_core.data.synthworld import get_suite
from vlp_core.engine.trainer import TrainConfig, train
from vlp_core.methods.disa import DiSa, DiSaConfig
from vlp_core.methods.registry import build_method, method_names
from vlp_core.methods.saliency import saliency_mask
from vlp_core.methods.topk import dropout_global

from tolerances import assert_equivalent

ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------- global batches


@pytest.mark.parametrize("size, batch_size", [(17, 8), (32, 16), (9, 4)])
def test_shares_of_every_process_make_up_the_one_process_batch(size, batch_size):
    one = GlobalBatches(size, batch_size)
    one.set_epoch(5)
    batches = [indices for indices, _ in one.steps()]
    assert sorted(i for batch in batches for i in batch) == list(range(size))  # a permutation
    assert [len(b) for b in batches] == [batch_size] * (size // batch_size) + ([size % batch_size] if size % batch_size else [])
    for world in (2, 3, 5):
        shares = []
        for rank in range(world):
            sampler = GlobalBatches(size, batch_size, rank, world)
            sampler.set_epoch(5)
            shares.append(sampler.steps())
        for step, batch in enumerate(batches):
            real = [share[step] for share in shares if share[step][1] > 0]
            assert sorted(i for indices, _ in real for i in indices) == sorted(batch)
            assert sum(weight for _, weight in real) == pytest.approx(1.0)
            assert all(weight == len(indices) / len(batch) for indices, weight in real)
            for indices, weight in (share[step] for share in shares if share[step][1] == 0):
                assert indices == [batch[0]]  # a placeholder: every process takes every step
    other = GlobalBatches(size, batch_size)
    other.set_epoch(6)
    assert [i for indices, _ in other.steps() for i in indices] != [i for b in batches for i in b]


def test_crops_are_seeded_per_image_whatever_the_share_or_the_workers(tiny):
    suite = get_suite("shapes", image_size=tiny.image_size, n_train=2)
    items = suite.split("train")[:10]
    transform = train_transform(tiny.image_size, *tiny.image_mean_std, (0.5, 1.0))
    one = make_loader(suite, items, transform, 4, shuffle=True, seed=3)
    steps = start_epoch(one, 3)
    images = {i: image for (batch, _), (indices, _) in zip(one, steps) for i, image in zip(indices, batch)}
    assert len(images) == 10
    for rank, workers in ((0, 2), (1, 0)):
        share = make_loader(suite, items, transform, 4, shuffle=True, seed=3, num_workers=workers, rank=rank,
                            world_size=2)
        for (batch, _), (indices, _) in zip(share, start_epoch(share, 3)):
            for i, image in zip(indices, batch):
                assert torch.equal(image, images[i])
    again = make_loader(suite, items, transform, 4, shuffle=True, seed=3)
    start_epoch(again, 4)  # another epoch: other crops of the same image
    first = next(iter(again))[0][0]
    index = again.batch_sampler.steps()[0][0][0]
    assert not torch.equal(first, images[index])


# ---------------------------------------------------------------- draws and losses that split


def test_per_image_generators_draw_each_row_alone():
    saliency = torch.rand(4, 16, generator=torch.Generator().manual_seed(0))
    seeds = [11, 12, 13, 14]
    generators = [torch.Generator().manual_seed(s) for s in seeds]
    masks = saliency_mask(saliency, 0.25, 0.5, generators)
    for b, seed in enumerate(seeds):
        alone = saliency_mask(saliency[b : b + 1], 0.25, 0.5, [torch.Generator().manual_seed(seed)])
        assert torch.equal(masks[b], alone[0])
    sims = torch.rand(4, 3, 4, generator=torch.Generator().manual_seed(1))
    for sampling in ("with_replacement", "without_replacement"):
        dropped = dropout_global(sims, 0.5, sampling, [torch.Generator().manual_seed(s) for s in seeds])
        for b, seed in enumerate(seeds):
            alone = dropout_global(sims[b : b + 1], 0.5, sampling, [torch.Generator().manual_seed(seed)])
            assert torch.equal(dropped[b], alone[0])
    with pytest.raises(ValueError, match="3 generators for a batch of 4 images"):
        saliency_mask(saliency, 0.25, 0.5, generators[:3])


@pytest.fixture(scope="module")
def batch(tiny):
    """Six images and labels of three classes, and one draw seed per image."""
    generator = torch.Generator().manual_seed(2)
    images = torch.randn(6, 3, tiny.image_size, tiny.image_size, generator=generator)
    return images, torch.tensor([0, 1, 2, 2, 1, 0]), [101, 102, 103, 104, 105, 106]


@pytest.mark.parametrize("name", method_names(trainable=True))
def test_the_loss_of_a_batch_is_the_share_weighted_sum_of_its_parts(tiny, batch, name):
    """What the trainer relies on to split a batch over processes: every term is a mean over the
    batch's images (with per-image draws) or independent of them."""
    images, labels, seeds = batch
    method = build_method(name, tiny, {})
    method.set_classes(["red circle", "blue square", "green star"])
    method.prepare_training([(images, labels)])
    method.check_batch_split()
    with torch.no_grad():
        with method.drawing_per_image(seeds):
            whole = method.loss(images, labels)
        parts = []
        for rows in ([0, 2, 4, 5], [1], [3]):
            with method.drawing_per_image([seeds[r] for r in rows]):
                parts.append((len(rows) / 6, method.loss(images[rows], labels[rows])))
    assert set(whole) == set(parts[0][1])
    for term, value in whole.items():
        torch.testing.assert_close(sum(share * part[term] for share, part in parts), value, atol=1e-6, rtol=1e-5)


def test_a_loss_that_sums_over_the_batch_is_refused(tiny):
    with pytest.raises(ValueError, match="cir_reduction=sum .* cannot be split over processes"):
        DiSa(tiny, DiSaConfig(cir_reduction="sum")).check_batch_split()


# ---------------------------------------------------------------- DDP over gloo processes


def _train_run(rank: int, world: int, name: str, out: Path, epochs: int, stop_in: int | None) -> None:
    """Train `name` on 15 images in global batches of 7 (shares of 4 and 3 images, then 1 image and a
    placeholder) as process `rank` of `world`, interrupted at the end of epoch `stop_in` (0-based,
    before its checkpoint) if given; checkpoints in `out`."""
    torch.set_num_threads(1)
    tiny = load_clip("vlp-tiny", seed=0)
    suite = get_suite("shapes", image_size=tiny.image_size, n_train=5)
    items = [item for item in suite.split("train") if item.label < 3]
    assert len(items) == 15
    method = build_method(name, tiny, {"seed": 1})
    method.set_classes(suite.classnames[:3])
    if stop_in is not None:
        real = method.on_epoch_end

        def stop(epoch, num_epochs):
            real(epoch, num_epochs)
            if epoch == stop_in:
                raise KeyboardInterrupt

        method.on_epoch_end = stop
    transform = train_transform(tiny.image_size, *tiny.image_mean_std, (0.5, 1.0))
    loader = make_loader(suite, items, transform, 7, shuffle=True, rank=rank, world_size=world)
    prepare = make_loader(suite, items, eval_transform(tiny.image_size, *tiny.image_mean_std), 8)
    config = TrainConfig(epochs=epochs, batch_size=7, lr=0.05, warmup_epochs=0, seed=1, progress=False)
    try:
        train(method, loader, config, out_dir=out, resume=True, prepare_loader=prepare)
    except KeyboardInterrupt:
        pass
    (out.parent / f"{out.name}.text_encoder_calls.{rank}").write_text(str(method.frozen_text.encoder_calls))


def _process(rank: int, world: int, store: str, *args) -> None:
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    try:
        _train_run(rank, world, *args)
    finally:
        dist.destroy_process_group()


def _on_processes(world: int, tmp_path: Path, *args) -> None:
    store = tmp_path / f"store-{len(list(tmp_path.iterdir()))}"
    mp.start_processes(_process, args=(world, str(store), *args), nprocs=world, start_method="spawn")


def _learned(folder: Path) -> dict[str, torch.Tensor]:
    """The learned tensors (and GPA aggregates) of a checkpoint, without the optimiser state."""
    return {k: v for k, v in load_file(str(folder / "checkpoint.safetensors")).items() if k.startswith("method.")}


@pytest.mark.parametrize("name", ["gallop", "disa"])
def test_two_gloo_processes_learn_what_one_process_learns(tmp_path, name):
    _train_run(0, 1, name, tmp_path / "one", 3, None)
    _on_processes(2, tmp_path, name, tmp_path / "two", 3, None)
    one, two = _learned(tmp_path / "one"), _learned(tmp_path / "two")
    calls = [int((tmp_path / f"two.text_encoder_calls.{rank}").read_text()) for rank in (0, 1)]
    assert calls == ([8, 0] if name == "disa" else [0, 0])  # the 60-template teacher (8 passes): main process only
    start = build_method(name, load_clip("vlp-tiny", seed=0), {"seed": 1})
    moved = max((one[f"method.{k}"] - v).abs().max().item() for k, v in start.trainable_state_dict().items()
                if not k.startswith("gpa_") and v.numel())
    assert moved > 1e-3  # the prompts did move, by far more than the tolerance
    assert set(one) == set(two)
    for key in one:
        assert_equivalent(two[key], one[key])


def test_a_run_resumes_on_another_number_of_processes(tmp_path):
    _train_run(0, 1, "gallop", tmp_path / "reference", 3, None)
    _on_processes(2, tmp_path, "gallop", tmp_path / "split", 3, 1)  # two processes: epoch 1 saved, 2 lost
    assert (tmp_path / "split" / "checkpoint.json").read_text().count('"epoch": ') == 1
    _train_run(0, 1, "gallop", tmp_path / "split", 3, None)  # one process resumes epochs 2 and 3
    reference, resumed = _learned(tmp_path / "reference"), _learned(tmp_path / "split")
    for key in reference:
        assert_equivalent(resumed[key], reference[key])


def test_torchrun_trains_one_run_on_two_processes_as_on_one(tmp_path):
    """`torchrun --nproc_per_node 2 -m vlp_core train` against `python -m vlp_core train`: same
    prompts; only the main process writes, evaluates and prints."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    command = ["train", "--method", "disa", "--model", "vlp-tiny", "--shots", "3", "--epochs", "2", "--quiet"]
    torchrun = Path(sys.executable).with_name("torchrun")
    one = subprocess.run([sys.executable, "-m", "vlp_core", *command, "--out", str(tmp_path / "one")],
                         env=env, capture_output=True, text=True, timeout=600)
    two = subprocess.run([str(torchrun), "--standalone", "--nproc_per_node", "2", "-m", "vlp_core", *command,
                          "--out", str(tmp_path / "two")], env=env, capture_output=True, text=True, timeout=600)
    assert one.returncode == 0 and two.returncode == 0, one.stderr + two.stderr
    assert two.stdout.count("prompts saved in") == 1
    assert two.stdout.replace("two", "one").replace(", 2 processes)", ")") == one.stdout
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == ["checkpoint.json", "checkpoint.safetensors",
                                                                    "curves.png", "metrics.jsonl", "run.json"]
    assert json.loads((tmp_path / "two" / "run.json").read_text())["processes"] == 2
    reference, split = _learned(tmp_path / "one"), _learned(tmp_path / "two")
    for key in reference:
        assert_equivalent(split[key], reference[key])


def test_torchrun_is_for_vlp_train_only(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0"}
    done = subprocess.run([sys.executable, "-m", "vlp_core", "protocol", "base2novel", "--out", str(tmp_path)],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    assert done.stderr.strip() == ("vlp: error: only `vlp train` runs over several processes; start `vlp protocol` "
                                   "without torchrun (for many runs at once: vlp protocol ... --jobs N or "
                                   "--launcher submitit)")
