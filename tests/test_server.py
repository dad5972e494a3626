"""The socket protocol against an in-process daemon on a real Unix socket: handshake, requests,
subscriptions and replay, bad frames, slow clients, socket security."""

from __future__ import annotations

import asyncio
import os
import socket
import stat
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest

from harness import __version__, server
from harness.client import Client, ClientError
from harness.config import Config, DaemonConfig
from harness.daemon import Daemon
from harness.plugin import Plugin, PluginContext
from harness.protocol import MAX_FRAME_BYTES, PROTOCOL_VERSION, Event, Replayed
from harness.server import AlreadyRunning, _peer_uid
from tests.conftest import (
    HANG_GUARD,
    RawConnection,
    StartDaemon,
    collect,
    next_matching,
    wait_until,
)
from tests.sample_plugins import Echo

Connect = Callable[..., Awaitable[Client]]
Raw = Callable[..., Awaitable[RawConnection]]
SECRET = "tok-Zq9-never-on-the-wire"


@pytest.fixture
def configured(config: Config) -> Config:
    return msgspec.structs.replace(config, plugins={"echo": {"token": SECRET}})


async def publish(daemon: Daemon, name: str, **data: Any) -> Event:
    assert daemon.recorder is not None
    return await daemon.recorder.record(name, dict(data))


# -- handshake -----------------------------------------------------------------------------------


async def test_welcome_carries_protocol_server_head_seq_and_pid(
    start_daemon: StartDaemon, raw: Raw
) -> None:
    daemon = await start_daemon()
    await publish(daemon, "x:y")
    conn = await raw()
    welcome = await conn.hello()
    assert welcome == {
        "type": "welcome",
        "protocol": PROTOCOL_VERSION,
        "server": f"harness/{__version__}",
        "seq": daemon.bus.published_seq,  # type: ignore[union-attr]
        "pid": os.getpid(),
    }
    assert welcome["seq"] >= 1


@pytest.mark.parametrize(
    "frame",
    [
        {"type": "request", "id": 7, "method": "status", "params": {}},
        {"type": "subscribe", "id": 7, "events": ["*"]},
        {"type": "unsubscribe", "id": 7},
    ],
    ids=["request", "subscribe", "unsubscribe"],
)
async def test_anything_before_hello_is_a_protocol_error(
    start_daemon: StartDaemon, raw: Raw, frame: dict[str, Any]
) -> None:
    await start_daemon()
    conn = await raw()
    await conn.send(frame)
    error = await conn.recv()
    assert error["type"] == "error" and error["code"] == "protocol_error"
    assert error["id"] == 7 and "hello" in error["message"]
    await conn.hello()  # the connection is still usable
    assert (await conn.request(8, "status"))["type"] == "response"


async def test_a_wrong_protocol_version_is_refused_and_can_be_corrected(
    start_daemon: StartDaemon, raw: Raw
) -> None:
    await start_daemon()
    conn = await raw()
    await conn.send({"type": "hello", "protocol": 99, "client": "future"})
    error = await conn.recv()
    assert error["code"] == "protocol_error"
    assert "99" in error["message"] and str(PROTOCOL_VERSION) in error["message"]
    # Not welcomed: requests are still refused.
    assert (await conn.request(1, "status"))["code"] == "protocol_error"
    await conn.hello()
    assert (await conn.request(2, "status"))["type"] == "response"


async def test_hello_twice_is_a_protocol_error(start_daemon: StartDaemon, raw: Raw) -> None:
    await start_daemon()
    conn = await raw()
    await conn.hello()
    await conn.send({"type": "hello", "protocol": PROTOCOL_VERSION})
    error = await conn.recv()
    assert error["code"] == "protocol_error" and "already" in error["message"]
    assert (await conn.request(1, "status"))["type"] == "response"


# -- requests --------------------------------------------------------------------------------------


