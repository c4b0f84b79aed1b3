"""`vlp diagnose`: each measure by hand, on synth-clip and on a random-init ViT-B/16, and the command."""

import json

import pytest
import torch
import torch.nn.functional as F

from vlp_core.backbone import FrozenTextFeatures, load_clip
from vlp_core.commands import main
from vlp_core.data.synthworld import get_suite
from vlp_core.tools.diagnose import (
    Features,
    class_mean_accuracy,
    diagnose,
    diagnose_dataset,
    encode_items,
    fit_linear_probe,
    pointing,
)


def test_class_mean_accuracy_by_hand():
    train = Features(torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0]]), torch.tensor([0, 0, 1]))
    # class means: class 0 (1.8, 0.6) -> (0.949, 0.316), class 1 (0, 1)
    test = Features(torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0], [0.9, -0.1]]), torch.tensor([0, 1, 1, 1]))
    # cosines with class 0: 0.949, 0.822, 0.316, 0.822; with class 1: 0, 0.8, 1, -0.1 -> predictions 0, 0, 1, 0
    assert class_mean_accuracy(train, test, 2) == pytest.approx(50.0)


def test_linear_probe_solves_its_objective():
    generator = torch.Generator().manual_seed(0)
    features = F.normalize(torch.randn(30, 5, generator=generator, dtype=torch.float64), dim=-1)
    labels = torch.arange(30) % 3
    weight, bias = fit_linear_probe(features, labels, 3, weight_decay=0.01)
    weight.requires_grad_(True)
    bias.requires_grad_(True)
    loss = F.cross_entropy(features @ weight.T + bias, labels) + 0.01 * weight.pow(2).sum()
    grad_w, grad_b = torch.autograd.grad(loss, (weight, bias))
    assert grad_w.abs().max() < 1e-5 and grad_b.abs().max() < 1e-5  # a stationary point of the stated loss


def test_pointing_by_hand():
    maps = torch.zeros(2, 3, 2)  # 2 images, 3 patches, 2 classes
    maps[0, 2, 1] = 1.0  # image 0 (class 1): best patch 2
    maps[1, 0, 0] = 1.0  # image 1 (class 0): best patch 0
    coverage = torch.tensor([[0.0, 0.0, 0.3], [0.0, 1.0, 0.0]])
    assert pointing(maps, torch.tensor([1, 0]), coverage) == pytest.approx(50.0)


@pytest.fixture(scope="module")
def synth():
    return load_clip("synth-clip")


def test_synth_clip_diagnosis_agrees_with_its_parts(synth):
    suite = get_suite("shapes", image_size=synth.image_size)
    text = FrozenTextFeatures(synth.model, synth.tokenizer)
    row = diagnose_dataset(synth, suite, text, shots=4, seeds=(1,), n_test=60)
    test = encode_items(synth, suite, suite.split("test")[:60], dense=True)
    logits = test.pooled @ text(suite.classnames, ("a photo of a {}.",)).T
    assert row["zero_shot"] == pytest.approx(100.0 * (logits.argmax(-1) == test.labels).float().mean().item())
    assert row["headroom"] == pytest.approx(row["linear_probe"] - row["zero_shot"])
    assert row["object_area"] == pytest.approx(100.0 * (test.coverage > 0).float().mean().item())
    assert 0 <= row["pointing_local"] <= 100 and 0 <= row["pointing_patches"] <= 100
    assert row["classes"] == 12 and row["test_images"] == 60


def test_random_init_vit_b16_zero_shot_equals_open_clip():
    clip = load_clip("ViT-B-16-quickgelu")  # random weights: no download
    suite = get_suite("shapes", image_size=clip.image_size, n_train=1, n_val=1, n_test=1)
    report = diagnose(clip, [suite], shots=1, seeds=(1,), n_test=12)
    row = report["datasets"][0]
    test = encode_items(clip, suite, suite.split("test")[:12])
    with torch.no_grad():
        text = F.normalize(clip.model.encode_text(clip.tokenizer([f"a photo of a {c}." for c in suite.classnames])), dim=-1)
    expected = 100.0 * ((test.pooled @ text.T).argmax(-1) == test.labels).float().mean().item()
    assert row["zero_shot"] == pytest.approx(expected)
    assert report["model"] == "ViT-B-16-quickgelu" and report["pretrained"] is None
    assert {"pointing_patches", "pointing_local", "linear_probe", "class_mean"} <= set(row)


def test_diagnose_command_writes_table_json_and_plot(tmp_path, capsys):
    out = tmp_path / "diag"
    assert main(["diagnose", "--data", "shapes", "scenes", "--ood", "shapes:ood", "--shots", "2", "--seeds", "1",
                 "--n-test", "40", "--out", str(out)]) == 0
    report = json.loads((out / "diagnosis.json").read_text())
    assert [r["dataset"] for r in report["datasets"]] == ["shapes", "scenes"]
    assert report["ood"][0]["id"] == "shapes" and 0 <= report["ood"][0]["auroc"] <= 100
    assert (out / "headroom.png").stat().st_size > 0
    printed = capsys.readouterr().out
    assert "| shapes |" in printed and "Mean headroom" in printed


def test_diagnose_rejects_a_malformed_ood_pair(tmp_path, capsys):
    assert main(["diagnose", "--data", "shapes", "--ood", "shapes-ood", "--out", str(tmp_path)]) == 2
    assert "ID:OOD" in capsys.readouterr().err
