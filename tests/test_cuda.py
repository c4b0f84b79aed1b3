"""The GPU path: a few training steps of every method on the tiny CLIP under autocast on CUDA, through
the engine (pinned memory, non-blocking copies, fp16 with a grad scaler, bf16). Skipped without CUDA."""

import json

import pytest
import torch

from tolerances import assert_equivalent

from vlp_core.backbone import load_clip
from vlp_core.data.synthworld import get_suite
from vlp_core.data.tasks import make_task
from vlp_core.experiments.runs import Context, evaluate, fit
from vlp_core.experiments.spec import JobSpec
from vlp_core.methods.registry import build_method, method_names

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason="no CUDA device on this machine: the GPU smoke test runs where one is")


@pytest.fixture(scope="module")
def cuda_tiny():
    return load_clip("vlp-tiny", device="cuda", seed=0)


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
@pytest.mark.parametrize("method", method_names(trainable=True))
def test_a_few_autocast_steps_of_every_method_on_cuda(cuda_tiny, tmp_path, method, precision):
    suite = get_suite("shapes", image_size=cuda_tiny.image_size, n_train=4, n_test=2)
    task = make_task(suite, shots=2, seed=1)
    ctx = Context(JobSpec(epochs=2, precision=precision, workers=1), cuda_tiny, tmp_path, progress=False)
    model = fit(ctx, ctx.settings(method, "fewshot", task), task, tmp_path / method)
    assert all(p.device.type == "cuda" for p in model.parameters())
    scores = evaluate(ctx, model, suite, suite.split("test"), suite.classnames)
    assert 0.0 <= scores["acc"] <= 100.0
    history = json.loads((tmp_path / method / "checkpoint.json").read_text())
    assert history["config"]["precision"] == precision and len(history["history"]) == 2
    assert all(torch.isfinite(torch.tensor(v)) for epoch in history["history"] for v in epoch.values())
    if method in ("promptsrc", "disa"):
        assert model.teacher_text.dtype == torch.float32  # constants stay float32 under autocast


def test_zero_shot_on_cuda_equals_the_cpu(cuda_tiny, tiny, images):
    logits = {}
    for name, clip in (("cpu", tiny), ("cuda", cuda_tiny)):
        method = build_method("zeroshot", clip)
        method.set_classes(["red circle", "blue square"])
        with torch.no_grad():
            logits[name] = method.logits(images.to(clip.model.logit_scale.device)).cpu()
    assert_equivalent(logits["cuda"], logits["cpu"], rel=1e-3)  # TF32 / other kernels
