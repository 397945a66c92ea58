"""Tables for results in a notebook (``_repr_html_``) and a terminal (``repr``): pure functions
of rows, with every cell escaped."""

from __future__ import annotations

import html
import time
from collections.abc import Sequence
from typing import Any

__all__ = ["fmt", "html_table", "text_table", "when"]

MAX_TEXT_CELL = 60  # a repr stays readable in a terminal; the HTML table wraps instead of cutting


def fmt(value: Any, digits: int = 4) -> str:
    """A cell: floats to ``digits`` significant digits, None as ``-``."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def when(ts: float | None) -> str:
    """A timestamp in local time, to the second."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) if ts else "-"


def html_table(header: Sequence[str], rows: Sequence[Sequence[Any]], *, caption: str | None = None) -> str:
    head = "".join(f"<th style='text-align:left'>{html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td style='text-align:left;vertical-align:top'>{html.escape(fmt(c))}</td>" for c in row)
        + "</tr>" for row in rows)
    cap = f"<caption style='text-align:left'><b>{html.escape(caption)}</b></caption>" if caption else ""
    return f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _cut(text: str) -> str:
    return text if len(text) <= MAX_TEXT_CELL else text[: MAX_TEXT_CELL - 1] + "…"


def text_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Columns padded to their widest cell; a long cell ends with ``…`` (the HTML table has it all)."""
    cells = [[_cut(fmt(c).replace("\n", " ")) for c in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    return "\n".join(lines)
