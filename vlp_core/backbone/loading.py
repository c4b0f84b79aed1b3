"""Loading CLIP: the bundled model, an open_clip name with a pretrained tag, or a local file.

`load_clip` returns a frozen, eval-mode open_clip model with its test preprocessing and tokenizer.
It serves the architectures the prompted forwards can run (`SUPPORTED_VITS` among open_clip's, see
`unsupported_reasons`) and refuses any other before building or downloading it. It never hangs on a
missing download: weights that are neither cached nor reachable raise `WeightsNotFoundError`, which
names the file it looked for and how to pass a local copy.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import warnings
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable
from urllib.parse import urlparse

import open_clip
import torch
from open_clip.model import CLIPTextCfg, CLIPVisionCfg
from open_clip.transform import PreprocessCfg, image_transform_v2
from safetensors.torch import load_file
from torch import nn

from vlp_core.backbone.conv_stem import install_conv_stem

ASSETS_DIR = Path(os.environ.get("VLP_ASSETS", Path(__file__).resolve().parents[2] / "assets"))
CONFIG_DIR = Path(__file__).resolve().parent / "configs"
RANDOM_INIT_MODELS = ("vlp-tiny",)  # registered configs that run with seeded random weights
DEFAULT_MODEL = "synth-clip"
WEIGHTS_FILE = "open_clip_model.safetensors"  # open_clip's weights file name in a local-dir / hub folder
_OPENAI_JIT_KEYS_TO_DROP = ("input_resolution", "context_length", "vocab_size", "attn_mask")
_CUSTOM_BLOCK_OPTIONS = ("qk_norm", "scaled_cosine_attn", "scale_heads", "scale_attn_inner", "scale_attn", "scale_fc")

open_clip.add_model_config(CONFIG_DIR)


class WeightsNotFoundError(FileNotFoundError):
    """CLIP weights are not on this machine and cannot be downloaded now."""


@dataclass
class ClipBundle:
    """A frozen CLIP and what it needs to read images and text."""

    model: nn.Module
    preprocess: Callable  # PIL image -> (3, S, S) float tensor, the test-time transform
    tokenizer: Callable  # list[str] -> (N, L) long tensor
    name: str
    pretrained: str | None

    @property
    def image_size(self) -> int:
        size = self.model.visual.image_size
        return size[0] if isinstance(size, (tuple, list)) else int(size)

    @property
    def image_mean_std(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        cfg = self.model.visual.preprocess_cfg
        return tuple(cfg["mean"]), tuple(cfg["std"])


def bundled_models() -> list[str]:
    """Models that load offline: the ones shipped under `assets/` plus the random-init configs."""
    shipped = sorted(p.parent.name for p in ASSETS_DIR.glob("*/open_clip_config.json"))
    return shipped + list(RANDOM_INIT_MODELS)


def load_clip(
    model: str = DEFAULT_MODEL,
    pretrained: str | None = None,
    device: str | torch.device = "cpu",
    seed: int = 0,
) -> ClipBundle:
    """Load a frozen CLIP.

    - `model` names a bundled model (`bundled_models()`) or a folder in open_clip's local-dir layout
      (`open_clip_config.json` + weights; `pretrained` is ignored for both), or any open_clip
      architecture (`open_clip.list_models()`), e.g. "ViT-B-16-quickgelu".
    - `pretrained` is an open_clip tag ("openai", "laion2b_s34b_b88k", ...) or the path of a local
      checkpoint: safetensors, a torch state dict, or OpenAI's TorchScript `.pt` file.
    - `seed` seeds the random weights of a random-init config (and nothing else).
    OpenAI weights always get QuickGELU, which they were trained with. An architecture that the
    prompted forwards cannot run raises a ValueError that says why (`unsupported_reasons`).
    """
    model_dir = _model_dir(model)
    config = _architecture(model, model_dir)
    if config is not None:  # checked before anything is built or downloaded
        _check_supported(config, model)
    if model_dir is not None:
        clip = _load_model_dir(model_dir)
        pretrained = "bundled" if model_dir.parent == ASSETS_DIR else str(model_dir)
    elif model in RANDOM_INIT_MODELS and pretrained is None:
        with torch.random.fork_rng(devices=[]), _quiet_logging():
            torch.manual_seed(seed)
            clip = open_clip.create_model(model, device="cpu")
    else:
        clip = _load_open_clip(model, pretrained)
    clip = clip.to(device).eval().requires_grad_(False)
    preprocess = image_transform_v2(PreprocessCfg(**clip.visual.preprocess_cfg), is_train=False)
    tokenizer = open_clip.get_tokenizer(f"local-dir:{model_dir}" if model_dir is not None else model)
    return ClipBundle(clip, preprocess, tokenizer, model, pretrained)


def unsupported_reasons(config: dict) -> list[str]:
    """Why the prompted forwards cannot run the open_clip model config `config` (a `model_cfg`, with
    "vision_cfg" and "text_cfg"); an empty list when they can.

    They run open_clip's own modules block by block (`prompted.py`), so they need
    - image tower: open_clip's `VisionTransformer` of `ResidualAttentionBlock`s, pooled at its
      class token (after `ln_post`, times `proj`), returning the pooled feature alone;
    - text tower: the `TextTransformer` that `CLIP` itself holds, of `ResidualAttentionBlock`s,
      read at the end-of-text token (pool type "argmax"), projected by a matrix, with CLIP's
      tokenizer (the learned context follows its start-of-text token; its end-of-text token has
      the largest id). The context length, vocabulary, widths, heads and causal mask are free.
    Unset fields take open_clip's defaults (`CLIPVisionCfg`, `CLIPTextCfg`).
    """
    vision = CLIPVisionCfg(**config["vision_cfg"])
    text = CLIPTextCfg(**config.get("text_cfg", {}))
    return _image_tower_reasons(vision) + _text_tower_reasons(text, config)


def _image_tower_reasons(vision: CLIPVisionCfg) -> list[str]:
    """Why an image tower config is not a ViT that the prompted image forward runs (none if it is)."""
    if vision.timm_model_name:
        return [f"its image tower is timm's {vision.timm_model_name}, not open_clip's VisionTransformer"]
    if isinstance(vision.layers, (tuple, list)):
        return ["it has a ModifiedResNet image tower (a ResNet), not a ViT"]
    reasons = []
    if vision.attentional_pool:
        reasons.append("its image tower uses attentional pooling, not the class token")
    elif vision.pool_type != "tok":
        reasons.append(f"its image tower uses {vision.pool_type!r} pooling, not the class token")
    if vision.output_tokens:
        reasons.append("its image tower returns its patch tokens with the pooled feature (output_tokens)")
    return reasons + _custom_block_reasons(vision, "image")


def _text_tower_reasons(text: CLIPTextCfg, config: dict) -> list[str]:
    """Why a text tower config is not one that the prompted text forward runs (none if it is)."""
    if "multimodal_cfg" in config:
        return ["it is a CoCa model (a text decoder, a text tower with its own class token), not CLIP"]
    if text.hf_model_name:
        return [f"its text tower is the Hugging Face model {text.hf_model_name}, not CLIP's TextTransformer"]
    if config.get("custom_text"):
        return ["its text tower is a separate module (custom_text), not the TextTransformer that CLIP holds"]
    reasons = []
    if text.hf_tokenizer_name:
        reasons.append(f"its tokenizer is Hugging Face's {text.hf_tokenizer_name}, not CLIP's, whose start- and "
                       f"end-of-text tokens frame the learned context")
    if text.pool_type != "argmax":
        reasons.append(f"its text tower pools {text.pool_type!r}, not 'argmax' (CLIP's end-of-text token)")
    if text.proj_type == "none" or text.proj_bias:
        absent = text.proj_type == "none"
        reasons.append(f"its text projection is {'absent' if absent else 'a linear layer with a bias'}, not a matrix")
    return reasons + _custom_block_reasons(text, "text")


def _custom_block_reasons(tower: CLIPVisionCfg | CLIPTextCfg, name: str) -> list[str]:
    """Why a tower's blocks are not open_clip's `ResidualAttentionBlock` (none if they are)."""
    options = [option for option in _CUSTOM_BLOCK_OPTIONS if getattr(tower, option)]
    if tower.block_type not in (None, "default") or options:
        return [f"its {name} tower uses open_clip's CustomResidualAttentionBlock "
                f"({', '.join(options) or f'block_type {tower.block_type!r}'}), not ResidualAttentionBlock"]
    return []


def _check_supported(config: dict, model: str) -> None:
    """Refuse a model the prompted forwards cannot run, saying why and what to use instead."""
    reasons = unsupported_reasons(config)
    if reasons:
        raise ValueError(
            f"{model} cannot be prompted: {'; '.join(reasons)}. The methods run an open_clip ViT pooled at its "
            f"class token and CLIP's text tower: use one of {', '.join(SUPPORTED_VITS)} "
            f"(e.g. ViT-B-16-quickgelu, OpenAI's ViT-B/16)."
        )


def _architecture(model: str, model_dir: Path | None) -> dict | None:
    """The open_clip model config of a model folder or a registered name; None for an unknown name."""
    if model_dir is not None:
        return json.loads((model_dir / "open_clip_config.json").read_text()).get("model_cfg")
    return open_clip.get_model_config(model)


# open_clip's architectures that the prompted forwards run (the project's own configs left out)
SUPPORTED_VITS = tuple(name for name in open_clip.list_models()
                       if name not in RANDOM_INIT_MODELS and not unsupported_reasons(open_clip.get_model_config(name)))


@contextmanager
def _quiet_logging():
    """Silence open_clip's 'initialized randomly' warning where random weights are the intent."""
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)


