"""The one list of methods. Each method class registers itself with `@register`; the CLI's choices, the
app's titles and the engine's trainable list are all read from here.

A new method is one new module in `vlp_core/methods/` holding a registered `PromptMethod` subclass:
`method_classes` imports every module of the package, so nothing else has to list it.
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
import types
import typing
from typing import Any, Literal, get_args, get_origin

from vlp_core.backbone import ClipBundle, FrozenTextFeatures
from vlp_core.methods.base import PromptMethod

_REGISTERED: dict[str, type[PromptMethod]] = {}


def register(cls: type[PromptMethod]) -> type[PromptMethod]:
    """Class decorator: add a method class under its `name` (which must be new)."""
    if cls.name in _REGISTERED and _REGISTERED[cls.name] is not cls:
        raise ValueError(f"two methods are named {cls.name!r}: {_REGISTERED[cls.name].__module__} and {cls.__module__}")
    _REGISTERED[cls.name] = cls
    return cls


def method_classes() -> dict[str, type[PromptMethod]]:
    """Every registered method class by name, in their declared `order`."""
    package = importlib.import_module("vlp_core.methods")
    for module in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"{package.__name__}.{module.name}")
    return dict(sorted(_REGISTERED.items(), key=lambda item: item[1].order))


def method_names(trainable: bool | None = None) -> list[str]:
    """Names of all methods, or only of the trainable (True) or untrainable (False) ones."""
    return [name for name, cls in method_classes().items() if trainable in (None, cls.trainable)]


def method_class(name: str) -> type[PromptMethod]:
    """The class of method `name`; a ValueError lists the known names."""
    classes = method_classes()
    if name not in classes:
        raise ValueError(f"unknown method {name!r}; choose from {', '.join(classes)}")
    return classes[name]


def method_config(name: str, options: dict[str, Any] | None = None):
    """The config of method `name` with its paper defaults, overridden by `options`.

    Each option must be a field of the config and fit its declared type (a list is accepted for a
    tuple, an integer for a float); otherwise a ValueError names the option and what it takes.
    """
    config_class = method_class(name).config_class
    hints = typing.get_type_hints(config_class)
    fields = {f.name for f in dataclasses.fields(config_class)}
    unknown = sorted(set(options or {}) - fields)
    if unknown:
        raise ValueError(f"{name} has no option {', '.join(unknown)}; its options are {', '.join(sorted(fields))}")
    values = {}
    for option, value in (options or {}).items():
        converted = _converted(value, hints[option])
        if converted is _MISFIT:
            raise ValueError(f"{name}.{option} takes {_described(hints[option])}, got {value!r}")
        values[option] = converted
    return config_class(**values)


def build_method(name: str, clip: ClipBundle, options: dict[str, Any] | None = None,
                 frozen_text: FrozenTextFeatures | None = None) -> PromptMethod:
    """Method `name` over the frozen `clip`, sharing `frozen_text` (the frozen text-feature cache)."""
    return method_class(name)(clip, method_config(name, options), frozen_text)


_MISFIT = object()


def _converted(value: Any, expected: Any) -> Any:
    """`value` as the type `expected` (a config field's annotation), or `_MISFIT`."""
    origin = get_origin(expected)
    if origin in (typing.Union, types.UnionType):
        for member in get_args(expected):
            converted = _converted(value, member)
            if converted is not _MISFIT:
                return converted
        return _MISFIT
    if origin is Literal:
        return value if value in get_args(expected) else _MISFIT
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            return _MISFIT
        items = [_converted(v, get_args(expected)[0]) for v in value]
        return _MISFIT if _MISFIT in items else tuple(items)
    if expected is type(None):
        return None if value is None else _MISFIT
    if expected is float:
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else _MISFIT
    if expected is int:
        return value if isinstance(value, int) and not isinstance(value, bool) else _MISFIT
    return value if isinstance(value, expected) else _MISFIT


def _described(expected: Any) -> str:
    """What a config field of type `expected` takes, in words."""
    origin = get_origin(expected)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_described(member) for member in get_args(expected))
    if origin is Literal:
        return "one of " + ", ".join(repr(v) for v in get_args(expected))
    if origin is tuple:
        plural = {int: "integers", float: "numbers", str: "strings"}.get(get_args(expected)[0], "values")
        return f"a list of {plural} (e.g. [5,10,15,20])"
    names = {float: "a number", int: "an integer", bool: "true or false", str: "a string", type(None): "null"}
    return names.get(expected, getattr(expected, "__name__", str(expected)))


def evaluated_checkpoint(name: str, options: dict[str, Any] | None, epochs: int) -> str | None:
    """Which learned tensors a run of method `name` with `options`, trained `epochs` epochs, is scored
    with, in words ("last epoch", "GPA aggregate of epochs 1-N"; None for a method that does not train)."""
    return method_class(name).evaluated_checkpoint(method_config(name, options), epochs)
