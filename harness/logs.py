"""Logging set-up for the daemon, with a filter that masks every known secret value."""

from __future__ import annotations

import logging
import sys

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
