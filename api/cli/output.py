"""What the CLI prints: JSON for scripts, tables and key/value lists for people.

Everything shown comes from the API, and some of it from remote gateways (peer
names, failure reasons, CNs), so control and format characters are escaped
before they reach a terminal. Tables fit ``WIDTH`` columns unless ``--wide``.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import click

WIDTH = 100
_GAP = "  "
_ELLIPSIS = "…"
# Cc: C0/C1 controls (ESC, BEL, CR…); Cf: format (bidi overrides, zero-width);
# Zl/Zp: line and paragraph separators.
_UNSAFE = frozenset({"Cc", "Cf", "Zl", "Zp"})
_TIMESTAMP = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)")


def safe(text: str) -> str:
    """``text`` with every control or format character shown as an escape (``\\x1b``)."""
    if text.isprintable():
        return text
    return "".join(_escape(ch) if unicodedata.category(ch) in _UNSAFE else ch for ch in text)


def _escape(ch: str) -> str:
    code = ord(ch)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


@dataclass(frozen=True)
class Column:
    key: str
    header: str
    # Identifiers (people copy them into the next command) and times: never cut.
    keep: bool = False


def cell(value: Any, *, short_times: bool = True) -> str:
    """One value as table text: ``-`` for none, compact JSON for objects."""
    if value is None:
        return "-"
    if isinstance(value, dict | list):
        return safe(json.dumps(value, sort_keys=True, ensure_ascii=False))
    text = str(value)
    if short_times and (match := _TIMESTAMP.fullmatch(text)):
        zone = "Z" if match.group(3) in ("Z", "+00:00") else match.group(3)
        return match.group(1) + zone
    return safe(text)


def cut(text: str, width: int) -> str:
    """``text`` in at most ``width`` characters, the last one ``…`` when cut."""
    return text if len(text) <= width else text[: max(width - 1, 0)] + _ELLIPSIS


def fit_widths(natural: Sequence[int], minimum: Sequence[int], budget: int) -> list[int]:
    """Shrink the widest shrinkable columns until the row fits ``budget``."""
    widths = list(natural)
    overflow = sum(widths) + len(_GAP) * (len(widths) - 1) - budget
    while overflow > 0:
        candidates = [i for i, w in enumerate(widths) if w > minimum[i]]
        if not candidates:
            break
        widest = max(candidates, key=lambda i: widths[i])
        others = [widths[i] for i in candidates if i != widest]
        # Down to the next widest column (or the minimum), not below what is needed.
        floor = max([minimum[widest], *others]) if others else minimum[widest]
        step = min(overflow, widths[widest] - floor) or 1
        widths[widest] -= step
        overflow -= step
    return widths


def table(rows: Sequence[dict[str, Any]], columns: Sequence[Column], *, wide: bool) -> list[str]:
    """Aligned lines: a header, then one line per row; no trailing spaces."""
    body = [[cell(row.get(c.key), short_times=not wide) for c in columns] for row in rows]
    natural = [max([len(c.header), *(len(r[i]) for r in body)]) for i, c in enumerate(columns)]
    if wide:
        widths = natural
    else:
        minimum = [
            n if c.keep else min(n, max(len(c.header), 6))
            for c, n in zip(columns, natural, strict=True)
        ]
        widths = fit_widths(natural, minimum, WIDTH)
    lines = [[c.header for c in columns], *body]
    return [
        _GAP.join(cut(v, w).ljust(w) for v, w in zip(line, widths, strict=True)).rstrip()
        for line in lines
    ]


def fields(data: dict[str, Any], *, wide: bool) -> list[str]:
    """``key  value`` lines of one object, cut to the width unless ``wide``; a nested
    object gets a line per field (``lifecycle.state``), so none hides behind the cut."""
    data = _flat(data)
    if not data:
        return []
    width = max(len(k) for k in data)
    room = max(WIDTH - width - len(_GAP), 10)
    out = []
    for key, value in data.items():
        text = cell(value, short_times=False)
        out.append(f"{safe(key):<{width}}{_GAP}{text if wide else cut(text, room)}".rstrip())
    return out


def _flat(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict) and value:
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def as_json(data: Any) -> str:
    """Indented, sorted JSON; every control and non-ASCII character a ``\\u`` escape."""
    return json.dumps(data, indent=2, sort_keys=True)


def echo_lines(lines: Sequence[str]) -> None:
    """Print each line (already made safe) to stdout."""
    for line in lines:
        click.echo(line)
