"""Configuration: a TOML file decoded into typed structs, with embedded defaults for every key."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec

from harness.alerts.rules import AlertsConfig, check_section

# What a client command reads of the file is checked there (stdlib only), in the same words.
from harness.client_config import plain_words, read_toml

# Where the files are: in a module of their own (stdlib and platformdirs only), so that a
# client without a config file finds the default socket without importing this one.
from harness.config_paths import (  # noqa: F401 (re-exported: harness.config.locate etc.)
    ENV_CONFIG,
    ConfigError,
    beside,
    default_database,
    default_socket,
    locate,
    runtime_dir,
    user_config_file,
)
from harness.settings import kind

LogLevel = Literal["debug", "info", "warning", "error"]


class DaemonConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    socket: str = ""  # empty: $XDG_RUNTIME_DIR/harness/harness.sock
    database: str = ""  # empty: $XDG_STATE_HOME/harness/state.db
    log_level: LogLevel = "info"
    # Bounded: a negative stop_timeout cancelled every plugin at once, a negative retention
    # deleted the whole history, a queue of 0 frames cut every client off.
    stop_timeout: Annotated[float, msgspec.Meta(ge=0)] = 10.0  # seconds each plugin gets to stop
    # 0 keeps events forever (still bounded by the count)
    event_retention_days: Annotated[float, msgspec.Meta(ge=0)] = 30.0
    event_retention_max: Annotated[int, msgspec.Meta(ge=0)] = 100_000  # newest events kept
    # a client further behind than this is cut off
    client_queue_frames: Annotated[int, msgspec.Meta(ge=1)] = 10_000
    # Clients connected at once; the next gets a too_many_clients error frame and is closed.
    max_clients: Annotated[int, msgspec.Meta(ge=1)] = 512


class MetricsConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    # host:port of the Prometheus endpoint (/metrics); empty: no endpoint. Loopback is the safe
    # choice: the numbers say which plugins exist and how they are doing.
    listen: str = ""


class Config(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    daemon: DaemonConfig = msgspec.field(default_factory=DaemonConfig)
    metrics: MetricsConfig = msgspec.field(default_factory=MetricsConfig)
    # [plugins.<name>] tables: default settings, checked against each plugin's schema at boot.
    plugins: dict[str, dict[str, Any]] = msgspec.field(default_factory=dict)
    alerts: AlertsConfig = msgspec.field(default_factory=AlertsConfig)  # see docs/alerts.md
    # [contexts.<name>] tables: other daemons to talk to; checked by harness.contexts.
    contexts: dict[str, dict[str, Any]] = msgspec.field(default_factory=dict)
    source: str = ""  # the file it came from; not a TOML key

    @property
    def socket_path(self) -> Path:
        return Path(self.daemon.socket).expanduser() if self.daemon.socket else default_socket()

    @property
    def database_path(self) -> Path:
        if self.daemon.database:
            return Path(self.daemon.database).expanduser()
        return default_database()


def _where(exc: msgspec.ValidationError) -> tuple[str, str]:
    """Split msgspec's "Expected `int`, got `str` - at `$.daemon.x`" into (key, problem)."""
    text = str(exc)
    problem, sep, at = text.rpartition(" - at `")
    if not sep:  # msgspec gives no location for the top level
        problem, key = text, ""
    else:
        key = at.rstrip("`").removeprefix("$").lstrip(".")
    if problem.startswith("Object contains unknown field"):
        field = problem.split("`")[1]
        return f"{key}.{field}" if key else field, "unknown key"
    return key, plain_words(problem)


def _choices(key: str) -> tuple[Any, ...] | None:
    """The values a ``Literal`` key of :class:`Config` (``daemon.log_level``) takes."""
    import msgspec.inspect as mi

    info: Any = mi.type_info(Config)
    for part in key.split("."):
        if not isinstance(info, mi.StructType):
            return None
        info = next((f.type for f in info.fields if f.encode_name == part), None)
    return info.values if isinstance(info, mi.LiteralType) else None


def parse_listen(value: str) -> tuple[str, int]:
    """``host:port`` (``[::1]:9464`` for IPv6) into its parts; ValueError says what is wrong."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ValueError(f"expected HOST:PORT such as 127.0.0.1:9464, got {value!r}")
    return host.removeprefix("[").removesuffix("]"), int(port)


def load(path: str | os.PathLike[str] | None = None) -> Config:
    """Load ``path``, else ``$HARNESS_CONFIG``, else the user config file if there is one,
    else the embedded defaults."""
    file, _origin = locate(path)
    if file is None:
        return Config()
    return _load_file(file)


def load_raw(file: Path) -> dict[str, Any]:
    """The TOML tables of ``file`` as read (for ``harness config``, which says which keys the
    file sets); raises ConfigError like :func:`load`."""
    return read_toml(file)


def _load_file(file: Path) -> Config:
    data = load_raw(file)
    if "source" in data:  # an internal field, not a key the file may set
        raise ConfigError(f"{file}: source: unknown key")
    # Checked before msgspec, which names a bad value in a table of tables only as
    # `plugins[...]` (or `contexts[...]`), not by the name the file gives it.
    for section, wanted in (
        ("plugins", "a table of settings ([plugins.{}])"),
        ("contexts", "a table ([contexts.{}] with host or socket)"),
    ):
        tables = data.get(section)
        if not isinstance(tables, dict):
            continue
        for name, table in tables.items():
            if not isinstance(table, dict):
                raise ConfigError(
                    f"{file}: {section}.{name}: expected {wanted.format(name)}, got {kind(table)}"
                )
    if "alerts" in data:
        problems = check_section(data["alerts"], str(file))
        if problems:
            raise ConfigError("\n".join(problems))
    daemon = data.get("daemon")
    level = daemon.get("log_level") if isinstance(daemon, dict) else None
    if (
        isinstance(daemon, dict)
        and isinstance(level, str)
        and level.lower() in (_choices("daemon.log_level") or ())
    ):
        # "DEBUG" is how Python's logging and most daemons spell it: the same level.
        daemon["log_level"] = level.lower()
    try:
        config = msgspec.convert(data, Config)
    except msgspec.ValidationError as exc:
        key, problem = _where(exc)
        allowed = _choices(key)
        if allowed and problem.startswith("Invalid enum value "):
            # msgspec names the bad value only: "Invalid enum value 'verbose'".
            got = problem.removeprefix("Invalid enum value ")
            problem = f"expected one of {', '.join(map(str, allowed))}, got {got}"
        raise ConfigError(f"{file}: {key or 'top level'}: {problem}") from exc
    if config.metrics.listen:
        try:
            parse_listen(config.metrics.listen)
        except ValueError as exc:
            raise ConfigError(f"{file}: metrics.listen: {exc}") from exc
    config.source = str(file)
    # Relative paths are the file's, not this process's working directory's.
    config.daemon.socket = beside(config.daemon.socket, file)
    config.daemon.database = beside(config.daemon.database, file)
    return config