def _model_dir(model: str) -> Path | None:
    """The folder of a bundled model name, or `model` itself if it is such a folder."""
    for candidate in (ASSETS_DIR / model, Path(model).expanduser()):
        if (candidate / "open_clip_config.json").is_file():
            return candidate
    return None


def _load_model_dir(model_dir: Path) -> nn.Module:
    """An open_clip local-dir model; a `"conv_stem"` entry of its config (channels per stage, and
    `"conv_stem_depth"` convolutions per stage, default 1) replaces the patchify stem."""
    config = json.loads((model_dir / "open_clip_config.json").read_text())
    if "conv_stem" not in config:
        return open_clip.create_model(f"local-dir:{model_dir}", device="cpu")
    with _quiet_logging():
        clip = open_clip.create_model(f"local-dir:{model_dir}", device="cpu", load_weights=False)
    install_conv_stem(clip, config["conv_stem"], config.get("conv_stem_depth", 1))
    weights = model_dir / WEIGHTS_FILE
    if not weights.is_file():
        raise WeightsNotFoundError(f"{model_dir} has an open_clip_config.json but no weights: expected {weights}")
    clip.load_state_dict(load_file(str(weights)), strict=True)
    return clip


def _load_open_clip(model: str, pretrained: str | None) -> nn.Module:
    if model == DEFAULT_MODEL:
        raise WeightsNotFoundError(
            f"the bundled model {DEFAULT_MODEL} is not in {ASSETS_DIR / DEFAULT_MODEL}: it ships with the "
            f"repository, not the package. Install from a clone with `pip install -e .`, or point the "
            f"VLP_ASSETS environment variable at a copy of the repository's assets/ folder."
        )
    if model not in open_clip.list_models():
        raise ValueError(
            f"Unknown model {model!r}. Use a bundled model ({', '.join(bundled_models())}) or an "
            f"open_clip architecture such as 'ViT-B-16-quickgelu' (see open_clip.list_models())."
        )
    if pretrained is None:
        with _quiet_logging():
            return open_clip.create_model(model, device="cpu")
    tag_cfg = open_clip.get_pretrained_cfg(model, pretrained)
    if tag_cfg:
        return _load_tag(model, pretrained, tag_cfg)
    return _load_file(model, Path(pretrained).expanduser())


