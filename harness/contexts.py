"""Contexts: named daemons in the user config (``[contexts.NAME]``), the current one, and the
rule that turns ``--host`` / ``--socket`` / ``--context`` into one :class:`Target`.

Precedence, first that applies: ``--host`` or ``--socket``; ``--context``; ``$HARNESS_CONTEXT``;
the current context (``harness context use``); the config's own socket (context "default").

``--host`` and ``--socket`` need no config (:func:`direct`): this module imports the config
(msgspec, tomllib) only when a context has to be looked up, so ``harness --host ssh://… status``
does not pay for it.
"""

from __future__ import annotations

import functools
import os
import re
from pathlib import Path

from harness.transport import Target, TargetError, parse_host

TYPE_CHECKING = False  # typing itself is not imported at run time: see harness/cli/oneshot.py
if TYPE_CHECKING:
    from typing import Any

    from harness.client_config import ClientConfig
    from harness.config import Config as FullConfig

    # The daemon's whole config, or the part a client command reads (harness.client_config).
    Config = FullConfig | ClientConfig

ENV_CONTEXT = "HARNESS_CONTEXT"
DEFAULT = "default"  # the daemon of the config itself: never a [contexts] table
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


@functools.cache
def context_config() -> type[Any]:
    """The struct one ``[contexts.NAME]`` table is checked against (made on first use, so
    that importing this module does not import msgspec)."""
    import msgspec

    class ContextConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
        """One ``[contexts.NAME]`` table: exactly one of ``host`` and ``socket``."""

        host: str = ""  # ssh://[user@]server[:port]
        socket: str = ""  # a local socket path
        read_only: bool = False
        remote_harness: str = ""  # the command to run on the server, if not `harness` on PATH

    return ContextConfig


def parse_contexts(config: Config) -> dict[str, Target]:
    """The config's ``[contexts]``, checked; errors name the file and the key."""
    import msgspec

    from harness.config_paths import ConfigError, beside

    where = config.source or "config"
    targets: dict[str, Target] = {}
    for name, table in config.contexts.items():
        if not _NAME.match(name) or name == DEFAULT:
            raise ConfigError(
                f"{where}: contexts.{name}: a context name is letters, digits, '.', '_' or "
                f"'-' (and not {DEFAULT!r})"
            )
        try:
            ctx = msgspec.convert(table, context_config())
        except msgspec.ValidationError as exc:
            # Named as the file has it (contexts.prod.socket) and in its words, as every
            # other config error is (harness.config._where).
            from harness.config import _where as config_key

            key, problem = config_key(exc)
            path = f"contexts.{name}" + (f".{key}" if key else "")
            raise ConfigError(f"{where}: {path}: {problem}") from None
        if bool(ctx.host) == bool(ctx.socket):
            raise ConfigError(f"{where}: contexts.{name}: set exactly one of host and socket")
        try:
            ssh = parse_host(ctx.host) if ctx.host else None
        except TargetError as exc:
            said = str(exc).removeprefix("--host ")  # it is the file's key, not the option
            raise ConfigError(f"{where}: contexts.{name}.host: {said}") from None
        targets[name] = Target(
            name=name,
            # Relative to the config file, as [daemon] socket is (config_paths.beside).
            socket=Path(
                beside(ctx.socket, config.source) if config.source else ctx.socket
            ).expanduser()
            if ctx.socket
            else None,
            ssh=ssh,
            remote_harness=ctx.remote_harness or "harness",
            read_only=ctx.read_only,
        )
    return targets


def default_target(config: Config) -> Target:
    return Target(name=DEFAULT, socket=config.socket_path)


def all_targets(config: Config) -> dict[str, Target]:
    """ "default" first, then the configured contexts by name."""
    contexts = parse_contexts(config)
    return {DEFAULT: default_target(config), **dict(sorted(contexts.items()))}


# -- the current context -----------------------------------------------------------------------


def state_file() -> Path:
    from harness.config_paths import user_state_dir

    return user_state_dir() / "context"


def current_name() -> str:
    """The context ``harness context use`` chose (``$HARNESS_CONTEXT`` wins), else "default"."""
    env = os.environ.get(ENV_CONTEXT)
    if env:
        return env
    try:
        name = state_file().read_text(encoding="utf-8").strip()
    except OSError:
        return DEFAULT
    return name if _NAME.match(name) else DEFAULT


def set_current(name: str) -> Path:
    path = state_file()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(name + "\n", encoding="utf-8")
    tmp.replace(path)  # atomic: a reader never sees half a name
    return path


# -- resolution --------------------------------------------------------------------------------


def resolve(
    config: Config,
    *,
    host: str | None = None,
    socket: str | None = None,
    context: str | None = None,
    remote_harness: str | None = None,
) -> Target:
    """The one daemon a command talks to. ConfigError (exit 2) when it cannot be named."""
    from harness.config_paths import ConfigError

    target = direct(host=host, socket=socket, remote_harness=remote_harness)
    if target is not None:
        return target
    name = context or current_name()
    targets = all_targets(config)
    if name not in targets:
        known = ", ".join(targets)
        # Name what chose it, and a way out that works for that source: `context use` does
        # not help while $HARNESS_CONTEXT (which wins over it) is set.
        if context:
            how, undo = "--context", "or give another --context"
        elif os.environ.get(ENV_CONTEXT):
            how, undo = f"${ENV_CONTEXT}", f"or unset {ENV_CONTEXT}"
        else:
            how, undo = (
                f"`harness context use`, in {state_file()}",
                "or `harness context use default`",
            )
        raise ConfigError(
            f"no context named {name!r} (from {how}); known: {known}. "
            f"Add [contexts.NAME] to the config, {undo}"
        )
    target = targets[name]
    if remote_harness and target.ssh is not None:
        target = Target(
            name=target.name,
            ssh=target.ssh,
            remote_harness=remote_harness,
            read_only=target.read_only,
        )
    return target


def direct(
    *, host: str | None = None, socket: str | None = None, remote_harness: str | None = None
) -> Target | None:
    """The daemon ``--host`` or ``--socket`` names, which no config or context can change
    (None: neither was given). ConfigError (exit 2) for a bad or conflicting value."""
    if host and socket:
        from harness.config_paths import ConfigError

        raise ConfigError("--host and --socket name two different daemons: pass one")
    if host:
        try:
            ssh = parse_host(host)
        except TargetError as exc:
            from harness.config_paths import ConfigError

            raise ConfigError(str(exc)) from None
        return Target(name=host, ssh=ssh, remote_harness=remote_harness or "harness")
    if socket:
        return Target(name=socket, socket=Path(socket).expanduser())
    return None


def read_only_message(target: Target) -> str:
    return (
        f"context {target.name!r} is read-only: settings and enable/disable are refused "
        f"(read_only = true in [contexts.{target.name}])"
    )


def describe(target: Target) -> dict[str, Any]:
    """For ``harness context list|show --json``."""
    return {
        "name": target.name,
        "host": str(target.ssh) if target.ssh else None,
        "socket": str(target.socket) if target.socket else None,
        "read_only": target.read_only,
        "remote_harness": target.remote_harness if target.ssh else None,
    }
