"""The frozen CLIP and the six methods the app serves, loaded once at start-up and shared by all users.

Methods carry the class list they were last asked about (`set_classes`), so every use of a method
by a handler happens under `AppModels.lock` and starts by setting that user's class list. Nothing
per-user lives here: each user's image, classes and cached scores are in their own `gr.State`.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from torch import Tensor

from app.inputs import InputError, token_count
from vlp_core.backbone import ClipBundle, FrozenTextFeatures
from vlp_core.data.tasks import PARTS, make_task
from vlp_core.data.synthworld import get_suite, list_suites
from vlp_core.experiments.runs import trained_defaults
from vlp_core.engine.trainer import checkpoint_meta, load_trained
from vlp_core.methods.base import PromptMethod, readable
from vlp_core.methods.interpret import nearest_words, prompt_cosines, token_word
from vlp_core.methods.registry import build_method, method_classes
from vlp_core.methods.templates import TEMPLATE_SETS

METHOD_TITLES: dict[str, str] = {name: cls.title for name, cls in method_classes().items()}
UNTRAINED = "untrained (initial prompts)"
CONTEXT_WORDS = 3  # nearest vocabulary words shown per learned context vector


@dataclass
class AppModels:
    """A frozen CLIP, every method over it, and where each method's prompts came from."""

    bundle: ClipBundle
    methods: dict[str, PromptMethod]
    status: dict[str, str]  # method -> "trained (folder)", "no learned tensors" or UNTRAINED
    frozen_text: FrozenTextFeatures  # the frozen text features every method shares, kept per name
    trained_on: dict[str, str] = field(default_factory=dict)  # trained method -> what its prompts learned
    trained_classes: dict[str, frozenset[str]] = field(default_factory=dict)  # trained method -> its base classes
    trained_tasks: dict[str, str] = field(default_factory=dict)  # trained method -> `training_task`
    notices: list[str] = field(default_factory=list)  # start-up problems worth showing to users
    prompts_dir: Path | None = None
    references: dict = field(default_factory=dict)  # suite -> `app.reference.Reference`, filled on first use
    lock: threading.Lock = field(default_factory=threading.Lock)  # guards every method call

    def seen_by(self, name: str) -> list[str]:
        """The methods whose prompts were trained on class `name` (it is one of their base classes)."""
        key = _class_key(name)
        return [method for method, classes in self.trained_classes.items() if key in classes]

    def class_part(self, name: str) -> str:
        """"base" when every trained method's prompts were trained on class `name`, "novel" when
        none's were, else "base for <methods>" ("—" when no method has trained prompts)."""
        if not self.trained_classes:
            return "—"
        seen = self.seen_by(name)
        if not seen:
            return "novel"
        if len(seen) == len(self.trained_classes):
            return "base"
        return "base for " + ", ".join(METHOD_TITLES[method] for method in seen)

    @property
    def grid(self) -> int:
        """Patches per side of the image tower's patch grid."""
        return int(self.bundle.model.visual.grid_size[0])

    @property
    def num_patches(self) -> int:
        return self.grid * self.grid

    @cached_property
    def context_words(self) -> dict[str, dict[str, list[list[tuple[str, float]]]]]:
        """Per method with learned text contexts, per context ("context", "local 1", ...), per
        position: the CONTEXT_WORDS nearest vocabulary words and their distances
        (`nearest_words`). A constant of the loaded prompts: computed on first use."""
        table, tokenizer = self.bundle.model.token_embedding.weight, self.bundle.tokenizer
        words = {}
        for name, method in self.methods.items():
            contexts = method.text_contexts()
            if contexts:
                words[name] = {}
                for context, vectors in contexts.items():
                    distances, ids = nearest_words(vectors, table, CONTEXT_WORDS)
                    words[name][context] = [[(token_word(tokenizer, i), float(d)) for i, d in zip(row_ids, row)]
                                            for row_ids, row in zip(ids.tolist(), distances.tolist())]
        return words

    @cached_property
    def local_context_cosines(self) -> Tensor:
        """(Ml, Ml) cosines between GalLoP's local prompts' context vectors (a constant of the prompts)."""
        return prompt_cosines(self.methods["gallop"].local_prompts)

    @cached_property
    def name_token_budget(self) -> int:
        """The most tokens a class name may have so that every method's text sequence (learned
        context + name + ".", or the longest frozen template around the name) fits the context
        (a constant of the models: computed once)."""
        tokenizer = self.bundle.tokenizer
        context_tokens = max(getattr(method.config, "n_ctx", 0) for method in self.methods.values()) + 1
        template_tokens = max(token_count(template.format(""), tokenizer)
                              for templates in TEMPLATE_SETS.values() for template in templates)
        return self.bundle.model.context_length - 2 - max(context_tokens, template_tokens)