def _load_tag(model: str, tag: str, tag_cfg: dict) -> nn.Module:
    """Weights of a known open_clip tag: from the local caches, else downloaded if reachable."""
    quick_gelu = bool(tag_cfg.get("quick_gelu", False))
    cached = _cached_weights(tag_cfg)
    if cached is not None:
        return _create_with_weights(model, cached, quick_gelu)
    candidates = _weight_locations(tag_cfg)
    if not any(_reachable(host) for host, _ in candidates):
        looked = "\n".join(f"  - {where}" for _, where in candidates)
        raise WeightsNotFoundError(
            f"CLIP weights for {model} / {tag} are not on this machine and the network is unreachable.\n"
            f"Looked for:\n{looked}\n"
            f"Fix: download that file on a machine with network access, copy it here and pass its path, "
            f"e.g. `--model {model} --pretrained /path/to/weights` "
            f"(in Python: load_clip({model!r}, pretrained='/path/to/weights'))."
        )
    return open_clip.create_model(model, pretrained=tag, force_quick_gelu=quick_gelu, device="cpu")


def _weight_locations(tag_cfg: dict) -> list[tuple[str, str]]:
    """(host, human-readable location) of every place a tag's weights may come from."""
    places = []
    if tag_cfg.get("hf_hub"):
        repo, filename = os.path.split(tag_cfg["hf_hub"])
        places.append(("huggingface.co", f"Hugging Face {repo}/{filename or 'open_clip_pytorch_model.bin'} "
                                         f"(cache: {_hf_cache_dir()})"))
    if tag_cfg.get("url"):
        url = tag_cfg["url"]
        cache = Path("~/.cache/clip").expanduser() / os.path.basename(url)
        places.append((urlparse(url).hostname or "", f"{url} (cache: {cache})"))
    return places