async def test_status_reports_the_daemon_and_each_plugin(
    start_daemon: StartDaemon, connect: Connect, config: Config, configured: Config
) -> None:
    daemon = await start_daemon(cfg=configured)
    client = await connect()
    st = await client.request("status")
    assert st["server"] == f"harness/{__version__}" and st["pid"] == os.getpid()
    assert st["seq"] == daemon.bus.published_seq  # type: ignore[union-attr]
    assert st["socket"] == str(config.socket_path)
    assert st["database"] == str(config.database_path)
    assert st["clients"] == 1 and st["uptime"] >= 0
    (echo,) = st["plugins"]
    assert echo["name"] == "echo" and echo["enabled"] is True and echo["status"] == "running"
    assert echo["connection"]["state"] == "connected"
    assert echo["connection"]["username"] == "EchoBot#0001"
    assert SECRET not in msgspec.json.encode(st).decode()


async def test_plugins_list_and_get_describe_plugins_without_their_secrets(
    start_daemon: StartDaemon, connect: Connect, configured: Config
) -> None:
    await start_daemon(cfg=configured)
    client = await connect()
    (listed,) = await client.request("plugins.list")
    got = await client.request("plugins.get", name="echo")
    assert listed == got
    assert (got["name"], got["version"], got["description"]) == (
        "echo",
        Echo.version,
        Echo.description,
    )
    assert got["enabled"] is True and got["status"] == "running"
    assert got["settings"] == {
        "token": {"set": True},
        "prefix": "Echo",
        "retries": 3,
        "verbose": False,
        "mode": "fast",
        "greeting": "hi",
    }
    assert [f["name"] for f in got["schema"]] == [f.name for f in Echo.settings_schema]
    assert got["schema"][0] == {
        "name": "token",
        "type": "secret",
        "required": True,
        "description": "API token",
    }
    assert got["metadata"]["connection"]["state"] == "connected"
    assert SECRET not in msgspec.json.encode(got).decode()


async def test_update_settings_and_set_enabled_answer_with_the_plugin(
    start_daemon: StartDaemon, connect: Connect, configured: Config
) -> None:
    await start_daemon(cfg=configured)
    client = await connect()
    info = await client.request("plugins.update_settings", name="echo", settings={"retries": 5})
    assert info["settings"]["retries"] == 5 and info["status"] == "running"
    info = await client.request("plugins.set_enabled", name="echo", enabled=False)
    assert info["enabled"] is False and info["status"] == "disabled"


async def test_an_unknown_method_is_named_in_the_error(
    start_daemon: StartDaemon, connect: Connect
) -> None:
    await start_daemon()
    client = await connect()
    with pytest.raises(ClientError) as info:
        await client.request("plugins.explode")
    assert info.value.code == "unknown_method"
    assert "plugins.explode" in info.value.message and "plugins.get" in info.value.message


@pytest.mark.parametrize(
    ("method", "params", "names"),
    [
        ("plugins.get", {"name": 5}, ["$.name", "str"]),
        ("plugins.get", {}, ["name"]),
        ("plugins.get", {"name": "echo", "bogus": 1}, ["bogus"]),
        ("plugins.set_enabled", {"name": "echo", "enabled": "yes"}, ["$.enabled", "bool"]),
        ("plugins.update_settings", {"name": "echo", "settings": []}, ["$.settings", "object"]),
        ("status", {"verbose": True}, ["verbose"]),
    ],
)
async def test_bad_params_are_invalid_params_naming_the_field(
    start_daemon: StartDaemon,
    connect: Connect,
    method: str,
    params: dict[str, Any],
    names: list[str],
) -> None:
    await start_daemon()
    client = await connect()
    with pytest.raises(ClientError) as info:
        await client.request(method, **params)
    assert info.value.code == "invalid_params"
    assert method in info.value.message
    for name in names:
        assert name in info.value.message


@pytest.mark.parametrize(
    ("method", "params"),
    [
        ("plugins.get", {}),
        ("plugins.update_settings", {"settings": {"x": 1}}),
        ("plugins.set_enabled", {"enabled": False}),
    ],
)
async def test_an_unknown_plugin_is_not_found(
    start_daemon: StartDaemon, connect: Connect, method: str, params: dict[str, Any]
) -> None:
    await start_daemon()
    client = await connect()
    with pytest.raises(ClientError) as info:
        await client.request(method, name="nope", **params)
    assert info.value.code == "not_found" and "'nope'" in info.value.message


# -- subscriptions -------------------------------------------------------------------------------

