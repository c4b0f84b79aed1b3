"""Contrastive pretraining of the bundled small CLIP on SynthWorld captions (`vlp pretrain-synth`).

The model is an ordinary open_clip CLIP config (ViT image tower, transformer text tower, the
standard tokenizer), so every code path it exercises is the one ViT-B/16 uses. Scenes whose main
object is a held-out (colour, shape) combination never appear in pretraining, so zero-shot
accuracy on them measures transfer. Resumable: the full training state is saved every
`save_every` steps and `resume=True` continues from it to the same result.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import open_clip
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from vlp_core.backbone.conv_stem import install_conv_stem
from vlp_core.backbone.loading import WEIGHTS_FILE
from vlp_core.data.synthworld import pretraining_batch

SYNTH_MODEL_CFG = {
    "embed_dim": 128,
    "quick_gelu": False,
    "vision_cfg": {"image_size": 64, "layers": 6, "width": 128, "patch_size": 8},
    "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 128, "heads": 2, "layers": 4},
}
# Channels of the convolutional stem that replaces the patchify conv (vlp_core/backbone/conv_stem.py).
SYNTH_CONV_STEM = (32, 64, 128)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
PREPROCESS_CFG = {"size": 64, "mode": "RGB", "mean": CLIP_MEAN, "std": CLIP_STD,
                  "interpolation": "bicubic", "resize_mode": "shortest", "fill_color": 0}
STATE_DIR = "pretrain-state"


@dataclass
class PretrainConfig:
    steps: int = 2000
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.1
    warmup_steps: int = 100
    seed: int = 0
    save_every: int = 100


def pixels_to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> CLIP-normalised float (N, 3, H, W)."""
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(255)
    mean = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    return (x - mean) / std


