"""What a client command reads of the config file, checked without the daemon's checks.

A client command (``harness status``, ``events``, ``plugins``, ``alerts``, ``silence``,
``context``, ``dial-stdio``) needs the daemon's socket and, when a context is in use, the
``[contexts]`` tables. It reads and checks only those: that the file is TOML, that its
top-level tables are ones harness knows (a misspelt ``[deamon]`` would otherwise send the
command to the default socket without a word), that the keys of ``[daemon]`` are known ones,
that ``daemon.socket`` is text and that ``[contexts]`` is a table of tables (each context is
then checked by :mod:`harness.contexts` when one is looked up). Each problem is reported with
the same words as :func:`harness.config.load`, exit 2.

The rest of the file (``[alerts]``, ``[plugins.*]``, ``[metrics]``, the other values of
``[daemon]``) is the daemon's: ``harness run`` and ``harness config`` check all of it, and a
mistake there no longer stops a client command. Why: checking it all imported msgspec, the
alert rules and the settings checks, and made ``harness status --config FILE`` take three
times as long as the request itself (docs/benchmarks.md, "cli").

Stdlib only (tomllib); ``tests/test_cli_fast.py`` fails if this path imports msgspec, the
alerts or :mod:`harness.config`."""

from __future__ import annotations

import os
import re
from pathlib import Path

from harness.config_paths import ConfigError, beside, default_database, default_socket, locate

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# The top-level tables of harness.config.Config and the keys of its DaemonConfig (a test
# keeps these equal to the structs' fields).
SECTIONS = ("daemon", "metrics", "plugins", "alerts", "contexts")
DAEMON_KEYS = (
    "socket",
    "database",
    "log_level",
    "stop_timeout",
    "event_retention_days",
    "event_retention_max",
    "client_queue_frames",
    "max_clients",
)


class ClientConfig:
    """The parts of the config a client uses: ``[daemon].socket``, ``[daemon].database`` (the
    TUI shows the stored state from it while its own daemon is down) and ``[contexts]`` (the
    tables as read; :func:`harness.contexts.parse_contexts` checks each one)."""

    __slots__ = ("contexts", "database", "socket", "source")

    def __init__(
        self,
        *,
        socket: str = "",
        database: str = "",
        contexts: dict[str, dict[str, Any]] | None = None,
        source: str = "",
    ) -> None:
        self.socket = socket
        self.database = database
        self.contexts = contexts or {}
        self.source = source

    @property
    def socket_path(self) -> Path:
        """As :attr:`harness.config.Config.socket_path`."""
        return Path(self.socket).expanduser() if self.socket else default_socket()

    @property
    def database_path(self) -> Path:
        """As :attr:`harness.config.Config.database_path`."""
        return Path(self.database).expanduser() if self.database else default_database()


def load(path: str | os.PathLike[str] | None = None) -> ClientConfig:
    """The client's part of ``path``, else ``$HARNESS_CONFIG``, else the user config file if
    there is one, else the defaults. Raises ConfigError for a problem in that part."""
    file, _origin = locate(path)
    if file is None:
        return ClientConfig()
    data = read_toml(file)
    for key in data:
        if key not in SECTIONS:
            raise ConfigError(f"{file}: {key}: unknown key")
    daemon = data.get("daemon", {})
    if not isinstance(daemon, dict):
        raise ConfigError(f"{file}: daemon: {expected('object', daemon)}")
    for key in daemon:
        if key not in DAEMON_KEYS:
            raise ConfigError(f"{file}: daemon.{key}: unknown key")
    socket = daemon.get("socket", "")
    if not isinstance(socket, str):
        raise ConfigError(f"{file}: daemon.socket: {expected('str', socket)}")
    database = daemon.get("database", "")
    if not isinstance(database, str):
        raise ConfigError(f"{file}: daemon.database: {expected('str', database)}")
    contexts = data.get("contexts", {})
    if not isinstance(contexts, dict):
        raise ConfigError(f"{file}: contexts: {expected('object', contexts)}")
    for name, table in contexts.items():
        if not isinstance(table, dict):  # named as the file has it, as harness.config does
            got = expected("object", table).split(", got ", 1)[1]
            raise ConfigError(
                f"{file}: contexts.{name}: expected a table ([contexts.{name}] with host or "
                f"socket), got {got}"
            )
    # Relative paths are the file's, as the daemon reads them (harness.config_paths.beside).
    return ClientConfig(
        socket=beside(socket, file),
        database=beside(database, file),
        contexts=contexts,
        source=str(file),
    )


def read_toml(file: Path) -> dict[str, Any]:
    """The TOML tables of ``file`` as read; ConfigError if it cannot be read or is not TOML.
    A plain file is read without importing tomllib (:mod:`harness.plain_toml`, which gives
    the same tables or steps aside); tomllib reads the rest and words every error."""
    from harness import plain_toml

    try:
        raw = file.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read the config file: {exc.strerror}") from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{file}: not valid TOML: {exc}") from exc
    plain = plain_toml.loads(text)
    if plain is not None:
        return plain
    import tomllib

    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{file}: not valid TOML: {exc}") from exc


def expected(kind: str, value: object) -> str:
    """What msgspec says when ``value`` is not of ``kind`` (its type names), in the file's
    words: "expected a table, got text"."""
    return plain_words(f"Expected `{kind}`, got `{_msgspec_name(value)}`")


def _msgspec_name(value: object) -> str:
    """msgspec's name for the type of a value TOML gives."""
    import datetime as dt  # only a value tomllib read can be a date (and it imported this)

    for kind, name in (
        (bool, "bool"),
        (int, "int"),
        (float, "float"),
        (str, "str"),
        (list, "array"),
        (dict, "object"),
        (dt.datetime, "datetime"),
        (dt.date, "date"),
        (dt.time, "time"),
    ):
        if isinstance(value, kind):
            return name
    return type(value).__name__


def plain_words(problem: str) -> str:
    """msgspec's "Expected `float`, got `str`" in the file's words: "expected a number, got
    text"; a union ("Expected `object | array`") names each type: "a table or a list"."""
    problem = re.sub(
        r"^Expected `([\w |]+)`",
        lambda m: "expected " + " or ".join(_words(t, _EXPECTED) for t in m[1].split(" | ")),
        problem,
    )
    return re.sub(r", got `(\w+)`$", lambda m: ", got " + _words(m[1], _GOT), problem)


# msgspec's type names in a TOML file's words.
_EXPECTED = {
    "str": "text",
    "int": "a whole number",
    "float": "a number",
    "bool": "true or false",
    "array": "a list",
    "object": "a table",
}
_GOT = {**_EXPECTED, "float": "a number with a fraction", "bool": "true/false", "null": "nothing"}


def _words(name: str, words: dict[str, str]) -> str:
    return words.get(name, f"`{name}`")