def _hf_cache_dir() -> str:
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)


def _cached_weights(tag_cfg: dict) -> Path | None:
    """The local file of a tag's weights, if a previous download left one in a cache."""
    from huggingface_hub import try_to_load_from_cache

    if tag_cfg.get("hf_hub"):
        repo, filename = os.path.split(tag_cfg["hf_hub"])
        filename = filename or "open_clip_pytorch_model.bin"
        stem = filename.rsplit(".", 1)[0]
        for candidate in (f"{stem}.safetensors", WEIGHTS_FILE, filename):
            found = try_to_load_from_cache(repo, candidate)
            if isinstance(found, str):
                return Path(found)
    if tag_cfg.get("url"):
        path = Path("~/.cache/clip").expanduser() / os.path.basename(tag_cfg["url"])
        if path.is_file():
            return path
    return None


def _reachable(host: str, timeout: float = 3.0) -> bool:
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def _load_file(model: str, path: Path) -> nn.Module:
    if not path.is_file():
        raise WeightsNotFoundError(
            f"No checkpoint at {path} (for model {model}). Pass an existing file: a .safetensors file, "
            f"a torch state dict (.pt/.pth/.bin) or OpenAI's TorchScript .pt, e.g. "
            f"`--model {model} --pretrained /path/to/ViT-B-16.pt`, or an open_clip tag "
            f"({', '.join(open_clip.list_pretrained_tags_by_model(model)) or 'none for this model'})."
        )
    if _is_torchscript_archive(path):
        return _create_from_openai_jit(model, path)
    return _create_with_weights(model, path, quick_gelu=False)


def _is_torchscript_archive(path: Path) -> bool:
    """OpenAI's `.pt` files are TorchScript zip archives with a `code/` folder."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any("/code/" in name for name in archive.namelist())


def _create_from_openai_jit(model: str, path: Path) -> nn.Module:
    """Read the weights out of an OpenAI TorchScript archive (no unpickling) into `model` + QuickGELU."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch marks TorchScript deprecated
        state = torch.jit.load(str(path), map_location="cpu").state_dict()
    for key in _OPENAI_JIT_KEYS_TO_DROP:
        state.pop(key, None)
    clip = open_clip.create_model(model, force_quick_gelu=True, device="cpu")
    clip.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)
    return clip


def _create_with_weights(model: str, path: Path, quick_gelu: bool) -> nn.Module:
    """Build `model` and load a safetensors file or a weights-only torch state dict into it."""
    return open_clip.create_model(
        model, pretrained=str(path), force_quick_gelu=quick_gelu, device="cpu", weights_only=True
    )
