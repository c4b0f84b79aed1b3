"""The recipe table against the official values (protocols.md's "Training recipes per protocol" and
GalLoP's scripts), the SynthWorld rule, option overrides, precision, and the methods' paper defaults."""

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from vlp_core.backbone import load_clip
from vlp_core.commands import main as vlp
from vlp_core.data.datasets import open_dataset
from vlp_core.data.tasks import make_task
from vlp_core.engine.recipes import VIT_B16, ModelShape, recipe, run_recipe
from vlp_core.experiments.protocols import PROTOCOLS
from vlp_core.engine.trainer import TrainConfig, resolve_precision
from vlp_core.methods.coop import CoOpConfig
from vlp_core.methods.disa import DiSaConfig
from vlp_core.methods.gallop import GalLoPConfig
from vlp_core.methods.promptsrc import PromptSRCConfig
from vlp_core.methods.registry import method_names
from vlp_core.methods.zeroshot import ZeroShotConfig

ROOT = Path(__file__).resolve().parents[1]
BENCHMARK = ("ImageNet", "Caltech101", "OxfordPets", "StanfordCars", "Flowers102", "Food101", "FGVCAircraft",
             "SUN397", "DTD", "EuroSAT", "UCF101")
SHOTS = (1, 2, 4, 8, 16)
SYNTH_CLIP = ModelShape(text_blocks=4, vision_blocks=6, patches=64, width=128, logit_scale=18.0)
SGD_5E4 = dict(momentum=0.9, weight_decay=5e-4, warmup_epochs=1, warmup_lr=1e-5, precision="fp16")


def official(method, protocol, dataset, shots):
    """(TrainConfig fields, method options) as the official table states them, written out case by case."""
    if method == "gallop":  # GalLoP's scripts, every protocol
        epochs, batch = {"ImageNet": (50, 128), "SUN397": (200, 128), "EuroSAT": (200, 10)}.get(dataset, (200, 32))
        return dict(epochs=epochs, batch_size=batch, lr=0.002, momentum=0.9, weight_decay=0.01, warmup_epochs=0,
                    warmup_lr=1e-5, precision="fp16"), {"topk": (5, 10, 15, 20)}
    if method == "coop":  # few-shot schedule, used by every protocol
        epochs = 50 if dataset == "ImageNet" else {1: 50, 2: 100, 4: 100, 8: 200, 16: 200}[shots]
        return dict(epochs=epochs, batch_size=32, lr=0.002, **SGD_5E4), {}
    transfer = protocol in ("dg", "xd", "ood")  # ImageNet-source protocols: the cross-dataset config
    depth = 3 if transfer else 9
    epochs = 50 if protocol == "fewshot" else 20
    options = dict(text_depth=depth, vision_depth=depth)
    if method in ("promptsrc", "disa"):
        if protocol == "base2novel":
            gpa = (15.0, 1.0)
        elif transfer:
            gpa = (6.0, 10.0)
        elif dataset in ("StanfordCars", "Flowers102", "FGVCAircraft", "DTD", "EuroSAT"):
            gpa = (45.0, 5.0)
        else:
            gpa = (30.0, 30.0)
        options.update(gpa_mean=gpa[0], gpa_std=gpa[1], sr_text_weight=25.0, sr_image_weight=10.0)
    if method == "disa":
        options.update(dir_weight=1.0)  # λ, the project's reconstruction (DiSa's paper gives none)
    return dict(epochs=epochs, batch_size=4, lr=0.0025, **SGD_5E4), options


@pytest.mark.parametrize("method", method_names(trainable=True))
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_every_entry_is_the_official_value(method, protocol):
    for dataset in BENCHMARK:
        for shots in SHOTS:
            entry = recipe(method, protocol, dataset, shots)
            train, options = official(method, protocol, dataset, shots)
            assert entry.train == TrainConfig(**train), (dataset, shots)
            assert entry.options == options, (dataset, shots)


def test_ivlp_has_no_gpa_and_zero_shot_gets_coops_template():
    assert "gpa_mean" not in recipe("ivlp", "fewshot", "EuroSAT", 4).options
    zero_shot = recipe("zeroshot", "base2novel", "EuroSAT", 16, trainable=False)
    assert zero_shot.train is None and zero_shot.options == {"template": "a centered satellite photo of {}."}
    assert recipe("zeroshot", "dg", "ImageNet-Sketch", 16, trainable=False).options == {"template": "a photo of a {}."}
    assert recipe("zeroshot", "base2novel", "shapes", 16, "synth", 6, trainable=False, shape=SYNTH_CLIP).options == {}


