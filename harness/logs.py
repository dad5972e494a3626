"""Logging set-up for the daemon, with a filter that masks every known secret value."""

from __future__ import annotations

import json
import logging
import sys
import urllib.parse
from collections.abc import Iterable

MASK = "***"
_secrets: set[str] = set()
_forms: list[str] = []  # every spelling of every secret, longest first


def secret_forms(value: str) -> set[str]:
    """The spellings a secret can take on its way into a log line or an error: raw, inside a
    JSON string (both escapings), inside a ``repr``, and URL-encoded (path and form style).
    A token with ``"`` or ``\\`` looks different in each, and a mask that knows only the raw
    form lets the others through."""
    forms = {
        value,
        json.dumps(value)[1:-1],
        json.dumps(value, ensure_ascii=False)[1:-1],
        repr(value)[1:-1],
        urllib.parse.quote(value, safe=""),
        urllib.parse.quote(value),
        urllib.parse.quote_plus(value),
    }
    return {f for f in forms if len(f) >= 4}


def add_secrets(values: Iterable[str]) -> None:
    """Mask these values, in every form, wherever they would appear in a log line from now on."""
    global _forms
    new = {v for v in values if len(v) >= 4} - _secrets
    if not new:
        return
    _secrets.update(new)
    forms = set(_forms)
    for value in new:
        forms |= secret_forms(value)
    # Longest first: a form that contains another is masked whole, not half.
    _forms = sorted(forms, key=len, reverse=True)


def mask(text: str) -> str:
    """``text`` with every known secret, in any of its forms, replaced by ``***``."""
    for form in _forms:
        if form in text:
            text = text.replace(form, MASK)
    return text


class RedactSecrets(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if _forms:
            message = record.getMessage()
            masked = mask(message)
            if masked != message:
                record.msg, record.args = masked, None
            # The traceback too; another handler may already have formatted it into exc_text.
            text = record.exc_text
            if not text and record.exc_info:
                text = logging.Formatter().formatException(record.exc_info)
            if text:
                record.exc_text = mask(text)
            if record.stack_info:
                record.stack_info = mask(record.stack_info)
        return True


def setup(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S")
    )
    handler.addFilter(RedactSecrets())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # discord.py is chatty at INFO about every gateway step; our plugin reports what matters.
    logging.getLogger("discord").setLevel(max(logging.WARNING, root.level))