def contrastive_loss(image_features: torch.Tensor, text_features: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE over a batch of matching (N, D) image and text features."""
    logits = scale * F.normalize(image_features, dim=-1) @ F.normalize(text_features, dim=-1).T
    targets = torch.arange(logits.shape[0])
    return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2


def _lr(config: PretrainConfig, step: int) -> float:
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
    return 0.5 * config.lr * (1 + math.cos(math.pi * progress))


def _new_model(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return install_conv_stem(open_clip.CLIP(**SYNTH_MODEL_CFG), SYNTH_CONV_STEM)


def _optimizer(model: torch.nn.Module, config: PretrainConfig) -> torch.optim.AdamW:
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embedding" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "embedding" not in n)]
    return torch.optim.AdamW([{"params": decay, "weight_decay": config.weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=config.lr, betas=(0.9, 0.98))


def _save_state(state_dir: Path, model, optimizer, step: int, config: PretrainConfig) -> None:
    state_dir.mkdir(parents=True, exist_ok=True)
    tensors = {f"model.{k}": v.contiguous() for k, v in model.state_dict().items()}
    names = {id(p): n for n, p in model.named_parameters()}
    for group in optimizer.param_groups:
        for p in group["params"]:
            for key, value in optimizer.state.get(p, {}).items():
                tensors[f"optim.{names[id(p)]}.{key}"] = value.contiguous()
    save_file(tensors, str(state_dir / "state.safetensors.tmp"))
    (state_dir / "state.json.tmp").write_text(json.dumps({"step": step, "config": asdict(config)}))
    os.replace(state_dir / "state.safetensors.tmp", state_dir / "state.safetensors")
    os.replace(state_dir / "state.json.tmp", state_dir / "state.json")


def _load_state(state_dir: Path, model, optimizer, config: PretrainConfig) -> int:
    meta = json.loads((state_dir / "state.json").read_text())
    if meta["config"] != asdict(config):
        raise ValueError(f"cannot resume from {state_dir}: it was started with {meta['config']}; "
                         f"use the same settings or delete that folder")
    tensors = load_file(str(state_dir / "state.safetensors"))
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    for name, p in model.named_parameters():
        entries = {k.rsplit(".", 1)[1]: v for k, v in tensors.items() if k.startswith(f"optim.{name}.")}
        if entries:  # moments have the parameter's shape, "step" is a scalar
            optimizer.state[p] = {k: v.reshape(()) if k == "step" else v.reshape(p.shape) for k, v in entries.items()}
    return meta["step"]


def pretrain_synth(out_dir: str | Path, config: PretrainConfig = PretrainConfig(), resume: bool = True,
                   progress: bool = True) -> Path:
    """Train the synthetic CLIP and write it as an open_clip `local-dir` model into `out_dir`.

    Returns the weights path. The model is saved in fp16 (it loads into fp32).
    """
    out_dir = Path(out_dir)
    state_dir = out_dir / STATE_DIR
    model = _new_model(config.seed)
    model.train()
    optimizer = _optimizer(model, config)
    start = _load_state(state_dir, model, optimizer, config) if resume and (state_dir / "state.json").is_file() else 0
    tokenizer = open_clip.tokenizer.SimpleTokenizer(context_length=SYNTH_MODEL_CFG["text_cfg"]["context_length"])
    bar = tqdm(range(start, config.steps), initial=start, total=config.steps, disable=not progress,
               desc="pretrain synth-clip")
    for step in bar:
        images, captions = pretraining_batch(step * config.batch_size, config.batch_size, config.seed)
        for group in optimizer.param_groups:
            group["lr"] = _lr(config, step)
        image_features = model.encode_image(pixels_to_tensor(images))
        text_features = model.encode_text(tokenizer(captions))
        loss = contrastive_loss(image_features, text_features, model.logit_scale.exp().clamp(max=100))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        bar.set_postfix(loss=f"{loss.item():.3f}", scale=f"{model.logit_scale.exp().item():.1f}")
        if (step + 1) % config.save_every == 0 or step + 1 == config.steps:
            _save_state(state_dir, model, optimizer, step + 1, config)
    return write_bundle(model, out_dir)


def write_bundle(model: torch.nn.Module, out_dir: Path) -> Path:
    """Save `model` as open_clip's local-dir layout: open_clip_config.json + fp16 safetensors."""
    out_dir.mkdir(parents=True, exist_ok=True)
    config = {"model_cfg": SYNTH_MODEL_CFG, "preprocess_cfg": PREPROCESS_CFG, "conv_stem": list(SYNTH_CONV_STEM)}
    (out_dir / "open_clip_config.json").write_text(json.dumps(config, indent=2))
    weights = {k: v.detach().half().contiguous() for k, v in model.state_dict().items() if k != "attn_mask"}
    save_file(weights, str(out_dir / WEIGHTS_FILE))
    return out_dir / WEIGHTS_FILE


CARD_SUITES = ("shapes", "colour_shapes", "patterns", "scenes",
               "shapes@sketch", "shapes@noisy", "shapes@pixelated", "shapes@painted")


# Floors of zero-shot top-1 % that the tests assert (recomputed on 160 test images per suite):
# about two thirds of the measured values, each above chance.
ZERO_SHOT_FLOORS: dict[str, float] = {
    "shapes": 18.0, "colour_shapes": 50.0, "patterns": 11.0, "scenes": 5.5,
    "shapes@sketch": 13.0, "shapes@noisy": 12.0, "shapes@pixelated": 13.0, "shapes@painted": 12.0,
}
HELD_OUT_FLOOR = 45.0  # colour_shapes, held-out combinations among all 32 classes
POINTING_OVER_AREA = 2.0  # output patch tokens on `shapes`: hit rate > this x the object's area
ZERO_SHOT_BAND = (35.0, 85.0)  # zero-shot top-1 % that leaves room for prompt learning


def _band_note(report: dict[str, dict]) -> str:
    """The card's statement of which suites sit outside ZERO_SHOT_BAND."""
    low, high = ZERO_SHOT_BAND
    outside = [f"`{name}` {r['zero_shot']:.1f} % (chance {r['chance']:.1f} %)"
               for name, r in report.items() if not low <= r["zero_shot"] <= high]
    if not outside:
        return f"## Zero-shot band\n\nEvery suite above sits within {low:.0f}-{high:.0f} % zero-shot top-1."
    return (f"## Zero-shot band\n\nOutside {low:.0f}-{high:.0f} % zero-shot top-1: {'; '.join(outside)}. "
            "Prompt learning has to find the missing evidence in the frozen features there.")


def model_card(config: PretrainConfig, report: dict[str, dict], random_report: dict[str, dict], n: int) -> str:
    """MODEL_CARD.md text: training command and data, held-out combinations, measured accuracy."""
    from vlp_core.data.synthworld import DEFAULT_DIFFICULTY, HELD_OUT_COMBOS

    rows = "\n".join(
        f"| `{name}` | {r['classes']} | {r['chance']:.1f} | {r['zero_shot']:.1f} | {ZERO_SHOT_FLOORS[name]:.1f} | "
        f"{r['pointing_hit_rate']:.1f} | {r['pointing_hit_rate_patches']:.1f} | "
        f"{random_report[name]['pointing_hit_rate']:.1f} | {r['object_area']:.1f} |"
        for name, r in report.items()
    )
    cs = report["colour_shapes"]
    held = ", ".join(f"{c} {s}" for c, s in HELD_OUT_COMBOS)
    cfg = SYNTH_MODEL_CFG
    return f"""# synth-clip

A small CLIP (open_clip architecture: ViT image tower, transformer text tower, the standard CLIP
tokenizer) pretrained contrastively on SynthWorld captions. It is the default model of VLP Lab, so
everything runs offline; every code path it exercises is the one ViT-B/16 uses.

- Architecture: ViT {cfg['vision_cfg']['layers']} blocks x width {cfg['vision_cfg']['width']} on a
  {(cfg['vision_cfg']['image_size'] // cfg['vision_cfg']['patch_size'])}x{(cfg['vision_cfg']['image_size'] // cfg['vision_cfg']['patch_size'])} patch grid at {cfg['vision_cfg']['image_size']} px (patch {cfg['vision_cfg']['patch_size']}); the patchify convolution is replaced by a
  convolutional stem ({len(SYNTH_CONV_STEM)} stride-2 3x3 conv + BatchNorm + ReLU blocks with {', '.join(map(str, SYNTH_CONV_STEM))} channels, then a
  1x1 conv; Xiao et al. 2021), named `conv_stem` in `open_clip_config.json`. Text {cfg['text_cfg']['layers']} blocks x width
  {cfg['text_cfg']['width']}, context {cfg['text_cfg']['context_length']}; joint dimension {cfg['embed_dim']}. Weights stored in fp16 (loaded as fp32).
- Training command: `vlp pretrain-synth --steps {config.steps} --batch-size {config.batch_size} --seed {config.seed}`
  (AdamW lr {config.lr}, weight decay {config.weight_decay}, {config.warmup_steps} warm-up steps then cosine;
  {config.steps * config.batch_size:,} image-caption pairs, CPU).
- Data: the SynthWorld pretraining stream (all rendering styles, 1-4 objects, captions from several
  templates that name size, colour, pattern, shape, background, style and neighbours). Half of the
  stream's groups are simple scenes (no distractors, plain or gradient background), half have the
  suites' clutter; objects are rotated by at most {DEFAULT_DIFFICULTY.max_rotation:.0f} degrees.
- Held out of pretraining entirely (never rendered as any object): {held}.
  They are the novel half of the `colour_shapes` suite.

## Measured zero-shot accuracy (template "a photo of a {{}}.", first {n} test images per suite)

| suite | classes | chance % | zero-shot top-1 % | floor asserted by the tests % | pointing hit %, value-only features | pointing hit %, output patch tokens | pointing hit %, random-init model | object area % |
|---|---|---|---|---|---|---|---|---|
{rows}

`colour_shapes`: seen combinations {cs['zero_shot_seen']:.1f} %, held-out combinations {cs['zero_shot_held_out']:.1f} %
(classified among all 32 classes; the tests assert held-out > {HELD_OUT_FLOOR:.0f} %). The tests also assert that on
`shapes` the output patch tokens hit the object more than {POINTING_OVER_AREA:.0f}x as often as a random patch.

Pointing game: the patch whose feature is most similar to the true class's text is a hit if it
touches the ground-truth object mask. "Value-only features" are the last block's value-only path
(each token attending to itself: the MaskCLIP / GL-MCM trick that GalLoP's local prompts use);
"output patch tokens" are `ln_post` + `proj` of the last block's patch outputs (the features DiSa's
saliency compares with the class text). "Object area" is the share of patches that touch the object,
the hit rate of a uniformly random patch; the random-init column (value-only features of a model of
the same architecture with random weights) is a second baseline. It beats the object area by far, and
on `colour_shapes` it beats the trained model too; we have not established why (a pointing bias of
random features towards the image centre, where objects are more likely, is one candidate). Tests
recompute the trained model's numbers on fewer images and assert floors below them.

## Why a convolutional stem and simple scenes

Measured on one CPU core, supervised 12-way shape classification, batches of 64, AdamW lr 1e-3: on
simple upright scenes (plain background, solid large objects) a 4-layer BatchNorm CNN reaches 96 %
training accuracy within 150 steps, while this ViT with open_clip's patchify stem is at 13 % and with
the convolutional stem at 23 %; with the suites' clutter (textured backgrounds, distractors, small
objects) even the CNN is at 19 % after 200 steps. A from-scratch patchify ViT learns shape far too
slowly for a CPU budget, and clutter slows every model down, so the stream mixes simple scenes with
cluttered ones and the ViT gets a convolutional stem. The earlier patchify model trained on the
cluttered stream alone reached 10.5 % zero-shot on `shapes` (chance 8.3 %).

{_band_note(report)}
"""


def write_model_card(out_dir: Path, config: PretrainConfig, n: int = 200) -> dict:
    """Measure the model in `out_dir` on every card suite and write MODEL_CARD.md beside it."""
    from vlp_core.backbone import ClipBundle, load_clip
    from vlp_core.engine.synth_report import synth_report

    bundle = load_clip(str(out_dir))
    report = synth_report(bundle, list(CARD_SUITES), n)
    untrained = ClipBundle(_new_model(config.seed).eval(), bundle.preprocess, bundle.tokenizer, "random-init", None)
    random_report = synth_report(untrained, list(CARD_SUITES), n)
    (out_dir / "MODEL_CARD.md").write_text(model_card(config, report, random_report, n))
    return report