def test_method_defaults_are_the_papers():
    assert dataclasses.asdict(CoOpConfig()) == dict(n_ctx=16, ctx_init=None, init_std=0.02, seed=0,
                                                    class_token_position="end", csc=False)
    assert dataclasses.asdict(PromptSRCConfig()) == dict(
        n_ctx=4, ctx_init="a photo of a", init_std=0.02, seed=0, class_token_position="end", csc=False,
        n_ctx_vision=4, text_depth=9, vision_depth=9, use_sr=True, sr_text_weight=25.0, sr_image_weight=10.0,
        sr_logits_weight=1.0, gpa=True, gpa_mean=15.0, gpa_std=1.0)
    disa = dataclasses.asdict(DiSaConfig())
    assert {k: disa.pop(k) for k in dataclasses.asdict(PromptSRCConfig())} == dataclasses.asdict(PromptSRCConfig())
    assert disa == dict(use_cir=True, cir_weight=1.0, cir_direction="a||b", cir_use_mask=True,
                        cir_reduction="batchmean", mask_ratio=0.3, mask_pool=0.5, mask_mode="drop_tokens",
                        saliency_tau=0.01, use_dir=True, dir_weight=1.0, dir_loss="cosine")
    gallop = GalLoPConfig()
    assert (gallop.n_global, gallop.n_local, gallop.n_ctx, gallop.ctx_init) == (4, 4, 4, "a photo of a")
    assert (gallop.topk, gallop.dropout, gallop.dropout_sampling) == ((5, 10, 15, 20), 0.75, "with_replacement")
    assert ZeroShotConfig().template == "single"


@pytest.mark.parametrize("method, shots, classes, epochs, lr, weight_decay, warmup", [
    ("disa", 16, 6, 20, 0.01, 5e-4, 1),  # 96 images: 6 steps an epoch, 240 / 6 = 40 -> the paper's 20 at most
    ("promptsrc", 16, 16, 15, 0.01, 5e-4, 1),  # 256 images: 16 steps, 240 / 16 = 15
    ("coop", 16, 16, 15, 0.001, 5e-4, 1),  # CoOp's lr 0.002 at batch 32 -> 0.001 at batch 16
    ("coop", 16, 6, 40, 0.001, 5e-4, 1),  # 6 steps, 240 / 6 = 40 (CoOp's paper: 200)
    ("gallop", 16, 32, 8, 0.001, 0.01, 0),  # 512 images: 32 steps, 240 / 32 = 7.5 -> 8
    ("ivlp", 1, 16, 20, 0.01, 5e-4, 1),  # 1 step an epoch -> 240, the paper's 20 at most
    ("gallop", 16, 100, 5, 0.001, 0.01, 0),  # 100 steps -> at least 5
])
def test_synth_rule_by_hand(method, shots, classes, epochs, lr, weight_decay, warmup):
    entry = recipe(method, "base2novel", "shapes", shots, "synth", classes, shape=SYNTH_CLIP)
    assert entry.train == TrainConfig(epochs=epochs, batch_size=16, lr=pytest.approx(lr), momentum=0.9,
                                      weight_decay=weight_decay, warmup_epochs=warmup, precision="fp32",
                                      crop_scale=(0.08, 1.0))  # the papers' crops
    with pytest.raises(ValueError, match="num_classes"):
        recipe(method, "base2novel", "shapes", shots, "synth", shape=SYNTH_CLIP)
    with pytest.raises(ValueError, match="shape"):
        recipe(method, "base2novel", "shapes", shots, "synth", classes)


