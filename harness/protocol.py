"""The socket protocol (version 1): every frame and shared record type, used by daemon, CLI and TUI.

Frames are newline-delimited JSON objects tagged by ``type``. The msgspec structs here are the
only definition of the wire format, so the two ends cannot drift apart; see ``docs/protocol.md``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Sequence
from typing import Annotated, Any, Literal

import msgspec

PROTOCOL_VERSION = 1
MAX_FRAME_BYTES = 1024 * 1024  # one frame, newline excluded

# Bounds on what a client may ask for (docs/protocol.md, "Bounds"). Every one is answered with
# an error frame that names it; none closes the connection.
MAX_SUBSCRIBE_PATTERNS = 32  # patterns in one subscribe
MAX_PATTERN_CHARS = 128  # characters in one pattern (event names are short: discord:connection)
MAX_JSON_DEPTH = 32  # nesting of arrays/objects in a client frame
MAX_SEQ = 2**63 - 1  # seqs are SQLite integers: `since` must lie in 0..MAX_SEQ
MAX_ECHO_CHARS = 80  # a client-supplied name quoted in an error is cut to this
MAX_STRING_SETTING = 4096  # default max_length of a string or select setting
MAX_SECRET_SETTING = 1024  # default max_length of a secret (a Discord token is ~72)

# -- records that travel inside frames -------------------------------------------------------

CONNECTION_STATES: tuple[str, ...] = (
    "connecting",
    "connected",
    "disconnected",
    "error",
    "stopped",
    "not_configured",
)

# How every client draws a state: a glyph beside the word, never colour alone. One table, so
# the CLI and the TUI cannot drift apart.
STATE_GLYPHS: dict[str, str] = {
    "connected": "●",
    "connecting": "◌",
    "disconnected": "○",
    "error": "✖",
    "stopped": "■",
    "not_configured": "…",
}


class StorageHealth(msgspec.Struct):
    """Whether the daemon can write its database: the ``storage`` member of ``status``."""

    ok: bool = True
    cause: str | None = None  # "disk full", "database is read-only", "I/O error", ...
    detail: str | None = None  # SQLite's own message
    since: float | None = None  # when the current failure began (Unix time)
    unpersisted: int = 0  # events published but not stored since then
    first_unpersisted: int | None = None  # their seq range
    last_unpersisted: int | None = None


STORAGE_EVENT = "daemon:storage"  # published when writes start failing and when they recover


def describe_storage(health: StorageHealth | None) -> str:
    """``ok``, or ``storage failing: disk full since 12:03 (5 events not stored)``: one
    wording for the CLI and the TUI."""
    if health is None:
        return "unknown"
    if health.ok:
        return "ok"
    since = time.strftime("%H:%M", time.localtime(health.since)) if health.since else "?"
    text = f"storage failing: {health.cause or 'write error'} since {since}"
    if health.unpersisted:
        text += f" ({health.unpersisted} event{'s' if health.unpersisted != 1 else ''} not stored)"
    return text


FieldType = Literal["string", "integer", "boolean", "select", "secret"]


class SettingField(msgspec.Struct, frozen=True, omit_defaults=True):
    """One typed entry of a plugin's settings schema."""

    name: str
    type: FieldType
    label: str = ""
    description: str = ""
    required: bool = False
    default: Any = None
    options: tuple[str, ...] = ()  # for ``select``
    minimum: int | None = None  # for ``integer``
    maximum: int | None = None
    advanced: bool = False  # shown folded away in the TUI
    # Characters a string/secret/select may have; None: MAX_STRING_SETTING or MAX_SECRET_SETTING.
    max_length: int | None = None
    # For ``string``: the value must be one of these words (any case) or, when minimum/maximum
    # are set, a whole number in that range — e.g. shards: off | auto | 1..1024. Empty: any text.
    keywords: tuple[str, ...] = ()