def load_models(bundle: ClipBundle, prompts_dir: str | Path | None,
                frozen_text: FrozenTextFeatures | None = None) -> AppModels:
    """All methods over `bundle`: trained prompts from `prompts_dir/<method>/` where they load,
    otherwise the method's initial prompts with a notice. Never trains, never raises for a
    missing or unusable checkpoint. `frozen_text`: a cache of frozen text features to share
    (default: a new one)."""
    prompts_dir = Path(prompts_dir) if prompts_dir is not None else None
    frozen_text = frozen_text or FrozenTextFeatures(bundle.model, bundle.tokenizer, keep_per_name=True)
    methods: dict[str, PromptMethod] = {}
    status: dict[str, str] = {}
    trained_on: dict[str, str] = {}
    trained_classes: dict[str, frozenset[str]] = {}
    trained_tasks: dict[str, str] = {}
    notices: list[str] = []
    for name, cls in method_classes().items():
        if not cls.trainable:
            method, status[name] = build_method(name, bundle, frozen_text=frozen_text), "no learned tensors"
        else:
            method, status[name], problem = _load_prompts(name, bundle, frozen_text, prompts_dir)
            if problem:
                notices.append(f"{METHOD_TITLES[name]} is {UNTRAINED}: {problem}")
            else:
                trained_on[name] = describe_training(prompts_dir / name)
                trained_classes[name] = frozenset(_class_key(c) for c in checkpoint_meta(prompts_dir / name)["classes"])
                trained_tasks[name] = training_task(prompts_dir / name)
        methods[name] = method.eval().requires_grad_(False)
    return AppModels(bundle, methods, status, frozen_text, trained_on, trained_classes, trained_tasks, notices,
                     prompts_dir)


def _class_key(name: str) -> str:
    """How class names compare: as the methods read them (`readable`), ignoring case."""
    return readable(name).casefold()


def switch_prompts(models: AppModels, folder: str | None) -> None:
    """Load the prompt checkpoints of `folder` (one sub-folder per method) in place of the
    current ones, for every user, keeping the CLIP and its frozen text features; what the old
    prompts determined (the suites' reference measures, the nearest words) is computed anew on
    first use. Raises InputError when `folder` is no folder."""
    path = Path(folder or "").expanduser()
    if not folder or not path.is_dir():
        raise InputError(f"No folder {folder!r}: give a folder with one `vlp train` checkpoint folder per method "
                         f"(e.g. {Path('assets') / 'prompts'}).")
    fresh = load_models(models.bundle, path, models.frozen_text)
    with models.lock:
        for name in ("methods", "status", "trained_on", "trained_classes", "trained_tasks", "notices", "prompts_dir"):
            setattr(models, name, getattr(fresh, name))
        models.references.clear()
        for cached in ("context_words", "local_context_cosines", "name_token_budget"):
            models.__dict__.pop(cached, None)


def describe_training(folder: Path, shown: int = 4) -> str:
    """What the prompts in `folder` were trained on (`training_task`), its first classes, and the
    shots and seed of its run record (`vlp train` writes one)."""
    names = checkpoint_meta(folder)["classes"]
    listed = f"{len(names)}: " + ", ".join(names[:shown]) + (", …" if len(names) > shown else "")
    record = trained_defaults(folder)
    run = f", {record['shots']} shots, seed {record['seed']}" if "dataset" in record else ""
    return f"{training_task(folder)} ({listed}){run}"


def training_task(folder: Path) -> str:
    """The classes the prompts in `folder` were trained on, in a few words: the checkpoint's own
    class list named as a SynthWorld suite's part where it is one, else its run's dataset."""
    return synth_classes(checkpoint_meta(folder)["classes"]) or trained_defaults(folder).get("dataset", "classes")


def synth_classes(names: list[str]) -> str | None:
    """"<suite> base classes" (or all / novel) when `names` are exactly that part of a SynthWorld
    suite's classes (CoOp's base / novel halves), else None."""
    for suite_name in list_suites():
        task = make_task(get_suite(suite_name), shots=1, seed=1)  # every class has images: any draw splits alike
        for part in PARTS:
            if names == task.class_names(part):
                return f"{suite_name} {part} classes"
    return None


def _load_prompts(name: str, bundle: ClipBundle, frozen_text: FrozenTextFeatures,
                  prompts_dir: Path | None) -> tuple[PromptMethod, str, str]:
    """(method, status, problem): the trained method from `prompts_dir/name`, or the untrained one
    and why the checkpoint could not be used ("" when it was)."""
    if prompts_dir is None:
        return build_method(name, bundle, frozen_text=frozen_text), UNTRAINED, "no prompts folder given"
    folder = prompts_dir / name
    try:
        method = load_trained(folder, bundle, frozen_text)
    except FileNotFoundError:
        problem = f"no checkpoint in {folder} (train one with `vlp train --method {name} --out {folder}`)"
    except (RuntimeError, ValueError, KeyError, TypeError, OSError, json.JSONDecodeError) as error:
        problem = f"the checkpoint in {folder} does not fit model {bundle.name} ({_first_line(error)})"
    else:
        if method.name == name:
            return method, f"trained ({folder})", ""
        problem = f"{folder} holds a {method.name} checkpoint, not {name}"
    return build_method(name, bundle, frozen_text=frozen_text), UNTRAINED, problem


def _first_line(error: Exception) -> str:
    """The first line of an error message, for a one-line notice."""
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0][:200]