def test_synth_rule_scales_the_papers_options_to_the_model_by_hand():
    """synth-clip: 4 text / 6 vision blocks (ViT-B/16: 12 / 12), 64 patches (196), D = 128 (512), s = 18 (100)."""
    b2n = recipe("disa", "base2novel", "colour_shapes", 16, "synth", 16, shape=SYNTH_CLIP)  # 15 epochs
    assert b2n.options == {
        "text_depth": 3, "vision_depth": 5,  # 9 · 4 / 12 = 3; 9 · 6 / 12 = 4.5, half up
        "gpa_mean": 11.25, "gpa_std": 0.75,  # 15 / 20 and 1 / 20 of the run's 15 epochs
        "sr_text_weight": 2.25, "sr_image_weight": 0.9,  # 25 and 10 · 0.18 · sqrt(128 / 512)
        "dir_weight": 0.18}  # 1 · 0.18
    dg = recipe("promptsrc", "dg", "shapes", 16, "synth", 12, shape=SYNTH_CLIP)  # 12 steps an epoch: 20 epochs
    assert (dg.options["text_depth"], dg.options["vision_depth"]) == (1, 2)  # 3 · 4 / 12; 3 · 6 / 12 = 1.5
    assert (dg.options["gpa_mean"], dg.options["gpa_std"]) == (6.0, 10.0)  # 20 of the paper's 20 epochs
    assert recipe("gallop", "fewshot", "shapes", 4, "synth", 12, shape=SYNTH_CLIP).options == {
        "topk": (2, 3, 5, 7)}  # (5, 10, 15, 20) · 64 / 196 = 1.6, 3.3, 4.9, 6.5
    few = recipe("promptsrc", "fewshot", "colour_shapes", 2, "synth", 32, shape=SYNTH_CLIP, epochs=10)
    assert few.train.epochs == 10 and (few.options["gpa_mean"], few.options["gpa_std"]) == (6.0, 6.0)  # 30 / 50
    assert recipe("ivlp", "base2novel", "Caltech101", 16, "synth", 50, shape=VIT_B16).options == recipe(
        "ivlp", "base2novel", "Caltech101", 16).options  # ViT-B/16's own shape: nothing to scale


def test_synth_rule_budget_options():
    longer = recipe("coop", "base2novel", "shapes", 16, "synth", 16, shape=SYNTH_CLIP, rule_options={"steps": 960})
    assert longer.train.epochs == 60  # 960 / 16 steps
    capped = recipe("disa", "base2novel", "shapes", 16, "synth", 16, shape=SYNTH_CLIP, rule_options={"steps": 960})
    assert capped.train.epochs == 20  # never more than the paper's epochs
    crops = recipe("coop", "base2novel", "shapes", 16, "synth", 16, shape=SYNTH_CLIP,
                   rule_options={"crop_scale": [0.5, 1.0]})
    assert crops.train.crop_scale == (0.5, 1.0)
    with pytest.raises(ValueError, match="the synth rule has no option stepz"):
        recipe("coop", "base2novel", "shapes", 16, "synth", 16, shape=SYNTH_CLIP, rule_options={"stepz": 1})


def test_depth_and_gpa_overrides():
    overrides = dict(rule="paper", trainable=True, device=torch.device("cpu"), epochs=2)
    dg = run_recipe("disa", "dg", "ImageNet", 16, 1000, options={"text_depth": 5, "gpa_mean": 3.0}, **overrides)
    assert dg.options == {"text_depth": 5, "vision_depth": 3, "gpa_mean": 3.0, "gpa_std": 10.0, "sr_text_weight": 25.0,
                          "sr_image_weight": 10.0, "dir_weight": 1.0}
    assert dg.train.epochs == 2 and dg.train.precision == "fp32"  # the CPU: fp32 whatever the recipe says
    b2n = run_recipe("promptsrc", "base2novel", "Caltech101", 16, 50, **overrides)
    assert b2n.options == {"text_depth": 9, "vision_depth": 9, "gpa_mean": 15.0, "gpa_std": 1.0, "sr_text_weight": 25.0,
                           "sr_image_weight": 10.0}
    record = dg.as_dict()
    assert record["train"]["epochs"] == 2 and "seed" not in record["train"] and record["options"]["text_depth"] == 5


def test_precision_is_chosen_for_the_device():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert resolve_precision(None, "fp16", cpu) == "fp32"
    assert resolve_precision(None, "fp16", cuda) == "fp16"
    assert resolve_precision("bf16", "fp16", cpu) == "bf16" and resolve_precision("fp32", "fp16", cuda) == "fp32"
    with pytest.raises(ValueError, match="fp16 autocast with a grad scaler runs on CUDA"):
        resolve_precision("fp16", "fp32", cpu)
    with pytest.raises(ValueError, match="precision must be one of"):
        resolve_precision("fp8", "fp16", cuda)


