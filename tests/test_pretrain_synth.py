"""Pretraining the bundled CLIP: the loss, exact resume, and a loadable open_clip folder."""

import math

import open_clip
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from vlp_core.backbone import WeightsNotFoundError, load_clip
from vlp_core.backbone.conv_stem import ConvStem, install_conv_stem
from vlp_core.engine import pretrain_synth as ps


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


def test_resumed_pretraining_equals_uninterrupted(tmp_path, monkeypatch):
    config = ps.PretrainConfig(steps=4, batch_size=6, warmup_steps=1, save_every=2)
    ps.pretrain_synth(tmp_path / "full", config, progress=False)

    original = ps.pretraining_batch

    def killed_at_step_three(start, count, seed, **kwargs):
        if start == 2 * config.batch_size:
            raise KeyboardInterrupt
        return original(start, count, seed, **kwargs)

    monkeypatch.setattr(ps, "pretraining_batch", killed_at_step_three)
    with pytest.raises(KeyboardInterrupt):
        ps.pretrain_synth(tmp_path / "killed", config, progress=False)
    monkeypatch.setattr(ps, "pretraining_batch", original)
    ps.pretrain_synth(tmp_path / "killed", config, progress=False)

    full = load_file(str(tmp_path / "full" / ps.WEIGHTS_FILE))
    resumed = load_file(str(tmp_path / "killed" / ps.WEIGHTS_FILE))
    assert full.keys() == resumed.keys()
    for key in full:
        torch.testing.assert_close(resumed[key], full[key], atol=0, rtol=0)


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


def test_conv_stem_must_match_the_patch_size():
    with pytest.raises(ValueError, match="patch size is 8"):
        install_conv_stem(open_clip.CLIP(**ps.SYNTH_MODEL_CFG), (32, 64))


def test_bundle_without_weights_names_the_expected_file(tmp_path):
    ps.write_bundle(ps._new_model(0), tmp_path / "synth")
    (tmp_path / "synth" / ps.WEIGHTS_FILE).unlink()
    with pytest.raises(WeightsNotFoundError, match=ps.WEIGHTS_FILE):
        load_clip(str(tmp_path / "synth"))
