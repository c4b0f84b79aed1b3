"""Pretraining the bundled CLIP: the loss, exact resume, and a loadable open_clip folder."""

import dataclasses
import json
import math

import open_clip
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from vlp_core.backbone import WeightsNotFoundError, load_clip
from vlp_core.backbone.conv_stem import ConvStem, install_conv_stem
from vlp_core.data.synthworld import ALL_SHAPES, COLOURS
from vlp_core.data.synthworld.pretraining import IGNORE
from vlp_core.synthclip import pretrain as ps


def test_contrastive_loss_by_hand():
    image = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    text = torch.tensor([[3.0, 0.0], [1.0, 1.0]])
    scale = torch.tensor(10.0)
    cos = F.normalize(image, dim=-1) @ F.normalize(text, dim=-1).T  # [[1, .7071], [0, .7071]]
    expected_i = -(math.log(math.exp(10 * cos[0, 0]) / (math.exp(10 * cos[0, 0]) + math.exp(10 * cos[0, 1])))
                   + math.log(math.exp(10 * cos[1, 1]) / (math.exp(10 * cos[1, 0]) + math.exp(10 * cos[1, 1])))) / 2
    expected_t = -(math.log(math.exp(10 * cos[0, 0]) / (math.exp(10 * cos[0, 0]) + math.exp(10 * cos[1, 0])))
                   + math.log(math.exp(10 * cos[1, 1]) / (math.exp(10 * cos[0, 1]) + math.exp(10 * cos[1, 1])))) / 2
    assert ps.contrastive_loss(image, text, scale).item() == pytest.approx((expected_i + expected_t) / 2, rel=1e-5)


SMALL = ps.PretrainConfig(image_steps=3, text_steps=3, image_batch_size=6, text_batch_size=6, warmup_steps=1,
                          save_every=2)


@pytest.mark.parametrize("stage, step", [("image", 2), ("text", 1)])
def test_resumed_pretraining_equals_uninterrupted(tmp_path, monkeypatch, stage, step):
    ps.pretrain_synth(tmp_path / "full", SMALL, progress=False, device="cpu")

    original = ps.pretraining_batch
    kill_at = SMALL.stream_start(stage, step)

    def killed(start, count, seed, **kwargs):
        if start == kill_at:
            raise KeyboardInterrupt
        return original(start, count, seed, **kwargs)

    monkeypatch.setattr(ps, "pretraining_batch", killed)
    with pytest.raises(KeyboardInterrupt):
        ps.pretrain_synth(tmp_path / "killed", SMALL, progress=False, device="cpu")
    monkeypatch.setattr(ps, "pretraining_batch", original)
    ps.pretrain_synth(tmp_path / "killed", SMALL, progress=False, device="cpu")

    full = load_file(str(tmp_path / "full" / ps.WEIGHTS_FILE))
    resumed = load_file(str(tmp_path / "killed" / ps.WEIGHTS_FILE))
    assert full.keys() == resumed.keys()
    for key in full:
        torch.testing.assert_close(resumed[key], full[key], atol=0, rtol=0)


def test_the_text_stage_leaves_the_image_tower_locked(tmp_path, monkeypatch):
    after_image = {}
    original = ps._text_step

    def record(model, *args):
        if not after_image:
            after_image.update({k: v.clone() for k, v in model.visual.state_dict().items()})
        return original(model, *args)

    monkeypatch.setattr(ps, "_text_step", record)
    ps.pretrain_synth(tmp_path / "m", SMALL, progress=False, device="cpu")
    final = ps._new_model(0)
    final.load_state_dict({k: v.float() for k, v in load_file(str(tmp_path / "m" / ps.WEIGHTS_FILE)).items()},
                          strict=False)
    for key, value in final.visual.state_dict().items():  # fp16 storage of the bundle
        torch.testing.assert_close(value.float(), after_image[key].half().float(), atol=0, rtol=0)
    training = json.loads((tmp_path / "m" / "training.json").read_text())
    assert training["config"]["image_steps"] == 3 and set(training["seconds"]) == {"image", "text"}


def test_a_changed_config_does_not_resume(tmp_path):
    ps.pretrain_synth(tmp_path / "m", SMALL, progress=False, device="cpu")
    with pytest.raises(ValueError, match="--restart"):
        ps.pretrain_synth(tmp_path / "m", dataclasses.replace(SMALL, text_steps=4), progress=False, device="cpu")