class PluginInfo(msgspec.Struct, omit_defaults=True):
    """A plugin as the daemon reports it. Secret settings are reported as ``{"set": bool}``."""

    name: str
    version: str
    description: str
    enabled: bool
    status: str  # running | stopped | error | disabled
    settings: dict[str, Any]
    metadata: dict[str, Any]
    schema: list[SettingField]
    reason: str | None = None
    updated_at: float = 0.0


# -- client → server -------------------------------------------------------------------------


class Hello(msgspec.Struct, tag="hello", tag_field="type"):
    protocol: int
    client: str = "unknown"


class Subscribe(msgspec.Struct, tag="subscribe", tag_field="type"):
    id: int
    events: list[str] = msgspec.field(default_factory=lambda: ["*"])
    since: int | None = None


class Unsubscribe(msgspec.Struct, tag="unsubscribe", tag_field="type"):
    id: int


class Request(msgspec.Struct, tag="request", tag_field="type"):
    id: int
    method: str
    params: dict[str, Any] = msgspec.field(default_factory=dict)


ClientFrame = Hello | Subscribe | Unsubscribe | Request

# -- server → client -------------------------------------------------------------------------


class Welcome(msgspec.Struct, tag="welcome", tag_field="type"):
    protocol: int
    server: str
    seq: int
    pid: int


class Ack(msgspec.Struct, tag="ack", tag_field="type"):
    """Confirms a subscription. ``seq`` is the head when it took effect: replayed events have
    ``seq <= head``, live ones ``seq > head``."""

    id: int
    seq: int


class Replayed(msgspec.Struct, tag="replayed", tag_field="type"):
    """Ends the replay of a subscription that asked for ``since``: live events follow."""

    id: int
    count: int


class Event(msgspec.Struct, tag="event", tag_field="type", omit_defaults=True):
    seq: int
    ts: float
    event: str
    data: dict[str, Any]
    # False only while storage is failing: the event was published live but is not in the
    # history (a replay will not return it). Omitted from frames when true.
    persisted: bool = True


class Response(msgspec.Struct, tag="response", tag_field="type"):
    id: int
    result: Any


class Error(msgspec.Struct, tag="error", tag_field="type", omit_defaults=True):
    code: str
    message: str
    id: int | None = None
    details: dict[str, Any] | None = None


class Lagged(msgspec.Struct, tag="lagged", tag_field="type"):
    dropped: int
    message: str = "client could not keep up; disconnecting"


ServerFrame = Welcome | Ack | Replayed | Event | Response | Error | Lagged

# The most an event frame adds around its name and data: type, a 19-digit seq, a ts, the keys,
# "persisted":false. So name + data + this <= MAX_FRAME_BYTES keeps every event readable.
EVENT_FRAME_OVERHEAD = 128


class EventTooLarge(ValueError):
    """An event whose frame would be over MAX_FRAME_BYTES: every subscriber would have to drop
    its connection to read it (and every replay after), so it is refused before it is stored
    or sent, to its publisher alone."""


def check_event_size(name: str, data_json: str) -> None:
    """Raise :class:`EventTooLarge` if the event ``name`` with ``data_json`` (its data as
    msgspec encodes it, as text) would not fit in a frame. Costs a comparison for any event
    under a quarter of the limit (a character is at most 4 bytes of UTF-8)."""
    if (len(data_json) + len(name)) * 4 + EVENT_FRAME_OVERHEAD <= MAX_FRAME_BYTES:
        return
    size = len(data_json.encode()) + len(_encoder.encode(name)) + EVENT_FRAME_OVERHEAD
    if size > MAX_FRAME_BYTES:
        raise EventTooLarge(
            f"event {clip(name)} not published: its data is {len(data_json.encode()):,} bytes "
            f"as JSON, and a frame may be at most {MAX_FRAME_BYTES:,} bytes (1 MiB) whole; "
            "nothing was stored or sent. Publish less (a summary, or a reference to where the "
            "rest is) or split it into several events"
        )