NAMES = ["a:connection", "plugin:status", "a:message", "plugin:settings", "b:connection", "z:z"]


@pytest.mark.parametrize(
    ("patterns", "expected"),
    [
        (["*:connection"], ["a:connection", "b:connection"]),
        (["plugin:*"], ["plugin:status", "plugin:settings"]),
        (["*:connection", "plugin:status"], ["a:connection", "plugin:status", "b:connection"]),
        (["*"], NAMES),
    ],
)
async def test_subscription_patterns_filter_live_events(
    start_daemon: StartDaemon, connect: Connect, patterns: list[str], expected: list[str]
) -> None:
    daemon = await start_daemon()
    client = await connect()
    await client.subscribe(patterns)
    for name in NAMES:
        await publish(daemon, name)
    end = await publish(daemon, "end:connection")  # matched by every case but plugin:*
    await publish(daemon, "plugin:end")
    got: list[str] = []
    while (e := await asyncio.wait_for(client.next_event(), 5)).seq not in (end.seq, end.seq + 1):
        got.append(e.event)
    assert got == expected


async def test_subscribe_acks_with_the_head_and_events_above_it_are_live(
    start_daemon: StartDaemon, connect: Connect
) -> None:
    daemon = await start_daemon()
    old = await publish(daemon, "x:old")
    client = await connect()
    head = await client.subscribe(["x:*"])
    assert head == old.seq == daemon.bus.published_seq  # type: ignore[union-attr]
    new = await publish(daemon, "x:new")
    assert (await asyncio.wait_for(client.next_event(), 5)).seq == new.seq == head + 1


async def test_replay_since_then_replayed_marker_then_live(
    start_daemon: StartDaemon, connect: Connect
) -> None:
    daemon = await start_daemon()
    events = [await publish(daemon, f"r:{i}", i=i) for i in range(6)]
    await publish(daemon, "other:thing")  # filtered out of the replay
    client = await connect()
    since = events[1].seq
    head = await client.subscribe(["r:*"], since=since)
    live = await publish(daemon, "r:live")
    frames = [await asyncio.wait_for(client.next_frame(), 5) for _ in range(6)]
    replayed = frames[:4]
    assert (
        [(e.seq, e.event, e.data) for e in replayed]
        == [  # type: ignore[union-attr]
            (e.seq, e.event, e.data) for e in events[2:]
        ]
    )
    assert frames[4] == Replayed(id=1, count=4)
    assert isinstance(frames[5], Event) and frames[5].seq == live.seq > head


async def test_replay_since_the_head_or_beyond_replays_nothing(
    start_daemon: StartDaemon, connect: Connect
) -> None:
    daemon = await start_daemon()
    await publish(daemon, "x:y")
    client = await connect()
    await client.subscribe(since=daemon.bus.published_seq + 100)  # type: ignore[union-attr]
    assert await asyncio.wait_for(client.next_frame(), 5) == Replayed(id=1, count=0)


