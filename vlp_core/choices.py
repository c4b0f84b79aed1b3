"""One check for a value that must be one of a few choices (a `Literal` type or a tuple)."""

from __future__ import annotations

from typing import Any, get_args


def check_choice(name: str, value: Any, choices: Any) -> None:
    """Raise a ValueError naming `name`, the allowed values and `value` when `value` is not one of
    `choices` (a `Literal[...]` type or a sequence)."""
    allowed = get_args(choices) or tuple(choices)
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, allowed))}, got {value!r}")