def test_vlp_recipe_prints_the_entry_as_json(capsys):
    assert vlp(["recipe", "--method", "disa", "--protocol", "fewshot", "--dataset", "EuroSAT", "--shots", "4"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["train"]["epochs"] == 50 and printed["train"]["batch_size"] == 4
    assert printed["options"] == {"text_depth": 9, "vision_depth": 9, "gpa_mean": 45.0, "gpa_std": 5.0,
                                  "sr_text_weight": 25.0, "sr_image_weight": 10.0, "dir_weight": 1.0}
    assert printed["method_config"]["gpa_mean"] == 45.0 and printed["method_config"]["mask_pool"] == 0.5
    assert vlp(["recipe", "--method", "coop", "--protocol", "base2novel", "--dataset", "colour_shapes"]) == 0
    synth = json.loads(capsys.readouterr().out)
    assert synth["rule"] == "synth" and synth["train"]["epochs"] == 15  # 16 base classes x 16 shots


@pytest.mark.parametrize("method", method_names(trainable=True))
def test_the_bundled_prompts_ran_the_recipe_of_the_results(method):
    """One recipe everywhere: the app's bundled prompts record exactly the recipe the synth rule gives
    their run today (the base-to-novel runs of docs/results use the same), nothing else."""
    folder = ROOT / "assets" / "prompts" / method
    record = json.loads((folder / "run.json").read_text())
    checkpoint = json.loads((folder / "checkpoint.json").read_text())
    clip = load_clip("synth-clip")
    task = make_task(open_dataset(record["dataset"]), record["shots"], record["seed"], record["classes"])
    expected = run_recipe(method, record["recipe"]["protocol"], record["dataset"], record["shots"],
                          len(task.class_names()), rule="synth", trainable=True, device=torch.device("cpu"),
                          shape=ModelShape.of(clip))
    assert record["recipe"] == json.loads(json.dumps(expected.as_dict()))
    assert checkpoint["epochs_run"] == expected.train.epochs
    assert {k: v for k, v in checkpoint["config"].items() if k not in ("seed", "progress")} == record["recipe"]["train"]


def test_the_depth_that_runs_is_the_depth_recorded():
    """The paper rule on a model with fewer blocks than ViT-B/16: the methods clip depth 9 to the tower's
    blocks and GalLoP's k to its patches; the run's recipe records what runs and what was asked."""
    cpu = torch.device("cpu")
    disa = run_recipe("disa", "fewshot", "EuroSAT", 4, 10, rule="paper", trainable=True, device=cpu, shape=SYNTH_CLIP)
    assert (disa.options["text_depth"], disa.options["vision_depth"]) == (4, 6)
    assert disa.as_dict()["clipped"] == {"text_depth": 9, "vision_depth": 9}
    gallop = run_recipe("gallop", "fewshot", "EuroSAT", 4, 10, rule="paper", trainable=True, device=cpu,
                        shape=dataclasses.replace(SYNTH_CLIP, patches=12), options={"topk": [5, 10, 15, 20]})
    assert gallop.options["topk"] == (5, 10, 12, 12) and gallop.clipped == {"topk": [5, 10, 15, 20]}
    paper = run_recipe("disa", "fewshot", "EuroSAT", 4, 10, rule="paper", trainable=True, device=cpu, shape=VIT_B16)
    assert "clipped" not in paper.as_dict() and paper.options["text_depth"] == 9


def test_vlp_recipe_says_what_runs_on_a_smaller_model_and_which_checkpoint_is_scored(capsys):
    assert vlp(["recipe", "--method", "disa", "--protocol", "fewshot", "--dataset", "EuroSAT", "--rule", "paper",
                "--model", "synth-clip"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert (printed["options"]["text_depth"], printed["options"]["vision_depth"]) == (4, 6)
    assert printed["method_config"]["text_depth"] == 4 and printed["clipped"] == {"text_depth": 9, "vision_depth": 9}
    assert printed["notes"] == ["text_depth 9 runs as 4: the model has 4 text blocks",
                                "vision_depth 9 runs as 6: the model has 6 vision blocks"]
    assert printed["checkpoint"] == "GPA aggregate of epochs 1-50"
    assert vlp(["recipe", "--method", "coop", "--protocol", "fewshot", "--dataset", "EuroSAT"]) == 0
    printed = json.loads(capsys.readouterr().out)  # the paper rule's own model: nothing clipped
    assert printed["checkpoint"] == "last epoch" and "notes" not in printed and "clipped" not in printed
