"""Logging set-up for the daemon, with a filter that masks every known secret value."""

from __future__ import annotations

import json
import logging
import os
import sys
import urllib.parse
from collections.abc import Iterable, Mapping

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


# syslog priorities by logging level, for journald's ``<N>`` line prefix (sd-daemon(3)).
_SYSLOG_PRIORITY = {
    logging.CRITICAL: 2,
    logging.ERROR: 3,
    logging.WARNING: 4,
    logging.INFO: 6,
    logging.DEBUG: 7,
}

# Third-party warnings that say nothing an operator can act on: harness never uses voice.
_QUIET = {
    "discord.client": (
        "PyNaCl is not installed",
        "davey is not installed",
    ),
}


class JournalFormatter(logging.Formatter):
    """``<priority>logger: message``: journald stamps the time itself and keeps the priority,
    so ``journalctl -p warning`` works."""

    def __init__(self) -> None:
        super().__init__("%(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        priority = _SYSLOG_PRIORITY.get(record.levelno)
        if priority is None:
            priority = next((p for lvl, p in _SYSLOG_PRIORITY.items() if record.levelno >= lvl), 7)
        text = super().format(record)
        # Every line of a traceback keeps the record's priority (journald reads each line).
        return "\n".join(f"<{priority}>{line}" for line in text.splitlines())


class QuietThirdParty(logging.Filter):
    """Drop known third-party warnings that do not concern the operator (shown at debug)."""

    def filter(self, record: logging.LogRecord) -> bool:
        prefixes = _QUIET.get(record.name)
        if not prefixes or logging.getLogger().level <= logging.DEBUG:
            return True
        return not str(record.msg).startswith(prefixes)


def journal_stream(env: Mapping[str, str] | None = None, fd: int = 2) -> bool:
    """Whether ``fd`` is the journal stream systemd connected (``$JOURNAL_STREAM`` is
    ``device:inode`` of it); a redirected stderr under systemd is not."""
    value = (os.environ if env is None else env).get("JOURNAL_STREAM", "")
    dev, sep, ino = value.partition(":")
    if not sep or not dev.isdigit() or not ino.isdigit():
        return False
    try:
        st = os.fstat(fd)
    except OSError:
        return False
    return (st.st_dev, st.st_ino) == (int(dev), int(ino))


def setup(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if journal_stream():
        handler.setFormatter(JournalFormatter())
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S")
        )
    handler.addFilter(RedactSecrets())
    handler.addFilter(QuietThirdParty())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # discord.py is chatty at INFO about every gateway step; our plugin reports what matters.
    logging.getLogger("discord").setLevel(max(logging.WARNING, root.level))
