"""The socket protocol (version 1): every frame and shared record type, used by daemon, CLI and TUI.

Frames are newline-delimited JSON objects tagged by ``type``. The msgspec structs here are the
only definition of the wire format, so the two ends cannot drift apart; see ``docs/protocol.md``.
"""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal

import msgspec

PROTOCOL_VERSION = 1
MAX_FRAME_BYTES = 1024 * 1024  # one frame, newline excluded

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


METHODS: dict[str, type[msgspec.Struct]] = {
    "connections.snapshot": NoParams,
    "events.history": EventsHistory,
    "status": NoParams,
    "plugins.list": NoParams,
    "plugins.get": PluginName,
    "plugins.update_settings": UpdateSettings,
    "plugins.set_enabled": SetEnabled,
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
E_STORAGE = "storage_failed"  # the database cannot be written (disk full...); nothing changed
E_INTERNAL = "internal_error"
E_READ_ONLY = "read_only"  # refused by the client itself: the context is read-only

# Methods that change the daemon: a read-only context refuses them before sending.
WRITE_METHODS = frozenset({"plugins.update_settings", "plugins.set_enabled"})

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


def decode_client(line: bytes) -> ClientFrame:
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


def describe_decode_error(line: bytes, exc: msgspec.DecodeError) -> tuple[str, str]:
    """Turn a msgspec error into ``(code, message)``: not-JSON and not-a-frame are told apart,
    and the message names the field path msgspec reports."""
    if isinstance(exc, msgspec.ValidationError):
        return E_BAD_FRAME, f"invalid frame: {exc}"
    try:
        decode_json(line)
    except msgspec.DecodeError:
        text = str(exc)
        return E_BAD_JSON, text if text.startswith("frame is not") else (
            f"frame is not valid JSON: {text}"
        )
    return E_BAD_FRAME, f"invalid frame: {exc}"


# -- connection convention ----------------------------------------------------------------


def connection_event(plugin: str) -> str:
    """The event a plugin's connection changes are published under."""
    return f"{plugin}:connection"


def plugin_of_connection_event(event: str) -> str | None:
    if event.endswith(":connection"):
        return event[: -len(":connection")]
    return None
