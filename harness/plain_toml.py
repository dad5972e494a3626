"""A reader for plain TOML files, the kind ``config.example.toml`` shows, without tomllib.

Why: importing tomllib (typing, datetime, string and its regular expressions) took a one-shot
client command longer than the rest of reading its config (docs/benchmarks.md, "cli").

What it reads: ``[table]`` and ``[table.sub]`` headers; ``key = value`` lines with a bare key
and a value that is a one-line string (``"..."`` with TOML's escapes, or ``'...'``), a plain
integer (``-12``), a plain decimal (``0.5``), ``true`` or ``false``, or an array of those
(over several lines too, with comments); blank lines and comments. For anything else (an
array of arrays, an inline table, a date, a multi-line string, a dotted or quoted key, a
repeated key or table, a tab, a carriage return, invalid TOML) :func:`loads` returns None and
the caller reads the file with tomllib, which also words every error. So this either gives
exactly what tomllib gives or steps aside: ``tests/test_plain_toml.py`` checks that on
generated files, hostile ones included."""

from __future__ import annotations

import re

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

_KEY = r"[A-Za-z0-9_-]+"
_COMMENT = r"(?:#[^\x00-\x1f\x7f]*)?"
# A string (each backslash one of TOML's escapes), a plain integer or decimal, a boolean: one
# group each.
_SCALAR = re.compile(
    r"\"((?:[^\"\\\x00-\x1f\x7f]|\\[btnfr\"\\]|\\u[0-9A-Fa-f]{4}|\\U[0-9A-Fa-f]{8})*)\""
    r"|'([^'\x00-\x1f\x7f]*)'"
    r"|(-?(?:0|[1-9][0-9]{0,17})(?:\.[0-9]{1,17})?)|(true|false)"
)
_HEADER = re.compile(rf" *\[({_KEY}(?:\.{_KEY})*)\] *{_COMMENT}")
_ASSIGN = re.compile(rf" *({_KEY}) *= *")
_END = re.compile(rf" *{_COMMENT}")  # what may end a line (all of a blank or comment line)


# Compiled on first use (by re's cache): most files have no escape.
_ESCAPE = r"\\(?:([btnfr\"\\])|u([0-9A-Fa-f]{4})|U([0-9A-Fa-f]{8}))"
_ESCAPED = {"b": "\b", "t": "\t", "n": "\n", "f": "\f", "r": "\r", '"': '"', "\\": "\\"}


class _NotPlain(Exception):
    """Something TOML refuses that the patterns let through (a \\u escape of a surrogate)."""


def _unescape(match: re.Match[str]) -> str:
    char, short, long = match.groups()
    if char is not None:
        return _ESCAPED[char]
    code = int(short or long, 16)
    if 0xD800 <= code <= 0xDFFF or code > 0x10FFFF:
        raise _NotPlain  # not a Unicode scalar value: tomllib says so
    return chr(code)


def _scalar(match: re.Match[str]) -> Any:
    basic, literal, number, boolean = match.groups()
    if basic is not None:
        return re.sub(_ESCAPE, _unescape, basic) if "\\" in basic else basic
    if literal is not None:
        return literal
    if number is not None:
        return float(number) if "." in number else int(number)
    return boolean == "true"


def _value(text: str, at: int) -> tuple[Any, int] | None:
    """The value that starts at ``at`` and where it ends: a scalar, or an array of them
    (over several lines, with comments, a trailing comma allowed, as in TOML); None for
    anything else."""
    if not text.startswith("[", at):
        match = _SCALAR.match(text, at)
        return None if match is None else (_scalar(match), match.end())
    items: list[Any] = []
    at += 1
    while True:
        at = _array_space(text, at)
        if text.startswith("]", at):
            return items, at + 1
        match = _SCALAR.match(text, at)
        if match is None:
            return None
        items.append(_scalar(match))
        at = _array_space(text, match.end())
        if text.startswith(",", at):
            at += 1
        elif not text.startswith("]", at):
            return None


def _array_space(text: str, at: int) -> int:
    """Past the spaces, newlines and comments between an array's items."""
    while True:
        while text.startswith((" ", "\n"), at):
            at += 1
        if not text.startswith("#", at):
            return at
        comment = _END.match(text, at)
        assert comment is not None  # _END matches the empty string at least
        at = comment.end()  # at a newline, the end, or a character no comment may hold


def loads(text: str) -> dict[str, Any] | None:
    """The tables of ``text`` as tomllib would give them, or None: let tomllib read it."""
    if "\r" in text or "\t" in text:
        return None
    root: dict[str, Any] = {}
    table = root
    defined: set[str] = set()  # the tables a header named (naming one twice is an error)
    at, size = 0, len(text)
    while at <= size:
        end = text.find("\n", at)
        end = size if end < 0 else end
        assign = _ASSIGN.match(text, at, end)
        if assign is not None:
            key = assign[1]
            try:
                found = _value(text, assign.end())
            except _NotPlain:
                return None
            if found is None:
                return None
            value, at = found
            end = text.find("\n", at)  # the line the value ended on
            end = size if end < 0 else end
            if _END.fullmatch(text, at, end) is None:
                return None
            if key in table:
                return None  # a key given twice, or a key and a table of one name
            table[key] = value
            at = end + 1
            continue
        header = _HEADER.fullmatch(text, at, end)
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
        elif _END.fullmatch(text, at, end) is None:
            return None
        at = end + 1
    return root
