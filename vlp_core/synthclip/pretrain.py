"""Pretraining the bundled small CLIP on SynthWorld (`vlp pretrain-synth`): locked-image tuning.

Two stages, LiT-style (Zhai et al., "LiT: Zero-Shot Transfer with Locked-image text Tuning", 2022):
1. **Image tower** on the world's known factors (`scene_factors`): cosine classifiers on the
   pooled image embedding for the main object's shape, colour, pattern and size, the style, the
   background and which shapes are visible, and the same shape and colour classifiers on every
   patch (output patch tokens and the last block's value-only path), taught by the ground-truth
   object maps. The pooled feature thus carries every factor (headroom for few-shot learning),
   and patch features say what they show (localisation).
2. **Text tower**, contrastive (InfoNCE) against the locked image tower on the stream's captions,
   which name each attribute only some of the time (see `captions.py`): zero-shot transfer,
   imperfect like a real CLIP's.

The model is an ordinary open_clip CLIP (ViT image tower with a convolutional stem, transformer
text tower, the standard tokenizer), so every code path it exercises is the one ViT-B/16 uses.
Scenes whose objects have a held-out (colour, shape) combination never appear, so zero-shot
accuracy on them measures compositional transfer. Resumable: the full training state is saved
every `save_every` steps and a resumed run continues to the same result. Runs on a GPU when one is
present (rendering stays on the CPU).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import open_clip
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import Tensor, nn
from tqdm.auto import tqdm

from vlp_core.backbone import encode_image_prompted
from vlp_core.backbone.conv_stem import install_conv_stem
from vlp_core.backbone.loading import WEIGHTS_FILE
from vlp_core.data.synthworld import ALL_SHAPES, BACKGROUNDS, COLOURS, PATTERNS, SIZES, STYLES, pretraining_batch
from vlp_core.data.synthworld.pretraining import IGNORE
from vlp_core.files import write_atomically, write_text_atomically

SYNTH_MODEL_CFG = {
    "embed_dim": 128,
    "quick_gelu": False,
    "vision_cfg": {"image_size": 64, "layers": 6, "width": 128, "patch_size": 8},
    "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 128, "heads": 2, "layers": 4},
}
# The convolutional stem that replaces the patchify conv (vlp_core/backbone/conv_stem.py): channels
# per stride-2 stage and 3x3 convolutions per stage.
SYNTH_CONV_STEM = (32, 64, 128)
SYNTH_STEM_DEPTH = 2
GRID = SYNTH_MODEL_CFG["vision_cfg"]["image_size"] // SYNTH_MODEL_CFG["vision_cfg"]["patch_size"]
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
PREPROCESS_CFG = {"size": 64, "mode": "RGB", "mean": CLIP_MEAN, "std": CLIP_STD,
                  "interpolation": "bicubic", "resize_mode": "shortest", "fill_color": 0}
STATE_DIR = "pretrain-state"
STAGES = ("image", "text")


@dataclass
class PretrainConfig:
    image_steps: int = 2400
    text_steps: int = 800
    image_batch_size: int = 128
    text_batch_size: int = 256
    lr: float = 1e-3
    image_weight_decay: float = 0.05
    text_weight_decay: float = 0.1
    warmup_steps: int = 100
    seed: int = 0
    save_every: int = 100

    def steps(self, stage: str) -> int:
        return self.image_steps if stage == "image" else self.text_steps

    def batch_size(self, stage: str) -> int:
        return self.image_batch_size if stage == "image" else self.text_batch_size

    def stream_start(self, stage: str, step: int) -> int:
        """Index of the first stream example of `step`: the text stage continues the stream."""
        offset = 0 if stage == "image" else self.image_steps * self.image_batch_size
        return offset + step * self.batch_size(stage)


def pixels_to_tensor(images: np.ndarray) -> Tensor:
    """uint8 (N, H, W, 3) -> CLIP-normalised float (N, 3, H, W)."""
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(255)
    mean = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    return (x - mean) / std


def contrastive_loss(image_features: Tensor, text_features: Tensor, scale: Tensor) -> Tensor:
    """Symmetric InfoNCE over a batch of matching (N, D) image and text features."""
    logits = scale * F.normalize(image_features, dim=-1) @ F.normalize(text_features, dim=-1).T
    targets = torch.arange(logits.shape[0], device=logits.device)
    return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2


class FactorHeads(nn.Module):
    """Cosine classifiers (one shared learned scale) of the world's factors in the joint space.

    The shape and colour classifiers have one extra row, "background", used by the patch targets;
    the pooled embedding is scored against the object rows only.
    """

    def __init__(self, dim: int):
        super().__init__()
        sizes = {"shape": len(ALL_SHAPES) + 1, "colour": len(COLOURS) + 1, "pattern": len(PATTERNS),
                 "size": len(SIZES), "style": len(STYLES), "background": len(BACKGROUNDS)}
        self.weights = nn.ParameterDict({name: nn.Parameter(0.02 * torch.randn(n, dim)) for name, n in sizes.items()})
        self.log_scale = nn.Parameter(torch.tensor(math.log(10.0)))

    def logits(self, features: Tensor, factor: str, with_background: bool = False) -> Tensor:
        """(..., D) features -> (..., K) scaled cosines with the factor's classes."""
        weight = self.weights[factor]
        if factor in ("shape", "colour") and not with_background:
            weight = weight[:-1]
        return self.log_scale.exp() * F.normalize(features, dim=-1) @ F.normalize(weight, dim=-1).T