def test_factor_losses_by_hand():
    torch.manual_seed(0)
    heads = ps.FactorHeads(4)
    pooled, patches, local = torch.randn(2, 4), torch.randn(2, 3, 4), torch.randn(2, 3, 4)
    n_shapes, n_colours = len(ALL_SHAPES), len(COLOURS)
    factors = {"shape": torch.tensor([1, 5]), "colour": torch.tensor([0, 7]), "pattern": torch.tensor([2, IGNORE]),
               "size": torch.tensor([0, 2]), "style": torch.tensor([1, 1]), "background": torch.tensor([IGNORE, 3]),
               "present": torch.zeros(2, n_shapes),
               "patch_shape": torch.tensor([[n_shapes, 1, IGNORE], [5, 5, n_shapes]]),
               "patch_colour": torch.tensor([[n_colours, 0, IGNORE], [7, 7, n_colours]])}
    factors["present"][0, 1] = factors["present"][1, [5, 9]] = 1
    terms = ps.factor_losses(pooled, patches, local, heads, factors)

    scale = heads.log_scale.exp()

    def cos(x, w):  # scaled cosines, computed element by element
        return torch.stack([torch.stack([scale * torch.dot(a, b) / (a.norm() * b.norm()) for b in w]) for a in x])

    def nll(logits, target):
        return -(logits[target] - torch.logsumexp(logits, 0))

    w = heads.weights
    shape = (nll(cos(pooled, w["shape"][:-1])[0], 1) + nll(cos(pooled, w["shape"][:-1])[1], 5)) / 2
    pattern = nll(cos(pooled, w["pattern"])[0], 2)  # the sketch's pattern is ignored
    background = 0.5 * nll(cos(pooled, w["background"])[1], 3)
    present_logits = cos(pooled, w["shape"][:-1]) - ps.PRESENT_BIAS
    p = torch.sigmoid(present_logits)
    present = 4.0 * -(factors["present"] * p.log() + (1 - factors["present"]) * (1 - p).log()).mean()
    patch_logits = cos(patches.reshape(6, 4), w["shape"])
    targets = [n_shapes, 1, 5, 5, n_shapes]  # the mixed patch (IGNORE) left out
    patch_shape = sum(nll(patch_logits[i], t) for i, t in zip([0, 1, 3, 4, 5], targets)) / 5
    torch.testing.assert_close(terms["shape"], shape)
    torch.testing.assert_close(terms["pattern"], pattern)
    torch.testing.assert_close(terms["background"], background)
    torch.testing.assert_close(terms["present"], present)
    torch.testing.assert_close(terms["patch_shape"], patch_shape)
    parts = [v for k, v in terms.items() if k != "total"]
    assert len(parts) == 11
    torch.testing.assert_close(terms["total"], sum(parts))


def test_written_folder_loads_as_a_clip(tmp_path):
    ps.write_bundle(ps._new_model(0), tmp_path / "synth")
    bundle = load_clip(str(tmp_path / "synth"))
    assert bundle.image_size == 64
    assert bundle.tokenizer(["a red star"]).shape == (1, ps.SYNTH_MODEL_CFG["text_cfg"]["context_length"])
    image = torch.zeros(1, 3, 64, 64)
    assert bundle.model.encode_image(image).shape == (1, ps.SYNTH_MODEL_CFG["embed_dim"])


def test_written_folder_keeps_the_conv_stem_and_its_outputs(tmp_path):
    model = ps._new_model(0).eval()
    ps.write_bundle(model, tmp_path / "synth")
    loaded = load_clip(str(tmp_path / "synth")).model
    assert isinstance(loaded.visual.conv1, ConvStem)
    image = torch.randn(2, 3, 64, 64)
    with torch.no_grad():  # fp16 storage: equal to fp16 precision
        torch.testing.assert_close(loaded.encode_image(image), model.encode_image(image), atol=2e-2, rtol=2e-2)


def test_conv_stem_keeps_the_patch_grid():
    clip = install_conv_stem(open_clip.CLIP(**ps.SYNTH_MODEL_CFG), (8, 16, 32))
    grid = 64 // ps.SYNTH_MODEL_CFG["vision_cfg"]["patch_size"]
    out = clip.visual.conv1(torch.zeros(1, 3, 64, 64))
    assert out.shape == (1, ps.SYNTH_MODEL_CFG["vision_cfg"]["width"], grid, grid)


def test_a_deeper_conv_stem_adds_stride_one_convolutions_and_keeps_the_grid():
    stem = install_conv_stem(open_clip.CLIP(**ps.SYNTH_MODEL_CFG), (8, 16, 32), depth=2).visual.conv1
    strides = [m.stride[0] for m in stem if isinstance(m, torch.nn.Conv2d)]
    assert strides == [2, 1, 2, 1, 2, 1, 1]  # 3 stages of (stride 2, stride 1), then the 1x1 projection
    assert stem(torch.zeros(1, 3, 64, 64)).shape == (1, ps.SYNTH_MODEL_CFG["vision_cfg"]["width"], 8, 8)


def test_conv_stem_must_match_the_patch_size():
    with pytest.raises(ValueError, match="patch size is 8"):
        install_conv_stem(open_clip.CLIP(**ps.SYNTH_MODEL_CFG), (32, 64))


def test_bundle_without_weights_names_the_expected_file(tmp_path):
    ps.write_bundle(ps._new_model(0), tmp_path / "synth")
    (tmp_path / "synth" / ps.WEIGHTS_FILE).unlink()
    with pytest.raises(WeightsNotFoundError, match=ps.WEIGHTS_FILE):
        load_clip(str(tmp_path / "synth"))
