"""The trainer: schedule, checkpoints that hold only learned tensors, exact resume, NaN stop, the refusal of another run."""

import json
import math

import pytest
import torch
from safetensors.torch import load_file

from vlp_core.data.loaders import make_loader, train_transform
from vlp_core.data.synthworld import get_suite
from vlp_core.engine.trainer import NonFiniteLossError, TrainConfig, differences, learning_rate, telling, train
from vlp_core.methods.coop import CoOp, CoOpConfig


def test_learning_rate_is_constant_warmup_then_cosine():
    config = TrainConfig(epochs=4, lr=0.01, warmup_epochs=1, warmup_lr=1e-5)
    expected = [1e-5, 0.01, 0.005 * (1 + math.cos(math.pi / 4)), 0.005 * (1 + math.cos(math.pi / 2))]
    assert [learning_rate(config, e) for e in range(4)] == pytest.approx(expected)
    no_warmup = TrainConfig(epochs=2, lr=0.002, warmup_epochs=0)
    assert [learning_rate(no_warmup, e) for e in range(2)] == pytest.approx([0.002, 0.001])


@pytest.fixture
def setup(tiny):
    suite = get_suite("shapes", image_size=tiny.image_size, n_train=2)
    mean, std = tiny.image_mean_std

    def build(seed=1, epochs=3):
        method = CoOp(tiny, CoOpConfig(n_ctx=4, ctx_init="a photo of a"))
        method.set_classes(suite.classnames)
        loader = make_loader(suite, suite.split("train"), train_transform(tiny.image_size, mean, std), 8,
                             shuffle=True)
        return method, loader, TrainConfig(epochs=epochs, batch_size=8, lr=0.05, seed=seed, progress=False)

    return build


def test_resumed_run_ends_where_an_uninterrupted_run_ends(setup, tmp_path, monkeypatch):
    method, loader, config = setup()
    train(method, loader, config, out_dir=tmp_path / "full")
    reference = method.text_ctx.detach().clone()

    killed, loader, config = setup()
    original = CoOp.on_epoch_end

    def die_after_second_epoch(self, epoch, num_epochs):
        original(self, epoch, num_epochs)
        if epoch == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(CoOp, "on_epoch_end", die_after_second_epoch)
    with pytest.raises(KeyboardInterrupt):
        train(killed, loader, config, out_dir=tmp_path / "killed")
    monkeypatch.setattr(CoOp, "on_epoch_end", original)
    assert json.loads((tmp_path / "killed" / "checkpoint.json").read_text())["epochs_run"] == 1

    resumed, loader, config = setup()
    result = train(resumed, loader, config, out_dir=tmp_path / "killed", resume=True)
    assert result.epochs_run == 3 and len(result.history) == 3
    assert (resumed.text_ctx - method.text_ctx.new_tensor(0)).abs().sum() > 0
    torch.testing.assert_close(resumed.text_ctx.detach(), reference, atol=0, rtol=0)


def test_checkpoint_holds_only_learned_tensors(setup, tmp_path):
    method, loader, config = setup(epochs=1)
    train(method, loader, config, out_dir=tmp_path)
    tensors = load_file(str(tmp_path / "checkpoint.safetensors"))
    assert set(tensors) == {"method.text_ctx", "optim.0.momentum_buffer"}
    torch.testing.assert_close(tensors["method.text_ctx"], method.text_ctx.detach())


def test_training_moves_the_context_and_lowers_the_loss(setup):
    method, loader, config = setup(epochs=4)
    before = method.text_ctx.detach().clone()
    result = train(method, loader, config)
    assert (method.text_ctx.detach() - before).abs().max() > 1e-4
    assert result.history[-1]["ce"] < result.history[0]["ce"]


def test_resume_with_other_settings_is_refused(setup, tmp_path):
    method, loader, config = setup(epochs=1)
    train(method, loader, config, out_dir=tmp_path)
    other, loader, config = setup(seed=2, epochs=1)
    with pytest.raises(ValueError, match="seed"):
        train(other, loader, config, out_dir=tmp_path, resume=True)


def test_non_finite_loss_stops_with_the_step_and_terms(setup, tmp_path, monkeypatch):
    method, loader, config = setup(epochs=2)
    calls = {"n": 0}
    original = CoOp.loss

    def nan_on_second_step(self, images, labels):
        terms = original(self, images, labels)
        calls["n"] += 1
        if calls["n"] == 2:
            terms = {k: v * float("nan") for k, v in terms.items()}
        return terms

    monkeypatch.setattr(CoOp, "loss", nan_on_second_step)
    with pytest.raises(NonFiniteLossError, match=r"epoch 1, step 2: ce=nan, total=nan"):
        train(method, loader, config, out_dir=tmp_path)
    assert not (tmp_path / "checkpoint.json").exists()


def test_run_differences_most_telling_first_and_the_rest_named():
    saved = {"method": "coop", "clip": {"model": "a"}, "config": {"lr": 1, "epochs": 2, "momentum": 0, "seed": 1},
             "record": {"dataset": "x", "shots": 1, "few_shot": {"sampling": "p"}, "classes": ["a"]}}
    wanted = {"method": "coop", "clip": {"model": "b"}, "config": {"lr": 2, "epochs": 3, "momentum": 1, "seed": 2},
              "record": {"dataset": "y", "shots": 2, "few_shot": {"sampling": "q"}, "classes": ["b"]}}
    assert telling(differences(saved, wanted)) == [
        'clip.model: "a" -> "b"', 'record.dataset: "x" -> "y"', 'record.classes: ["a"] -> ["b"]',
        "record.shots: 1 -> 2", "config.seed: 1 -> 2", 'record.few_shot.sampling: "p" -> "q"',
        "and 3 more: config.epochs, config.lr, config.momentum"]