# Weights of the pooled-feature terms; each dense term has weight 1.
POOLED_WEIGHTS = {"shape": 1.0, "colour": 1.0, "pattern": 1.0, "size": 0.5, "style": 0.5, "background": 0.5}
PRESENT_WEIGHT = 4.0
PRESENT_BIAS = 5.0  # the multi-hot logits are the shape logits minus this (most shapes are absent)


def factor_losses(pooled: Tensor, patches: Tensor, local: Tensor, heads: FactorHeads,
                  factors: dict[str, Tensor]) -> dict[str, Tensor]:
    """Named image-tower loss terms and their sum under "total".

    pooled (B, D); patches and local (B, P, D): output patch tokens and value-only local features;
    factors: `scene_factors` stacked (IGNORE targets are skipped).
    """
    terms = {name: weight * F.cross_entropy(heads.logits(pooled, name), factors[name], ignore_index=IGNORE)
             for name, weight in POOLED_WEIGHTS.items()}
    present_logits = heads.logits(pooled, "shape") - PRESENT_BIAS
    terms["present"] = PRESENT_WEIGHT * F.binary_cross_entropy_with_logits(present_logits, factors["present"])
    for where, features in (("patch", patches), ("local", local)):
        for factor in ("shape", "colour"):
            logits = heads.logits(features, factor, with_background=True)
            terms[f"{where}_{factor}"] = F.cross_entropy(logits.flatten(0, 1), factors[f"patch_{factor}"].flatten(),
                                                         ignore_index=IGNORE)
    terms["total"] = sum(terms.values())
    return terms


def _lr(config: PretrainConfig, stage: str, step: int) -> float:
    """Linear warm-up, then cosine decay to 0 over the stage."""
    steps = config.steps(stage)
    warmup = min(config.warmup_steps, steps)
    if step < warmup:
        return config.lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return 0.5 * config.lr * (1 + math.cos(math.pi * progress))