async def test_replay_during_a_burst_has_no_gap_and_no_duplicate(
    start_daemon: StartDaemon, connect: Connect, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Events published while a since=0 replay pages through the store arrive exactly once,
    in order: replayed ones up to the ack's head, then the marker, then live ones."""
    monkeypatch.setattr(server, "REPLAY_PAGE", 25)  # many pages: many chances to interleave
    daemon = await start_daemon()
    assert daemon.store is not None and daemon.bus is not None
    bus, store = daemon.bus, daemon.store
    heads_at_page: list[int] = []
    events_after = store.events_after

    async def spying_events_after(*args: Any, **kwargs: Any) -> list[Event]:
        heads_at_page.append(bus.published_seq)
        return await events_after(*args, **kwargs)

    monkeypatch.setattr(store, "events_after", spying_events_after)

    running = True

    async def burst() -> None:
        i = 0
        while running:  # until the client is well past its replay
            await publish(daemon, "burst:tick", i=i)
            i += 1

    task = asyncio.create_task(burst())
    frames: list[Event | Replayed] = []
    try:
        await wait_until(lambda: bus.published_seq >= 300)
        client = await connect()
        head = await client.subscribe(["*"], since=0)
        async with asyncio.timeout(HANG_GUARD):
            while sum(isinstance(f, Event) and f.seq > head for f in frames) < 100:
                frames.append(await client.next_frame())
        running = False
        await asyncio.wait_for(task, 5)
    finally:
        task.cancel()
    final = bus.published_seq
    async with asyncio.timeout(HANG_GUARD):
        while not (isinstance(f := frames[-1], Event) and f.seq == final):
            frames.append(await client.next_frame())
    seqs = [f.seq for f in frames if isinstance(f, Event)]
    assert seqs == list(range(1, final + 1))
    marker = next(i for i, f in enumerate(frames) if isinstance(f, Replayed))
    assert frames[marker] == Replayed(id=1, count=head)
    assert all(f.seq <= head for f in frames[:marker])  # type: ignore[union-attr]
    # The race really happened: live events were published while the replay was paging.
    assert head < final and heads_at_page[-1] > heads_at_page[0]


async def test_unsubscribe_stops_events_and_a_new_subscribe_replaces_the_patterns(
    start_daemon: StartDaemon, raw: Raw
) -> None:
    daemon = await start_daemon()
    conn = await raw()
    await conn.hello()
    await conn.send({"type": "subscribe", "id": 1, "events": ["a:*"]})
    assert (await conn.recv())["type"] == "ack"
    first = await publish(daemon, "a:1")
    assert (await conn.recv())["seq"] == first.seq
    await conn.send({"type": "unsubscribe", "id": 2})
    assert (await conn.recv()) == {"type": "ack", "id": 2, "seq": first.seq}
    await publish(daemon, "a:2")  # not delivered
    await conn.send({"type": "subscribe", "id": 3, "events": ["b:*"]})
    assert (await conn.recv())["type"] == "ack"
    await publish(daemon, "a:3")  # not delivered either: the patterns were replaced
    b = await publish(daemon, "b:1")
    frame = await conn.recv()
    assert (frame["type"], frame["seq"]) == ("event", b.seq)


async def test_an_empty_pattern_is_refused(start_daemon: StartDaemon, connect: Connect) -> None:
    await start_daemon()
    client = await connect()
    with pytest.raises(ClientError) as info:
        await client.subscribe(["ok:*", ""])
    assert info.value.code == "invalid_params" and "pattern" in info.value.message


# -- bad frames: an error that says what was wrong; the connection and everyone else go on --------

BIG = MAX_FRAME_BYTES + 4096


def _oversized(padding: int) -> bytes:
    head = b'{"type":"request","id":1,"method":"status","params":{"pad":"'
    return head + b"x" * (padding - len(head) - 3) + b'"}}'


BAD_FRAMES: list[tuple[str, list[bytes], str, list[str]]] = [
    ("malformed json", [b'{"type": "hello", \n'], "bad_json", ["not valid JSON"]),
    ("binary garbage", [b"\xff\xfe\x00\x80\x81garbage\n"], "bad_json", ["not valid JSON"]),
    (
        "non-utf8 string",
        [b'{"type":"request","id":5,"method":"st\xff\xfeus"}\n'],
        "bad_json",
        ["UTF-8"],
    ),
    ("not an object", [b"[1, 2, 3]\n"], "bad_frame", ["invalid frame"]),
    ("unknown type", [b'{"type":"teleport","id":3}\n'], "bad_frame", ["teleport", "$.type"]),
    ("no type", [b'{"id":3}\n'], "bad_frame", ["type"]),
    (
        "wrong field type",
        [b'{"type":"request","id":"seven","method":"status"}\n'],
        "bad_frame",
        ["$.id", "int"],
    ),
    (
        "wrong nested type",
        [b'{"type":"subscribe","id":4,"events":"*"}\n'],
        "bad_frame",
        ["$.events", "array"],
    ),
    (
        "unknown method",
        [b'{"type":"request","id":6,"method":"warp.speed"}\n'],
        "unknown_method",
        ["warp.speed"],
    ),
    (
        "oversized, newline in pieces",
        [
            _oversized(MAX_FRAME_BYTES - 100)[:-1000],
            _oversized(MAX_FRAME_BYTES - 100)[-1000:] + b"x" * 5000 + b"\n",
        ],
        "frame_too_large",
        [str(MAX_FRAME_BYTES)],
    ),
    (
        "oversized, no newline",
        [b"y" * (BIG // 3)] * 3,
        "frame_too_large",
        [str(MAX_FRAME_BYTES)],
    ),
]


@pytest.mark.parametrize(
    ("chunks", "code", "words"),
    [(c, code, w) for _, c, code, w in BAD_FRAMES],
    ids=[b[0] for b in BAD_FRAMES],
)
async def test_a_bad_frame_gets_an_error_and_everything_carries_on(
    start_daemon: StartDaemon,
    connect: Connect,
    raw: Raw,
    chunks: list[bytes],
    code: str,
    words: list[str],
) -> None:
    daemon = await start_daemon()
    watcher = await connect()
    await watcher.subscribe(["t:*"])
    conn = await raw()
    await conn.hello()
    before = await publish(daemon, "t:before")
    for chunk in chunks:
        await conn.send(chunk)
        await asyncio.sleep(0)  # separate reads on the daemon's side, as they would arrive
    during = await publish(daemon, "t:during")
    error = await conn.recv()
    assert error["type"] == "error" and error["code"] == code, error
    for word in words:
        assert word in error["message"], (word, error["message"])
    if not chunks[-1].endswith(b"\n"):
        await conn.send(b"\n")  # ends the oversized frame that is being skipped
    # The same connection keeps working ...
    status = await conn.request(100, "status")
    assert status["type"] == "response" and status["result"]["pid"] == os.getpid()
    # ... and the other client got every event meanwhile.
    after = await publish(daemon, "t:after")
    got = await collect(watcher, 3)
    assert [e.seq for e in got] == [before.seq, during.seq, after.seq]


async def test_the_error_for_a_bad_frame_carries_its_id_when_it_has_one(
    start_daemon: StartDaemon, raw: Raw
) -> None:
    await start_daemon()
    conn = await raw()
    await conn.hello()
    await conn.send(b'{"type":"request","id":41,"method":7}\n')
    error = await conn.recv()
    assert (error["code"], error["id"]) == ("bad_frame", 41)
    assert "$.method" in error["message"]


@pytest.mark.parametrize(
    ("size", "code"),
    [(MAX_FRAME_BYTES, "invalid_params"), (MAX_FRAME_BYTES + 1, "frame_too_large")],
)
async def test_the_frame_size_limit_is_exactly_one_mebibyte(
    start_daemon: StartDaemon, raw: Raw, size: int, code: str
) -> None:
    await start_daemon()
    conn = await raw()
    await conn.hello()
    frame = _oversized(size)
    assert len(frame) == size
    await conn.send(frame + b"\n")
    error = await conn.recv()
    assert error["code"] == code, error["message"][:200]


# -- clients that cannot keep up -----------------------------------------------------------------


async def _stuck_subscriber(path: Path) -> socket.socket:
    """A raw subscriber to everything that, after the handshake, stops reading."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.setblocking(False)
    await loop.sock_connect(sock, str(path))
    hello = {"type": "hello", "protocol": PROTOCOL_VERSION, "client": "stuck"}
    subscribe = {"type": "subscribe", "id": 1, "events": ["*"]}
    await loop.sock_sendall(
        sock, msgspec.json.encode(hello) + b"\n" + msgspec.json.encode(subscribe) + b"\n"
    )
    got = b""
    async with asyncio.timeout(HANG_GUARD):
        while b'"ack"' not in got:
            got += await loop.sock_recv(sock, 65536)
    return sock


async def _read_to_end(sock: socket.socket) -> bytes:
    loop = asyncio.get_running_loop()
    data = bytearray()
    async with asyncio.timeout(HANG_GUARD):
        while True:
            try:
                chunk = await loop.sock_recv(sock, 1 << 20)
            except ConnectionResetError:
                break
            if not chunk:
                break
            data += chunk
    return bytes(data)


@pytest.fixture
def small_queue(config: Config) -> Config:
    return msgspec.structs.replace(
        config, daemon=msgspec.structs.replace(config.daemon, client_queue_frames=8)
    )


async def _flood_until_cut_off(daemon: Daemon, subscribers: int) -> int:
    """Publish 40 KiB events until the bus has one subscriber fewer (``subscribers``: the
    clients'; the daemon's own LiveHealth is one more); returns the last seq."""
    assert daemon.bus is not None
    subscribers += 1
    pad = "x" * 40_000
    async with asyncio.timeout(HANG_GUARD):
        while daemon.bus.subscriber_count == subscribers:
            last = await publish(daemon, "flood:blob", pad=pad)
    return last.seq


async def _assert_got_everything(client: Client, first: int, last: int) -> None:
    seqs = [e.seq for e in await collect(client, last - first + 1)]
    assert seqs == list(range(first, last + 1))


async def test_a_stuck_client_is_cut_off_while_others_get_everything(
    start_daemon: StartDaemon,
    connect: Connect,
    small_queue: Config,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(server, "_LAGGED_GRACE", 0.2)
    daemon = await start_daemon(cfg=small_queue)
    assert daemon.server is not None and daemon.bus is not None
    good = await connect()
    first = await good.subscribe(["*"]) + 1
    stuck = await _stuck_subscriber(small_queue.socket_path)
    try:
        last = await _flood_until_cut_off(daemon, subscribers=2)
        # Aborted after the grace period, though it never reads: the daemon lets go of it.
        await wait_until(lambda: len(daemon.server.clients) == 1)  # type: ignore[union-attr]
        assert "fell" in caplog.text and "behind; disconnecting" in caplog.text
        await _read_to_end(stuck)  # what the kernel held, then the end of the connection
    finally:
        stuck.close()
    more = await publish(daemon, "after:cutoff")
    await _assert_got_everything(good, first, more.seq)
    assert last < more.seq


async def test_a_lagged_client_that_reads_again_finds_the_lagged_frame_then_the_end(
    start_daemon: StartDaemon,
    connect: Connect,
    small_queue: Config,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(server, "_LAGGED_GRACE", 30.0)  # the flush, not the abort, ends it
    daemon = await start_daemon(cfg=small_queue)
    good = await connect()
    first = await good.subscribe(["*"]) + 1
    stuck = await _stuck_subscriber(small_queue.socket_path)
    try:
        last = await _flood_until_cut_off(daemon, subscribers=2)
        data = await _read_to_end(stuck)
    finally:
        stuck.close()
    frames = [msgspec.json.decode(line) for line in data.splitlines()]
    assert frames[-1]["type"] == "lagged" and frames[-1]["dropped"] >= 1
    assert "keep up" in frames[-1]["message"]
    seqs = [f["seq"] for f in frames[:-1] if f["type"] == "event"]
    assert seqs and seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # a prefix, no holes
    assert seqs[-1] < last
    await _assert_got_everything(good, first, last)


# -- socket security -------------------------------------------------------------------------------


async def test_socket_is_0600_and_a_configured_directory_is_left_alone(
    start_daemon: StartDaemon, config: Config
) -> None:
    config.socket_path.parent.mkdir(parents=True, mode=0o755)
    os.chmod(config.socket_path.parent, 0o755)  # the operator's own choice of directory
    await start_daemon()
    # Never chmod-ed: it may be a home directory. The socket itself is private.
    assert stat.S_IMODE(config.socket_path.parent.stat().st_mode) == 0o755
    st = config.socket_path.stat()
    assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600


async def test_the_default_directory_is_made_private(
    start_daemon: StartDaemon, state_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(state_dir))
    cfg = Config(daemon=DaemonConfig(database=str(state_dir / "state.db")))
    await start_daemon(cfg=cfg)
    own = state_dir / "harness"
    assert cfg.socket_path.parent == own
    assert stat.S_IMODE(own.stat().st_mode) == 0o700
    assert stat.S_IMODE(cfg.socket_path.stat().st_mode) == 0o600


async def test_a_lax_default_directory_it_did_not_create_is_refused_not_chmodded(
    start_daemon: StartDaemon, state_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(state_dir))
    own = state_dir / "harness"
    own.mkdir(mode=0o755)
    os.chmod(own, 0o755)  # made by someone else: harness does not change it
    cfg = Config(daemon=DaemonConfig(database=str(state_dir / "state.db")))
    with pytest.raises(server.UnsafePath, match=r"mode 755.*chmod 700"):
        await start_daemon(cfg=cfg)
    assert stat.S_IMODE(own.stat().st_mode) == 0o755


async def test_peer_uid_is_read_from_a_real_connection(
    start_daemon: StartDaemon, config: Config
) -> None:
    await start_daemon()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(str(config.socket_path))
        assert _peer_uid(sock) == os.getuid()
    finally:
        sock.close()


async def test_the_stop_removes_the_socket_file(start_daemon: StartDaemon, config: Config) -> None:
    daemon = await start_daemon()
    assert config.socket_path.exists()
    await daemon.stop()
    assert not config.socket_path.exists()


async def test_a_stale_socket_file_is_replaced(
    start_daemon: StartDaemon, connect: Connect, config: Config
) -> None:
    config.socket_path.parent.mkdir(parents=True, mode=0o700)
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(config.socket_path))  # a socket file with nobody listening
    dead.close()
    await start_daemon()
    client = await connect()
    assert (await client.request("status"))["pid"] == os.getpid()


async def test_a_live_foreign_listener_is_refused_and_left_alone(
    start_daemon: StartDaemon, config: Config
) -> None:
    config.socket_path.parent.mkdir(parents=True, mode=0o700)
    other = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    other.bind(str(config.socket_path))
    other.listen()
    try:
        with pytest.raises(AlreadyRunning, match="already listening"):
            await start_daemon()
        assert stat.S_ISSOCK(config.socket_path.lstat().st_mode)  # not unlinked on the way out
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        probe.connect(str(config.socket_path))
        probe.close()
    finally:
        other.close()


async def test_a_second_daemon_on_the_same_socket_is_refused_in_process(
    start_daemon: StartDaemon, connect: Connect
) -> None:
    await start_daemon()
    with pytest.raises(AlreadyRunning, match="already running"):
        await start_daemon()
    assert (await (await connect()).request("status"))["pid"] == os.getpid()


async def test_client_waits_on_a_connection_that_never_answers(state_dir: Path) -> None:
    """A listener that never sends a welcome: connect() gives up after its timeout."""
    from harness.client import DaemonUnavailable

    path = state_dir / "mute.sock"
    mute = await asyncio.start_unix_server(lambda r, w: None, path=str(path))
    try:
        with pytest.raises(DaemonUnavailable, match=r"not responding \(no welcome within 0.2 s\)"):
            await Client.connect(path, timeout=0.2)
    finally:
        mute.close()
    with pytest.raises(DaemonUnavailable, match="does not exist"):
        await Client.connect(state_dir / "absent.sock")


async def test_events_reach_a_client_until_it_closes(
    start_daemon: StartDaemon, connect: Connect
) -> None:
    daemon = await start_daemon()
    client = await connect()
    await client.subscribe(["x:*"])
    e = await publish(daemon, "x:1")
    assert (await next_matching(client, lambda ev: ev.event == "x:1")).seq == e.seq
    await client.close()
    # Left: only the daemon's own subscriber (harness/live_health.py).
    await wait_until(lambda: daemon.bus.subscriber_count == 1)  # type: ignore[union-attr]
    await publish(daemon, "x:2")  # nobody to deliver to, and no error


# -- a client's requests and subscriptions outlive nothing they should not --------------------


class SlowStop(Plugin):
    """Connected; its stop takes a moment, long enough for a client to hang up meanwhile."""

    name = "slowstop"
    version = "1"

    async def start(self, ctx: PluginContext) -> None:
        await ctx.set_connection("connected", username="Slow#1")

    async def stop(self, ctx: PluginContext) -> None:
        await asyncio.sleep(0.3)
        await ctx.set_connection("stopped")


async def test_a_client_hanging_up_mid_request_does_not_leave_a_plugin_half_stopped(
    start_daemon: StartDaemon, raw: Raw, connect: Connect
) -> None:
    daemon = await start_daemon(plugins={"slowstop": SlowStop})
    conn = await raw()
    await conn.hello()
    await conn.send(
        {
            "type": "request",
            "id": 1,
            "method": "plugins.set_enabled",
            "params": {"name": "slowstop", "enabled": False},
        }
    )
    assert daemon.orchestrator is not None
    slot = daemon.orchestrator._slots["slowstop"]
    await wait_until(lambda: slot.lock.locked())  # the disable is under way
    await conn.close()  # Ctrl-C in the CLI, or the TUI quitting
    await wait_until(lambda: not slot.lock.locked())
    client = await connect()
    info = await client.request("plugins.get", name="slowstop")
    assert (info["enabled"], info["status"]) == (False, "disabled")
    assert info["metadata"]["connection"]["state"] == "stopped"
    info = await client.request("plugins.set_enabled", name="slowstop", enabled=True)
    assert info["status"] == "running"
    assert info["metadata"]["connection"]["state"] == "connected"


async def test_a_new_subscribe_replaces_one_still_replaying(
    start_daemon: StartDaemon, raw: Raw, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two subscribes in one write: the first is still paging through history when the second
    arrives. After the second ack, history comes once, in order, then its marker, then live
    events: nothing from the abandoned replay is mixed in or repeated."""
    monkeypatch.setattr(server, "REPLAY_PAGE", 10)
    daemon = await start_daemon()
    for i in range(200):
        await publish(daemon, "history:tick", i=i)
    conn = await raw()
    await conn.hello()
    await conn.send(
        msgspec.json.encode({"type": "subscribe", "id": 1, "events": ["*"], "since": 0})
        + b"\n"
        + msgspec.json.encode({"type": "subscribe", "id": 2, "events": ["*"], "since": 0})
        + b"\n"
    )
    while (frame := await conn.recv())["type"] != "ack" or frame["id"] != 2:
        assert frame["type"] in ("ack", "event"), frame
    head = frame["seq"]
    live = await publish(daemon, "live:tick")
    seqs: list[int] = []
    while (frame := await conn.recv())["type"] != "replayed":
        assert frame["type"] == "event", frame
        seqs.append(frame["seq"])
    assert frame == {"type": "replayed", "id": 2, "count": head}
    assert seqs == list(range(1, head + 1))
    after = await conn.recv()
    assert (after["type"], after["seq"]) == ("event", live.seq)


async def test_a_live_subscribe_replaces_one_still_replaying_and_no_history_follows_its_ack(
    start_daemon: StartDaemon, raw: Raw, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A live subscribe (no ``since``) arriving while a replay pages through history waits for
    that replay to stop, as a replaying one does: after its ack, only live events."""
    monkeypatch.setattr(server, "REPLAY_PAGE", 10)
    daemon = await start_daemon()
    for i in range(200):
        await publish(daemon, "history:tick", i=i)
    conn = await raw()
    await conn.hello()
    await conn.send(
        msgspec.json.encode({"type": "subscribe", "id": 1, "events": ["*"], "since": 0})
        + b"\n"
        + msgspec.json.encode({"type": "subscribe", "id": 2, "events": ["*"]})
        + b"\n"
    )
    while (frame := await conn.recv())["type"] != "ack" or frame["id"] != 2:
        assert frame["type"] in ("ack", "event"), frame
    live = await publish(daemon, "live:tick")
    after = await conn.recv()
    assert (after["type"], after["seq"]) == ("event", live.seq)


async def test_a_live_subscribe_is_made_without_a_task(
    start_daemon: StartDaemon, connect: Connect
) -> None:
    """Live only, nothing to wait for: made in the step that reads it (a task per connection
    cost the daemon its creation and, at close, its teardown). A replay still has one."""
    daemon = await start_daemon()
    old = await publish(daemon, "x:old")
    live, replaying = await connect(), await connect()
    await live.subscribe(["x:*"])
    await replaying.subscribe(["x:*"], since=0)
    assert (await asyncio.wait_for(replaying.next_event(), HANG_GUARD)).seq == old.seq
    assert daemon.server is not None
    tasks = sorted(c._subscription is not None for c in daemon.server.clients)
    assert tasks == [False, True]
    new = await publish(daemon, "x:new")
    assert (await asyncio.wait_for(live.next_event(), HANG_GUARD)).seq == new.seq
