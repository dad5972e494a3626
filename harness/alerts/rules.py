"""The ``[alerts]`` config section: typed rules and targets, durations, and their validation.

Kept free of apprise at import time: the CLI loads the config for every command, and apprise
takes most of a second to import. Target URLs are checked with apprise only when there are some.
"""

from __future__ import annotations

import fnmatch
import re
from typing import Any

import msgspec

from harness.protocol import CONNECTION_STATES

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?|\.\d+)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}

Duration = str | float  # "2m", "0.3s", "1h", or a number of seconds

DEFAULT_RULE = "connection"


def seconds(value: Duration) -> float:
    """``"2m"`` → 120.0. Raises ValueError with what was expected."""
    if isinstance(value, bool):
        raise ValueError(f"expected a duration such as '2m', '30s' or '0.5s', got {value!r}")
    if isinstance(value, (int, float)):
        if value < 0 or value != value or value == float("inf"):
            raise ValueError(f"expected a duration of 0 or more seconds, got {value!r}")
        return float(value)
    m = _DURATION.match(value)
    if not m:
        raise ValueError(
            f"expected a duration such as '2m', '30s', '0.5s', '1h' or '1d', got {value!r}"
        )
    return float(m.group(1)) * _UNITS[m.group(2)]


def format_duration(value: float) -> str:
    """The other way: 120.0 → ``"2m"`` (whole units where they fit), for CLI and TUI."""
    if value == 0:
        return "0"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if value >= size and value % size == 0:
            return f"{int(value // size)}{unit}"
    return f"{value:g}s"


# The shortest period for what repeats by itself (reminders, heartbeat pings): "1ms" for "1m"
# would otherwise send a thousand notifications (or pings) a second.
MIN_PERIOD = 0.1


def _check(field: str, value: Duration, *, positive: bool = False, period: bool = False) -> None:
    try:
        s = seconds(value)
    except ValueError as exc:
        raise ValueError(f"{field}: {exc}") from None
    if positive and s <= 0:
        raise ValueError(f"{field}: expected a duration greater than 0, got {value!r}")
    if period and 0 < s < MIN_PERIOD:
        never = "" if positive else "0 (never) or "
        raise ValueError(
            f"{field}: expected {never}at least {MIN_PERIOD:g}s (it repeats), got {value!r}"
        )


