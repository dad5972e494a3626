"""Plugin settings: validation against a schema, layering of defaults, and redaction of secrets."""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Mapping
from typing import Any

from harness.protocol import MAX_SECRET_SETTING, MAX_STRING_SETTING, SettingField, clip

MAX_REPORTED = 10  # unknown keys named in one error


class SettingsError(Exception):
    """Per-field problems, ``{field: message}``; nothing was applied."""

    def __init__(self, errors: dict[str, str]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))


def kind(value: Any) -> str:
    """What a value is, in the words of a TOML file or a form (not Python's type names: a
    config file's reader never wrote a ``str``). Never the value itself: it may be a secret."""
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int):
        return "a whole number"
    if isinstance(value, float):
        return "a number with a fraction"
    if isinstance(value, str):
        return "text"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, Mapping):
        return "a table"
    return "nothing" if value is None else type(value).__name__


def check_value(field: SettingField, value: Any) -> str | None:
    """Why ``value`` does not fit ``field``, or None when it does."""
    t = field.type
    if t in ("string", "secret", "select"):
        if not isinstance(value, str):
            if field.keywords and isinstance(value, int) and not isinstance(value, bool):
                # `shards = 4` in TOML: the field is a word or a number, so it is kept as text.
                return f'expected text, got a whole number: write it in quotes, "{value}"'
            return f"expected text, got {kind(value)}"
        limit = max_length(field)
        if len(value) > limit:
            return f"too long: {len(value)} characters; at most {limit}"
        if field.required and not value.strip():
            return "required; must not be empty"
        if t == "secret" and (problem := _token_problem(value)) is not None:
            return problem
        if t == "select" and value not in field.options:
            return f"must be one of: {', '.join(field.options)}"
        if t == "string" and field.keywords:
            return _keyword_problem(field, value)
        return None
    if t == "integer":
        if isinstance(value, bool) or not isinstance(value, int):
            return f"expected a whole number, got {kind(value)}"
        if field.minimum is not None and value < field.minimum:
            return f"must be at least {field.minimum}"
        if field.maximum is not None and value > field.maximum:
            return f"must be at most {field.maximum}"
        return None
    if t == "boolean":
        if not isinstance(value, bool):
            return f"expected true or false, got {kind(value)}"
        return None
    return f"unknown field type {t!r}"


def _keyword_problem(field: SettingField, value: str) -> str | None:
    """A keyword string (SettingField.keywords): one of the words, or a whole number in range."""
    text = value.strip().lower()
    if text in (k.lower() for k in field.keywords):
        return None
    ranged = field.minimum is not None or field.maximum is not None
    words = " or ".join(field.keywords) if not ranged else ", ".join(field.keywords)
    if ranged:
        lo = field.minimum if field.minimum is not None else "any"
        hi = field.maximum if field.maximum is not None else "any"
        expected = f"must be {words} or a whole number from {lo} to {hi}"
        digits = text.removeprefix("-")
        # ASCII digits only: int() would also read "1_0" as 10, "+4" or a non-Latin digit.
        if not (digits.isascii() and digits.isdigit()):
            return f"{expected}; got {clip(value)!r}"
        number = int(text)
        if (field.minimum is not None and number < field.minimum) or (
            field.maximum is not None and number > field.maximum
        ):
            return f"{expected}; got {number}"
        return None
    return f"must be {words}; got {clip(value)!r}"


def max_length(field: SettingField) -> int:
    """How many characters a text setting may have: the schema's bound, else the default."""
    if field.max_length is not None:
        return field.max_length
    return MAX_SECRET_SETTING if field.type == "secret" else MAX_STRING_SETTING


def _token_problem(value: str) -> str | None:
    """A secret is a token or key: whitespace or a control character in it is a paste gone
    wrong (a newline, a tab), and a library would send it on and fail obscurely. The message
    names the character and where, never the value."""
    for i, ch in enumerate(value):
        if ch.isspace() or unicodedata.category(ch).startswith("C"):
            kind = "whitespace" if ch.isspace() else "an unprintable character"
            return (
                f"contains {kind} (U+{ord(ch):04X}) at position {i + 1}; a token has none — "
                "check what was pasted"
            )
    return None


def validate(schema: Iterable[SettingField], values: Mapping[str, Any]) -> None:
    """Check a set of values (``None`` means "unset"); raise SettingsError naming each field."""
    fields = {f.name: f for f in schema}
    errors: dict[str, str] = {}
    unknown = 0
    for key, value in values.items():
        field = fields.get(key)
        if field is None:
            # Names are the client's: cut, and only the first few listed, so the error frame
            # stays small whatever was sent.
            unknown += 1
            if unknown <= MAX_REPORTED:
                errors[clip(key)] = "unknown setting" + (
                    f"; known: {', '.join(fields)}" if fields else "; this plugin has no settings"
                )
        elif value is not None and (problem := check_value(field, value)) is not None:
            errors[key] = problem
    if unknown > MAX_REPORTED:
        errors["…"] = f"{unknown - MAX_REPORTED} more unknown settings not listed"
    if errors:
        raise SettingsError(errors)


def effective(schema: Iterable[SettingField], *layers: Mapping[str, Any]) -> dict[str, Any]:
    """Schema defaults, overlaid by each layer in turn (config table, then stored settings)."""
    result = {f.name: f.default for f in schema}
    for layer in layers:
        result.update({k: v for k, v in layer.items() if k in result and v is not None})
    return result


def public(schema: Iterable[SettingField], values: Mapping[str, Any]) -> dict[str, Any]:
    """Values safe to send anywhere: a secret becomes ``{"set": bool}``."""
    out: dict[str, Any] = {}
    for f in schema:
        v = values.get(f.name)
        out[f.name] = {"set": bool(v)} if f.type == "secret" else v
    return out


def secret_values(schema: Iterable[SettingField], *layers: Mapping[str, Any]) -> set[str]:
    names = {f.name for f in schema if f.type == "secret"}
    return {str(v) for layer in layers for k, v in layer.items() if k in names and v}
