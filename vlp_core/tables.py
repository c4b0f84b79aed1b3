"""Markdown tables of rows (dicts), for every report the project writes, and wall times in words."""

from __future__ import annotations

from typing import Sequence


def markdown_table(table: Sequence[dict], columns: Sequence[str]) -> str:
    """A markdown table; numeric columns print as "mean ± std" when a std is present."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in table:
        cells = []
        for column in columns:
            value = row.get(column, "")
            if isinstance(value, float):
                std = row.get(f"{column}_std")
                value = f"{value:.1f} ± {std:.1f}" if std else f"{value:.1f}"
            cells.append(str(value))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def duration(seconds: float) -> str:
    """Wall time in words: "42 s", "3 min 5 s", "2 h 10 min"."""
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"