class AlertRule(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """When to tell someone: a plugin's connection is in one of ``states`` for ``for``."""

    plugins: list[str] = msgspec.field(default_factory=lambda: ["*"])  # globs on plugin names
    # Globs on the connection state that count as broken. `stopped` (the operator disabled the
    # plugin or the daemon is stopping) and `not_configured` are deliberate, so not by default.
    states: list[str] = msgspec.field(
        default_factory=lambda: ["connecting", "disconnected", "error"]
    )
    for_: Duration = msgspec.field(name="for", default="2m")
    send_resolved: bool = True
    remind_every: Duration = 0  # 0: no reminders while it stays broken
    flap_changes: int = 6  # more state changes than this within flap_window is flapping; 0 off
    flap_window: Duration = "10m"
    flap_quiet: Duration = "2m"  # no change for this long: stable again
    targets: list[str] = msgspec.field(default_factory=list)  # target names; empty: all

    def __post_init__(self) -> None:
        _check("for", self.for_)
        _check("remind_every", self.remind_every, period=True)
        _check("flap_window", self.flap_window, positive=True)
        _check("flap_quiet", self.flap_quiet, positive=True)
        if self.flap_changes < 0:
            raise ValueError(f"flap_changes: expected 0 (off) or more, got {self.flap_changes}")
        if not self.states:
            raise ValueError("states: expected at least one state glob")
        for pattern in self.states:
            if not any(fnmatch.fnmatchcase(s, pattern) for s in CONNECTION_STATES):
                raise ValueError(
                    f"states: {pattern!r} matches no connection state; expected globs over "
                    + ", ".join(CONNECTION_STATES)
                )

    def matches_plugin(self, plugin: str) -> bool:
        return any(fnmatch.fnmatchcase(plugin, p) for p in self.plugins)

    def matches_state(self, state: str) -> bool:
        return any(fnmatch.fnmatchcase(state, p) for p in self.states)

    @property
    def for_seconds(self) -> float:
        return seconds(self.for_)

    @property
    def remind_seconds(self) -> float:
        return seconds(self.remind_every)

    def describe(self) -> dict[str, Any]:
        """For ``alerts.list``: the rule as configured, with durations in seconds."""
        return {
            "plugins": self.plugins,
            "states": self.states,
            "for": self.for_seconds,
            "send_resolved": self.send_resolved,
            "remind_every": self.remind_seconds,
            "flap_changes": self.flap_changes,
            "flap_window": seconds(self.flap_window),
            "flap_quiet": seconds(self.flap_quiet),
            "targets": self.targets,
        }


class AlertsConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    # A list of apprise URLs (named "1", "2", ...) or a table of name = URL.
    targets: list[str] | dict[str, str] = msgspec.field(default_factory=list)
    # [alerts.rules.NAME]; with targets and no rules, one default rule named "connection".
    rules: dict[str, AlertRule] = msgspec.field(default_factory=dict)
    send_timeout: Duration = "30s"  # one send to one target, before it counts as failed
    retry_initial: Duration = "5s"  # first retry after a failed send; doubles per failure...
    retry_max: Duration = "5m"  # ...up to this. A notification is retried until it is sent.
    history_max: int = 10_000  # delivered notifications kept for `harness alerts history`
    heartbeat_url: str = ""  # pinged (HTTP GET) while the daemon runs: Healthchecks.io & co.
    heartbeat_every: Duration = "60s"

    def __post_init__(self) -> None:
        _check("send_timeout", self.send_timeout, positive=True)
        _check("retry_initial", self.retry_initial, positive=True)
        _check("retry_max", self.retry_max, positive=True)
        _check("heartbeat_every", self.heartbeat_every, positive=True, period=True)
        if self.history_max < 1:
            raise ValueError(f"history_max: expected 1 or more, got {self.history_max}")
        if self.heartbeat_url and not re.match(r"^https?://[^/\s]+", self.heartbeat_url):
            raise ValueError("heartbeat_url: expected an http:// or https:// URL")
        for name in self.rules:
            for t in self.rules[name].targets:
                if t not in self.target_urls:
                    known = ", ".join(self.target_urls) or "none configured"
                    raise ValueError(f"rules.{name}.targets: no target named {t!r} ({known})")

    @property
    def target_urls(self) -> dict[str, str]:
        """Name → URL, in configured order."""
        if isinstance(self.targets, dict):
            return dict(self.targets)
        return {str(i + 1): url for i, url in enumerate(self.targets)}

    @property
    def active_rules(self) -> dict[str, AlertRule]:
        """The configured rules, or the default one when targets exist and no rule does: one
        line of config (``targets = [...]``) gives useful alerts."""
        if self.rules or not self.target_urls:
            return dict(self.rules)
        return {DEFAULT_RULE: AlertRule()}


def check_section(data: Any, file: str) -> list[str]:
    """Problems in a raw ``[alerts]`` table, each as ``file: key: what was expected``.

    Checked before msgspec converts the whole file, because msgspec names a bad value inside a
    table of tables only as ``rules[...]``, not by the rule's name."""
    if not isinstance(data, dict):
        return [f"{file}: alerts: expected a table ([alerts]), got {type(data).__name__}"]
    problems: list[str] = []
    rules = data.get("rules", {})
    if isinstance(rules, dict):
        for name, table in rules.items():
            where = f"alerts.rules.{name}"
            if not isinstance(table, dict):
                problems.append(f"{file}: {where}: expected a table ([{where}])")
                continue
            try:
                msgspec.convert(table, AlertRule)
            except msgspec.ValidationError as exc:
                problems.append(f"{file}: {where}.{_problem(exc, AlertRule)}")
    if problems:
        return problems
    try:
        section = msgspec.convert(data, AlertsConfig)
    except msgspec.ValidationError as exc:
        return [f"{file}: alerts.{_problem(exc, AlertsConfig)}"]
    from harness.alerts.targets import invalid_reason  # apprise: only when targets exist

    for name, url in section.target_urls.items():
        why = invalid_reason(url)
        if why:
            key = (
                f"alerts.targets.{name}"
                if isinstance(section.targets, dict)
                else (f"alerts.targets[{int(name) - 1}]")
            )
            problems.append(f"{file}: {key}: {why}")
    return problems


def _problem(exc: msgspec.ValidationError, struct: type[msgspec.Struct]) -> str:
    """``"key: problem"`` from a msgspec error inside one struct."""
    text = str(exc)
    problem, sep, at = text.rpartition(" - at `")
    if not sep:
        problem, at = text, ""
    key = at.rstrip("`").removeprefix("$").lstrip(".")
    if problem.startswith("Object contains unknown field"):
        field = problem.split("`")[1]
        expected = ", ".join(struct.__struct_encode_fields__) if not key else ""
        hint = f"; expected one of {expected}" if expected else ""
        return f"{key + '.' if key else ''}{field}: unknown key{hint}"
    from harness.config import plain_words  # config imports this module

    problem = plain_words(problem)
    if key:
        return f"{key}: {problem}"
    return problem  # __post_init__ messages already start with the field name
