"""A reader for plain TOML files, the kind ``config.example.toml`` shows, without tomllib.

Why: importing tomllib (typing, datetime, string and its regular expressions) took a one-shot
client command longer than the rest of reading its config (docs/benchmarks.md, "cli").

What it reads: ``[table]`` and ``[table.sub]`` headers; ``key = value`` lines with a bare key
and a value that is a string without escapes (``"..."`` or ``'...'``), a plain integer
(``-12``), a plain decimal (``0.5``), ``true`` or ``false``; blank lines and comments. For
anything else (an array, an inline table, a date, an escape, a dotted or quoted key, a repeated
key or table, a tab, a carriage return, invalid TOML) :func:`loads` returns None and the caller
reads the file with tomllib, which also words every error. So this either gives exactly what
tomllib gives or steps aside: ``tests/test_plain_toml.py`` checks that on generated files,
hostile ones included."""

from __future__ import annotations

import re

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

_KEY = r"[A-Za-z0-9_-]+"
_COMMENT = r"(?:#[^\x00-\x1f\x7f]*)?"
# A string without escapes, a plain integer or decimal, a boolean: one group each.
_SCALAR = (
    r"\"([^\"\\\x00-\x1f\x7f]*)\"|'([^'\x00-\x1f\x7f]*)'"
    r"|(-?(?:0|[1-9][0-9]{0,17})(?:\.[0-9]{1,17})?)|(true|false)"
)
_HEADER = re.compile(rf" *\[({_KEY}(?:\.{_KEY})*)\] *{_COMMENT}")
# key = a scalar, or a one-line array of them (what is inside the brackets checked below).
_PAIR = re.compile(rf" *({_KEY}) *= *(?:{_SCALAR}|\[([^\[\]]*)\]) *{_COMMENT}")
_ITEM = re.compile(rf" *(?:{_SCALAR}) *")
_SKIP = re.compile(rf" *{_COMMENT}")


def _value(basic: str | None, literal: str | None, number: str | None, boolean: str | None) -> Any:
    if basic is not None:
        return basic
    if literal is not None:
        return literal
    if number is not None:
        return float(number) if "." in number else int(number)
    return boolean == "true"


def _array(inside: str) -> list[Any] | None:
    """The items of a one-line array (a trailing comma allowed, as in TOML), or None."""
    items: list[Any] = []
    at, end = 0, len(inside)
    while inside[at:].strip(" "):
        item = _ITEM.match(inside, at)
        if item is None:
            return None
        items.append(_value(*item.groups()))
        at = item.end()
        if at < end:
            if inside[at] != ",":
                return None
            at += 1
    return items


def loads(text: str) -> dict[str, Any] | None:
    """The tables of ``text`` as tomllib would give them, or None: let tomllib read it."""
    if "\r" in text or "\t" in text:
        return None
    root: dict[str, Any] = {}
    table = root
    defined: set[str] = set()  # the tables a header named (naming one twice is an error)
    for line in text.split("\n"):
        pair = _PAIR.fullmatch(line)
        if pair is not None:
            key, *scalar, inside = pair.groups()
            if key in table:
                return None  # a key given twice, or a key and a table of one name
            if inside is None:
                table[key] = _value(*scalar)
                continue
            items = _array(inside)
            if items is None:
                return None
            table[key] = items
            continue
        header = _HEADER.fullmatch(line)
        if header is not None:
            path = header[1]
            if path in defined:
                return None
            defined.add(path)
            table = root
            for part in path.split("."):
                table = table.setdefault(part, {})
                if not isinstance(table, dict):
                    return None  # a value where a table is named
            continue
        if _SKIP.fullmatch(line) is None:
            return None
    return root
