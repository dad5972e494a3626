"""Logging set-up for the daemon, with a filter that masks every known secret value."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping

_secrets: set[str] = set()


def add_secrets(values: set[str]) -> None:
    """Mask these values wherever they would appear in a log line from now on."""
    _secrets.update(v for v in values if len(v) >= 4)


class RedactSecrets(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if _secrets:
            message = record.getMessage()
            if any(s in message for s in _secrets):
                for s in _secrets:
                    message = message.replace(s, "***")
                record.msg, record.args = message, None
            # The traceback too; another handler may already have formatted it into exc_text.
            text = record.exc_text
            if not text and record.exc_info:
                text = logging.Formatter().formatException(record.exc_info)
            if text:
                for s in _secrets:
                    text = text.replace(s, "***")
                record.exc_text = text
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
