"""Pretraining the bundled CLIP: the loss, exact resume, and a loadable open_clip folder."""

import math

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from vlp_core.backbone import load_clip
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
