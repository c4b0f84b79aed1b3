"""Markdown tables of rows (dicts), for every report the project writes."""

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