# -- request methods and their params ---------------------------------------------------------


class NoParams(msgspec.Struct, forbid_unknown_fields=True):
    pass


class PluginName(msgspec.Struct, forbid_unknown_fields=True):
    name: str


class UpdateSettings(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    settings: dict[str, Any]  # a value of null unsets the key (back to config or default)


class SetEnabled(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    enabled: bool


class EventsHistory(msgspec.Struct, forbid_unknown_fields=True):
    name: str  # an event name, e.g. "discord:connection"
    limit: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 50
    since_ts: float = 0.0  # only events at or after this time


class StoredPlugin(msgspec.Struct):
    """A plugin's stored row as ``connections.snapshot`` returns it (no settings: they may hold
    secrets; ``metadata.plugin`` has the redacted description)."""

    name: str
    enabled: bool
    metadata: dict[str, Any]
    updated_at: float


class ConnectionsSnapshot(msgspec.Struct):
    """Every plugin's stored state; ``seq`` is the daemon's head when it was read: the rows
    reflect at least every event up to it."""

    seq: int
    plugins: list[StoredPlugin]


class AlertsHistory(msgspec.Struct, forbid_unknown_fields=True):
    limit: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 50
    target: str | None = None  # only this target's notifications


class AlertsTest(msgspec.Struct, forbid_unknown_fields=True):
    target: str  # a target's name, as `alerts.list` reports it


class SilenceAdd(msgspec.Struct, forbid_unknown_fields=True):
    plugin: Annotated[str, msgspec.Meta(min_length=1, max_length=100)]  # a name or a glob
    duration: str | float  # "30m", "2h", or seconds
    reason: Annotated[str, msgspec.Meta(max_length=200)] = ""


class SilenceEnd(msgspec.Struct, forbid_unknown_fields=True):
    id: int


METHODS: dict[str, type[msgspec.Struct]] = {
    # Liveness (harness/liveness.py): a quiet stream's client asks, and any answer will do.
    "ping": NoParams,
    "connections.snapshot": NoParams,
    "events.history": EventsHistory,
    "status": NoParams,
    "plugins.list": NoParams,
    "plugins.get": PluginName,
    "plugins.update_settings": UpdateSettings,
    "plugins.set_enabled": SetEnabled,
    "alerts.list": NoParams,
    "alerts.history": AlertsHistory,
    "alerts.test": AlertsTest,
    "silences.list": NoParams,
    "silences.add": SilenceAdd,
    "silences.end": SilenceEnd,
}

# -- error codes -----------------------------------------------------------------------------

E_BAD_JSON = "bad_json"  # not JSON at all
E_BAD_FRAME = "bad_frame"  # JSON, but not a valid frame (unknown type, wrong field type...)
E_TOO_LARGE = "frame_too_large"
E_PROTOCOL = "protocol_error"  # frame out of order (no hello yet, hello twice...)
E_UNKNOWN_METHOD = "unknown_method"
E_BAD_PARAMS = "invalid_params"
E_NOT_FOUND = "not_found"
E_INVALID_SETTINGS = "invalid_settings"
E_PERMISSION = "permission_denied"
E_SHUTTING_DOWN = "shutting_down"  # the daemon is stopping; retry once it is back
E_RESPONSE_TOO_LARGE = "response_too_large"  # the answer would exceed MAX_FRAME_BYTES
E_TOO_MANY_CLIENTS = "too_many_clients"  # max_clients or the fd limit reached; then closed
E_STORAGE = "storage_failed"  # the database cannot be written (disk full...); nothing changed
E_INTERNAL = "internal_error"
E_READ_ONLY = "read_only"  # refused by the client itself: the context is read-only

# Methods that change the daemon: a read-only context refuses them before sending.
WRITE_METHODS = frozenset(
    {
        "plugins.update_settings",
        "plugins.set_enabled",
        "silences.add",
        "silences.end",
        "alerts.test",  # sends a real notification to a real target
    }
)

# -- encoding --------------------------------------------------------------------------------

_encoder = msgspec.json.Encoder()
_client_decoder = msgspec.json.Decoder(ClientFrame)
_server_decoder = msgspec.json.Decoder(ServerFrame)


def encode(frame: msgspec.Struct) -> bytes:
    """One frame as a line, newline included."""
    buf = _encoder.encode(frame)
    return buf + b"\n"


def _not_utf8(exc: UnicodeDecodeError) -> msgspec.DecodeError:
    return msgspec.DecodeError(
        f"frame is not valid JSON: not UTF-8 text ({exc.reason} at byte {exc.start})"
    )


def clip(text: str, limit: int = MAX_ECHO_CHARS) -> str:
    """A client-supplied name as it may be quoted back: cut, saying how long it was."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text)} characters)"


_LONG_QUOTED = re.compile(rf"(['`])([^'`]{{{MAX_ECHO_CHARS}}})[^'`]+\1")


def clip_quoted(message: str) -> str:
    """A decoder's message with every quoted client value cut (msgspec quotes an unknown
    ``type`` or field name whole), so an error frame stays small whatever was sent."""
    return _LONG_QUOTED.sub(lambda m: f"{m[1]}{m[2]}…{m[1]}", message)


_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')
_BRACKETS = bytes.maketrans(b"[{]}", b"(())")
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def too_deep(line: bytes) -> bool:
    """Whether arrays and objects nest more than MAX_JSON_DEPTH deep in ``line``, at C speed:
    strings removed, only brackets kept (both kinds as ``()``), then each pass removes every
    empty pair, one level of the tree; what survives MAX_JSON_DEPTH passes is deeper."""
    brackets = line.translate(None, _NOT_BRACKETS)  # one pass; what is left is small
    if brackets.count(b"[") + brackets.count(b"{") <= MAX_JSON_DEPTH:
        return False  # the common case
    brackets = _JSON_STRING.sub(b"", line).translate(_BRACKETS, _NOT_BRACKETS)
    too_many = b"(" * (MAX_JSON_DEPTH + 1)
    for _ in range(MAX_JSON_DEPTH):
        if not brackets:
            return False
        if too_many in brackets:  # the usual attack ends here, before any slow pass
            return True
        brackets = brackets.replace(b"()", b"")
    return bool(brackets)


def decode_client(line: bytes) -> ClientFrame:
    if not line.isascii():
        # msgspec checks UTF-8 only in the strings it keeps: invalid bytes in a skipped unknown
        # field would pass. Checked for the whole line, so `bad_json` means the same everywhere.
        try:
            line.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _not_utf8(exc) from None
    if too_deep(line):
        # Deeper nesting would hit the interpreter's recursion limit inside msgspec.
        raise msgspec.DecodeError(
            f"frame is not accepted: JSON nested more than {MAX_JSON_DEPTH} levels deep"
        )
    try:
        return _client_decoder.decode(line)
    except UnicodeDecodeError as exc:
        # msgspec raises this, not a DecodeError, for invalid UTF-8 inside a JSON string; let
        # alone it escaped the server's frame handling and dropped the connection.
        raise _not_utf8(exc) from None


def decode_server(line: bytes) -> ServerFrame:
    try:
        return _server_decoder.decode(line)
    except UnicodeDecodeError as exc:
        raise _not_utf8(exc) from None


def decode_json(line: bytes) -> Any:
    """Plain JSON; invalid UTF-8 raises a DecodeError like any other malformed input."""
    try:
        return msgspec.json.decode(line)
    except UnicodeDecodeError as exc:
        raise _not_utf8(exc) from None


class _Skim(msgspec.Struct):
    """Only a frame's ``id``: everything else is skipped by the parser, never built, so looking
    at a bad 1 MiB frame costs a parse, not a million Python objects."""

    id: Any = None


_skim = msgspec.json.Decoder(_Skim)


def is_json(line: bytes) -> bool:
    try:
        _skim.decode(line)
    except msgspec.ValidationError:
        return True  # parsed, but not an object
    except (msgspec.DecodeError, RecursionError, UnicodeDecodeError):
        return False
    return True


def skim_id(line: bytes) -> int | None:
    """The ``id`` of a frame that failed validation, so the client can match the error."""
    try:
        frame_id = _skim.decode(line).id
    except (msgspec.DecodeError, RecursionError, UnicodeDecodeError):
        return None
    return frame_id if isinstance(frame_id, int) and not isinstance(frame_id, bool) else None


def describe_decode_error(line: bytes, exc: msgspec.DecodeError) -> tuple[str, str]:
    """Turn a msgspec error into ``(code, message)``: not-JSON and not-a-frame are told apart,
    and the message names the field path msgspec reports."""
    if isinstance(exc, msgspec.ValidationError):
        return E_BAD_FRAME, f"invalid frame: {clip_quoted(str(exc))}"
    if str(exc).startswith("frame is not"):  # ours: not UTF-8, or nested too deep
        return E_BAD_JSON, str(exc)
    if not is_json(line):
        text = str(exc)
        return E_BAD_JSON, text if text.startswith("frame is not") else (
            f"frame is not valid JSON: {text}"
        )
    return E_BAD_FRAME, f"invalid frame: {clip_quoted(str(exc))}"


# -- connection convention ----------------------------------------------------------------


class Part(msgspec.Struct, omit_defaults=True, kw_only=True):
    """One part of a connection that is several (a Discord bot's shards): the same fields as
    ``Connection`` for that part alone, plus how many guilds (or the plugin's unit) it serves.
    ``id`` is the part's name for a reader ("0", "1", ...)."""

    id: str
    state: str
    since: float = 0.0  # epoch s when this part's state began; fixed across one outage
    reason: str | None = None
    code: int | None = None
    attempt: int | None = None
    retry_at: float | None = None
    latency_ms: float | None = None
    guilds: int | None = None
    attempt_started: float | None = None  # as in Connection
    attempt_step: str | None = None


def aggregate_parts(parts: Sequence[Part], noun: str = "parts") -> tuple[str, str | None]:
    """The state and reason of a connection made of ``parts`` (documented in docs/protocol.md):
    ``connected`` only when every part is; ``error`` when any part needs the operator;
    ``connecting`` while some parts are connected and others not ("degraded: 3/4 shards
    connected"), or while none is connected and none is waiting on a failure; otherwise
    ``disconnected``. The reason names the first part that is not connected and why."""
    if not parts:
        return "connecting", f"no {noun} yet"
    up = sum(p.state == "connected" for p in parts)
    if up == len(parts):
        return "connected", None
    worst = next((p for p in parts if p.state == "error"), None)
    if worst is None:
        worst = next((p for p in parts if p.state == "disconnected"), None)
    if worst is None:
        worst = next(p for p in parts if p.state != "connected")
    why = f"{noun[:-1] if noun.endswith('s') else noun} {worst.id}: {worst.reason or worst.state}"
    counted = f"{up}/{len(parts)} {noun} connected"
    if worst.state == "error":
        return "error", f"{counted} · {why}"
    if up:
        return "connecting", f"degraded: {counted} · {why}"
    if any(p.state == "disconnected" for p in parts):
        return "disconnected", f"{counted} · {why}"
    return "connecting", f"{counted} · {why}"


class Connection(msgspec.Struct, omit_defaults=True, kw_only=True):
    """A plugin's connection, as stored in ``metadata.connection`` and published as
    ``{plugin}:connection``: the one type every end reads (see docs/protocol.md).

    Fields left at their default are omitted on the wire. A third-party plugin that wants to
    report more puts it in ``extra`` (JSON values under its own keys); clients show what they
    know and carry ``extra`` along untouched."""

    state: str
    seq: int = 0
    since: float = 0.0  # epoch s when this state began; fixed across the attempts of an outage
    username: str | None = None  # who we are connected as; cleared when the identity changes
    reason: str | None = None  # what happened, in words for an operator (never a class name)
    code: int | None = None  # machine-readable cause: a gateway close code or an HTTP status
    attempt: int | None = None  # while retrying: the number of the next attempt in this outage
    retry_at: float | None = None  # while waiting: epoch s of the next attempt
    latency_ms: float | None = None  # connected: heartbeat round-trip when the state began
    drop_ms: float | None = None  # connected after a drop: how long the drop lasted
    # While an attempt is under way (the wait before it over, no answer yet): epoch s when it
    # began and what it is doing, in words ("connecting to the gateway"); ``attempt`` is its
    # number. Without them a hung attempt read "retrying now" until its timeout.
    attempt_started: float | None = None
    attempt_step: str | None = None
    parts: list[Part] = []  # a connection of several parts (shards): each one's own state
    extra: dict[str, Any] = {}


class Health(msgspec.Struct, omit_defaults=True, kw_only=True):
    """Live heartbeat health, published as ``{plugin}:health`` and never stored (see
    docs/protocol.md): it changes with every heartbeat, and history wants state changes."""

    latency_ms: float | None = None  # the last heartbeat round-trip
    ack_overdue_since: float | None = None  # epoch s of the heartbeat still waiting for an ACK
    heartbeat_interval: float | None = None  # seconds between heartbeats
    # A connection made of parts (shards): each part's own live health, by the part's id; the
    # fields above are then the aggregate (the parts' mean latency, the oldest overdue beat).
    parts: list[PartHealth] = msgspec.field(default_factory=list)


class PartHealth(msgspec.Struct, omit_defaults=True, kw_only=True):
    """One part's live heartbeat health, in ``Health.parts``."""

    id: str
    latency_ms: float | None = None
    ack_overdue_since: float | None = None


class IdentifyBudget(msgspec.Struct, kw_only=True):
    """A plugin's budget of new sessions, in ``Connection.extra["identify_budget"]`` (Discord's
    ``session_start_limit``): ``remaining`` of ``total`` until ``resets_at`` (epoch s), started
    at most ``max_concurrency`` at once. At ``floor`` or below the plugin starts none: they
    wait for the reset (None from a plugin that does not say)."""

    total: int
    remaining: int
    resets_at: float = 0.0
    max_concurrency: int = 1
    floor: int | None = None


def keeps_health(state: str, part_states: Iterable[str] = ()) -> bool:
    """Whether a plugin's live health outlives a connection in ``state`` (with parts in
    ``part_states``): a connected link keeps it, and so does a connection of parts while any
    part is still connected (one shard's overdue ACK is true while another shard is down); any
    other state ends it, as a heartbeat warning belongs to the link that had it. The one rule
    for the daemon (``harness.live_health``) and every client."""
    return state == "connected" or any(s == "connected" for s in part_states)


def to_connection(value: Any) -> Connection | None:
    """A stored or received connection object as a ``Connection``; None when absent or not one
    (a hand-edited row, a newer daemon's shape that no longer fits)."""
    if isinstance(value, Connection):
        return value
    if not isinstance(value, dict):
        return None
    try:
        return msgspec.convert(value, Connection)
    except msgspec.ValidationError:
        return None


def health_event(plugin: str) -> str:
    """The live-only event a plugin's heartbeat health is published under."""
    return f"{plugin}:health"


def plugin_of_health_event(event: str) -> str | None:
    if event.endswith(":health"):
        return event[: -len(":health")]
    return None


def connection_event(plugin: str) -> str:
    """The event a plugin's connection changes are published under."""
    return f"{plugin}:connection"


def plugin_of_connection_event(event: str) -> str | None:
    if event.endswith(":connection"):
        return event[: -len(":connection")]
    return None