def _new_model(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return install_conv_stem(open_clip.CLIP(**SYNTH_MODEL_CFG), SYNTH_CONV_STEM, SYNTH_STEM_DEPTH)


def _trained_parameters(model: nn.Module, heads: FactorHeads, stage: str) -> dict[str, nn.Parameter]:
    """The parameters a stage trains, by name: the image tower and heads, or the text side."""
    if stage == "image":
        named = {f"model.{n}": p for n, p in model.visual.named_parameters(prefix="visual")}
        named.update({f"heads.{n}": p for n, p in heads.named_parameters()})
        return named
    return {f"model.{n}": p for n, p in model.named_parameters() if not n.startswith("visual.")}


def _optimizer(named: dict[str, nn.Parameter], weight_decay: float, lr: float) -> torch.optim.AdamW:
    """AdamW; matrices decay, vectors / scalars / embeddings do not."""
    decays = {n: p.ndim >= 2 and "embedding" not in n and not n.startswith("heads.") for n, p in named.items()}
    groups = [{"params": [p for n, p in named.items() if decays[n]], "weight_decay": weight_decay},
              {"params": [p for n, p in named.items() if not decays[n]], "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.98))


def _save_state(state_dir: Path, model: nn.Module, heads: FactorHeads, optimizer_state: dict[str, Tensor],
                stage: str, step: int, config: PretrainConfig, seconds: dict[str, float]) -> None:
    """Model, heads and optimiser tensors (by parameter name) with where to continue, (stage, step),
    and the training seconds spent so far per stage."""
    state_dir.mkdir(parents=True, exist_ok=True)
    tensors = {f"model.{k}": v.contiguous() for k, v in model.state_dict().items()}
    tensors.update({f"heads.{k}": v.contiguous() for k, v in heads.state_dict().items()})
    tensors.update({f"optim.{k}": v.contiguous() for k, v in optimizer_state.items()})
    write_atomically(state_dir / "state.safetensors",
                     lambda temporary: save_file({k: v.cpu() for k, v in tensors.items()}, str(temporary)))
    meta = {"stage": stage, "step": step, "config": asdict(config), "seconds": seconds}
    write_text_atomically(state_dir / "state.json", json.dumps(meta))  # last: it says the state is whole


def _load_state(state_dir: Path, model: nn.Module, heads: FactorHeads, config: PretrainConfig,
                device: torch.device) -> tuple[str, int, dict[str, Tensor], dict[str, float]]:
    """Restore model and heads; -> (stage, step, saved optimiser tensors by name, seconds per stage)."""
    meta = json.loads((state_dir / "state.json").read_text())
    if meta.get("config") != asdict(config):
        raise ValueError(f"cannot resume from {state_dir}: it was started with {meta.get('config')}; "
                         f"use the same settings, or pass --restart to start over")
    tensors = load_file(str(state_dir / "state.safetensors"), device=str(device))
    model.load_state_dict({k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")})
    heads.load_state_dict({k[len("heads."):]: v for k, v in tensors.items() if k.startswith("heads.")})
    optimizer_state = {k[len("optim."):]: v for k, v in tensors.items() if k.startswith("optim.")}
    return meta["stage"], meta["step"], optimizer_state, meta["seconds"]


def _optimizer_tensors(optimizer, named: dict[str, nn.Parameter]) -> dict[str, Tensor]:
    """AdamW's state as "<parameter name>.<key>" -> tensor."""
    names = {id(p): n for n, p in named.items()}
    return {f"{names[id(p)]}.{key}": value for group in optimizer.param_groups for p in group["params"]
            for key, value in optimizer.state.get(p, {}).items()}


def _restore_optimizer(optimizer, named: dict[str, nn.Parameter], saved: dict[str, Tensor]) -> None:
    for name, p in named.items():
        entries = {k.rsplit(".", 1)[1]: v for k, v in saved.items() if k.rsplit(".", 1)[0] == name}
        if entries:  # moments have the parameter's shape, "step" is a scalar
            optimizer.state[p] = {k: v.reshape(()) if k == "step" else v.reshape(p.shape) for k, v in entries.items()}


def _image_step(model: nn.Module, heads: FactorHeads, config: PretrainConfig, step: int,
                device: torch.device) -> dict[str, Tensor]:
    images, _, factors = pretraining_batch(config.stream_start("image", step), config.image_batch_size,
                                           config.seed, grid=GRID)
    targets = {k: torch.from_numpy(v).to(device) for k, v in factors.items()}
    out = encode_image_prompted(model, pixels_to_tensor(images).to(device), patches=True, local=True)
    return factor_losses(out.pooled, out.patches, out.local, heads, targets)


def _text_step(model: nn.Module, tokenizer, config: PretrainConfig, step: int, device: torch.device) -> dict[str, Tensor]:
    images, captions, _ = pretraining_batch(config.stream_start("text", step), config.text_batch_size, config.seed)
    with torch.no_grad():
        image_features = model.encode_image(pixels_to_tensor(images).to(device))
    text_features = model.encode_text(tokenizer(captions).to(device))
    loss = contrastive_loss(image_features, text_features, model.logit_scale.exp().clamp(max=100))
    return {"total": loss}


def pretrain_synth(out_dir: str | Path, config: PretrainConfig = PretrainConfig(), resume: bool = True,
                   progress: bool = True, device: str | torch.device | None = None) -> Path:
    """Train the synthetic CLIP (both stages) and write it as an open_clip `local-dir` model into
    `out_dir`, with `training.json` (config, device, threads, seconds per stage). `device`: default
    cuda when available. Returns the weights path (fp16 safetensors)."""
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    out_dir = Path(out_dir)
    state_dir = out_dir / STATE_DIR
    model = _new_model(config.seed).to(device)
    heads = FactorHeads(SYNTH_MODEL_CFG["embed_dim"]).to(device)
    stage, start, saved, seconds = "image", 0, {}, {name: 0.0 for name in STAGES}
    if resume and (state_dir / "state.json").is_file():
        stage, start, saved, seconds = _load_state(state_dir, model, heads, config, device)
    tokenizer = open_clip.tokenizer.SimpleTokenizer(context_length=SYNTH_MODEL_CFG["text_cfg"]["context_length"])
    for current in STAGES[STAGES.index(stage):]:
        first = start if current == stage else 0
        _train_stage(current, first, saved if current == stage else {}, model, heads, tokenizer, config,
                     state_dir, device, progress, seconds)
    model.eval()
    training = {"config": asdict(config), "device": str(device), "threads": torch.get_num_threads(),
                "seconds": seconds}
    (out_dir / "training.json").write_text(json.dumps(training, indent=2))
    return write_bundle(model, out_dir)


def _train_stage(stage: str, start: int, saved: dict[str, Tensor], model: nn.Module, heads: FactorHeads, tokenizer,
                 config: PretrainConfig, state_dir: Path, device: torch.device, progress: bool,
                 seconds: dict[str, float]) -> None:
    """Steps [start, steps) of one stage, saving the state every `save_every` steps and at its end;
    adds the time spent to `seconds[stage]`."""
    model.train(stage == "image")  # the locked image tower runs in eval mode (BatchNorm statistics fixed)
    named = _trained_parameters(model, heads, stage)
    for p in _trained_parameters(model, heads, "text" if stage == "image" else "image").values():
        p.requires_grad_(False)
    for p in named.values():
        p.requires_grad_(True)
    weight_decay = config.image_weight_decay if stage == "image" else config.text_weight_decay
    optimizer = _optimizer(named, weight_decay, config.lr)
    _restore_optimizer(optimizer, named, saved)
    steps = config.steps(stage)
    bar = tqdm(range(start, steps), initial=start, total=steps, disable=not progress,
               desc=f"pretrain synth-clip: {stage} tower")
    clock = time.perf_counter()
    for step in bar:
        for group in optimizer.param_groups:
            group["lr"] = _lr(config, stage, step)
        if stage == "image":
            terms = _image_step(model, heads, config, step, device)
        else:
            terms = _text_step(model, tokenizer, config, step, device)
        optimizer.zero_grad(set_to_none=True)
        terms["total"].backward()
        optimizer.step()
        bar.set_postfix(loss=f"{terms['total'].item():.3f}")
        if (step + 1) % config.save_every == 0 or step + 1 == steps:
            now = time.perf_counter()
            seconds[stage] += now - clock
            clock = now
            if step + 1 == steps and stage != STAGES[-1]:  # continue with the next stage's first step
                _save_state(state_dir, model, heads, {}, STAGES[STAGES.index(stage) + 1], 0, config, seconds)
            else:
                _save_state(state_dir, model, heads, _optimizer_tensors(optimizer, named), stage, step + 1, config,
                            seconds)


def write_bundle(model: nn.Module, out_dir: Path) -> Path:
    """Save `model` as open_clip's local-dir layout: open_clip_config.json + fp16 safetensors."""
    out_dir.mkdir(parents=True, exist_ok=True)
    config = {"model_cfg": SYNTH_MODEL_CFG, "preprocess_cfg": PREPROCESS_CFG,
              "conv_stem": list(SYNTH_CONV_STEM), "conv_stem_depth": SYNTH_STEM_DEPTH}
    (out_dir / "open_clip_config.json").write_text(json.dumps(config, indent=2))
    weights = {k: v.detach().half().cpu().contiguous() for k, v in model.state_dict().items() if k != "attn_mask"}
    save_file(weights, str(out_dir / WEIGHTS_FILE))
    return out_dir / WEIGHTS_FILE
