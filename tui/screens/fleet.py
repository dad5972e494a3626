"""FleetScreen: every context at once, one stream each, each drawn by its own row.

Every context gets its own worker and connection (subscribe, then ``connections.snapshot``,
then apply newer only — the same rule as the app's stream) and its own widget, so a slow or
dead context only ever redraws and waits on itself. An unreachable context keeps its last known
state with its age and says why it cannot be reached; it is retried with backoff.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, cast

import msgspec
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Static

from harness import render
from harness.client import Client, ClientError, DaemonUnavailable
from harness.protocol import (
    Connection,
    ConnectionsSnapshot,
    Health,
    keeps_health,
    plugin_of_connection_event,
    plugin_of_health_event,
    to_connection,
)
from harness.transport import Target
from tui.ageing import AgeTimer, TextTimer
from tui.state import ago, connection_seq
from tui.stream import CLIENT_NAME, backoff
from tui.widgets.footer import KeysFooter
from tui.widgets.link_status import LinkStatus

if TYPE_CHECKING:
    from tui.app import HarnessApp

# With the live health: without it a row kept the round trip measured when the link came up
# and never said that a heartbeat went unanswered.
FLEET_EVENTS = ["*:connection", "*:health", "plugin:status"]
HANDSHAKE_TIMEOUT = 5.0  # a context that accepts but never answers is offline after this


@dataclass
class Member:
    """What the fleet knows about one context. Written only by its own :class:`FleetLink`."""

    target: Target
    online: bool = False
    ever_online: bool = False
    changed_at: float = 0.0  # when it last went online or offline (0: still the first try)
    reason: str = "connecting…"
    # False while connected but answering nothing (harness.liveness); ``online`` is False too.
    responding: bool = True
    server: str = ""
    connections: dict[str, Connection] = field(default_factory=dict)
    health: dict[str, Health] = field(default_factory=dict)  # live only, by the same rule
    status: dict[str, str] = field(default_factory=dict)
    changes: int = 0  # events applied; read by the benchmark


class FleetLink:
    """One context's stream: connect, subscribe, snapshot, apply newer; retry forever."""

    def __init__(self, member: Member, row: FleetRow, clock: Any) -> None:
        self.member = member
        self.row = row
        self.clock = clock

    async def run(self) -> None:
        from harness import transport
        from harness.contexts import read_only_message

        attempt = 0
        while True:
            try:
                client = await transport.connect(
                    self.member.target,
                    client=f"{CLIENT_NAME} fleet",
                    timeout=None if self.member.target.remote else HANDSHAKE_TIMEOUT,
                )
            except (DaemonUnavailable, ClientError) as exc:
                self._offline(str(exc))
                await asyncio.sleep(backoff(attempt) * 2)
                attempt = min(attempt + 1, 6)
                continue
            if self.member.target.read_only:
                client.read_only = read_only_message(self.member.target)
            try:
                await self._serve(client)
            except (DaemonUnavailable, ClientError) as exc:
                reason = str(exc)
            finally:
                await client.close()
            self._offline(reason)
            attempt = 0
            await asyncio.sleep(backoff(attempt))
            attempt = 1

    async def _serve(self, client: Client) -> None:
        await client.subscribe(FLEET_EVENTS)
        snapshot = msgspec.convert(
            await client.request("connections.snapshot"), ConnectionsSnapshot
        )
        m = self.member
        m.health = {}  # the last link's health says nothing of this one; the next beat brings it
        m.connections = {
            p.name: conn
            for p in snapshot.plugins
            if (conn := to_connection(p.metadata.get("connection"))) is not None
        }
        m.status = {p.name: ("enabled" if p.enabled else "disabled") for p in snapshot.plugins}
        m.server = client.welcome.server
        m.online = m.ever_online = m.responding = True
        m.changed_at = self.clock()
        m.reason = "live"
        self.row.refresh(layout=True)
        from harness import liveness

        after, timeout = liveness.intervals()
        watch = liveness.Watch(client, self._on_liveness, after=after, timeout=timeout)
        try:
            await self._stream(client)
        finally:
            watch.cancel()

    def _on_liveness(self, last_heard: float | None) -> None:
        from harness import liveness

        m = self.member
        m.online = m.responding = last_heard is None
        if last_heard is None:
            m.changed_at, m.reason = self.clock(), "live"
        else:  # aged from the last word heard, as the watched stream does
            m.changed_at = last_heard
            m.reason = liveness.not_responding(self.clock() - last_heard)
        self.row.refresh(layout=True)

    async def _stream(self, client: Client) -> None:
        m = self.member
        while True:
            event = await client.next_event()
            plugin = plugin_of_connection_event(event.event)
            new_line = False
            if (healthy := plugin_of_health_event(event.event)) is not None:
                current = m.connections.get(healthy)
                try:
                    health = msgspec.convert(event.data, Health)
                except msgspec.ValidationError:
                    continue  # not a health this client understands
                if current is None or not _keeps_health(current):
                    continue  # for a link that is gone already
                m.health[healthy] = health
            elif plugin is not None:
                conn = to_connection(event.data)
                if conn is None:
                    continue  # not a connection object this client understands
                if not conn.seq:
                    conn = msgspec.structs.replace(conn, seq=event.seq)
                if connection_seq(conn) <= connection_seq(m.connections.get(plugin)):
                    continue  # older than the snapshot: ours is newer
                new_line = plugin not in m.connections
                m.connections[plugin] = conn
                if not _keeps_health(conn):
                    m.health.pop(plugin, None)
            elif isinstance(name := event.data.get("plugin"), str):
                m.status[name] = str(event.data.get("status", ""))
            m.changes += 1
            # Only a new plugin adds a line; any other change redraws this row in place.
            self.row.refresh(layout=new_line)

    def _offline(self, reason: str) -> None:
        m = self.member
        if not m.online and m.changed_at and m.reason == reason:
            return  # the same outage, retried: nothing new to draw (the age ticks on its own)
        if m.online or m.changed_at == 0.0:
            m.changed_at = self.clock()
        m.online = False
        m.responding = True  # gone, not frozen: an ordinary outage from here
        m.reason = reason
        self.row.refresh(layout=True)


class FleetRow(Widget):
    """One context: a headline, then a line per plugin connection."""

    DEFAULT_CSS = """
    FleetRow {
        height: auto;
        padding: 0 1;
        text-wrap: nowrap;
        text-overflow: ellipsis;
    }
    FleetRow.-selected {
        background: $boost;
        text-style: bold;
    }
    """

    def __init__(self, member: Member) -> None:
        super().__init__()
        self.member = member
        self._ages = AgeTimer(self)  # "offline 3 min" redrawn when it would read differently
        # A live row's countdowns ("retrying in 12 s") and overdue heartbeats, redrawn when
        # they would read differently (none is booked while nothing on the row ticks).
        self._ticks: TextTimer | None = None

    def on_mount(self) -> None:
        self._ticks = TextTimer(self, self._redraw)

    def _redraw(self) -> None:
        self.refresh()

    @property
    def harness(self) -> HarnessApp:
        return cast("HarnessApp", self.app)

    def on_click(self) -> None:
        screen = self.screen
        if isinstance(screen, FleetScreen):
            screen.select(self)

    def render(self) -> Text:
        m = self.member
        app = self.harness
        now = app.clock()
        text = Text(no_wrap=True, overflow="ellipsis")
        # The selection is also marked by a glyph, not by the highlight alone.
        current = "▸ " if self.has_class("-selected") else "  "
        if m.online:
            head, words = "▲", "online"
        elif m.changed_at == 0.0:
            head, words = "◌", "connecting…"
        elif not m.responding:
            head, words = "?", f"not responding {ago(now - m.changed_at).removesuffix(' ago')}"
        else:
            head, words = "▼", f"offline {ago(now - m.changed_at).removesuffix(' ago')}"
        self._ages.drawn(now, [now - m.changed_at] if not m.online and m.changed_at else [])
        text.append(f"{current}{head} ")
        text.append(m.target.name, style="bold")
        text.append(f"  {words}")
        if m.target == app.target:
            text.append("  (watched)")
        if m.target.read_only:
            text.append("  read-only", style="italic")
        text.append(f"  {m.target.where}", style="dim")
        if not m.online and m.changed_at:
            text.append(f"\n      {m.reason}", style="italic")
        if not m.connections and m.online:
            text.append("\n      no plugins", style="dim")
        stale = not m.online
        changes: list[float] = []
        for name, conn in sorted(m.connections.items()):
            health = None if stale else m.health.get(name)
            text.append("\n      ")
            text.append(
                _plugin_line(name, conn, m.status.get(name, ""), now, app.tz, stale, health)
            )
            if not stale and (w := render.next_change(conn, now, health, short_form=True)):
                changes.append(w)
        if self._ticks is not None:
            self._ticks.book(now, min(changes) if changes else None)
        return text


def _keeps_health(conn: Connection) -> bool:
    return keeps_health(conn.state, (p.state for p in conn.parts))


def _plugin_line(
    name: str,
    conn: Connection,
    status: str,
    now: float,
    tz: Any,
    stale: bool,
    health: Health | None = None,
) -> Text:
    # The same words as the plugins table and the indicator (harness.render).
    parts = [f"{name:<12} {render.short(conn, now, tz, health, stale=stale)}"]
    if status == "disabled":
        parts.append("disabled")
    if stale:
        parts.append("(last known)")
    return Text("  ".join(parts), style="dim" if stale else "")


class FleetList(VerticalScroll, can_focus=True):
    """The rows. It keeps the focus and moves a selection: a focus change per key would
    re-render the footer every time."""

    BINDINGS: ClassVar = [
        Binding("enter", "open", "Open", id="fleet.open"),
        Binding("down,j", "move(1)", "Next", show=False),
        Binding("up,k", "move(-1)", "Previous", show=False),
        Binding("pagedown", "move(5)", show=False),
        Binding("pageup", "move(-5)", show=False),
        Binding("home", "move(-1000)", show=False),
        Binding("end", "move(1000)", show=False),
    ]

    def action_move(self, step: int) -> None:
        screen = self.screen
        if isinstance(screen, FleetScreen):
            screen.move(step)

    def action_open(self) -> None:
        screen = self.screen
        if isinstance(screen, FleetScreen):
            screen.open_selected()


class FleetScreen(Screen[None]):
    """Every context of the config, live; Enter opens one."""

    BINDINGS: ClassVar = [
        Binding("escape", "back", "Back", id="fleet.back"),
    ]

    DEFAULT_CSS = """
    FleetScreen #fleet-note { padding: 0 1; color: $text-muted; }
    """

    def __init__(self) -> None:
        super().__init__()
        self.members: dict[str, Member] = {}
        self.rows: dict[str, FleetRow] = {}
        self.started = time.monotonic()

    @property
    def harness(self) -> HarnessApp:
        return cast("HarnessApp", self.app)

    def compose(self) -> ComposeResult:
        yield LinkStatus("Fleet")
        targets = self.harness.targets()
        yield Static(
            f"{len(targets)} context(s) from [contexts.NAME] in the config · Enter watches one",
            id="fleet-note",
        )
        with FleetList(id="fleet"):
            for name, target in targets.items():
                member = Member(target)
                row = FleetRow(member)
                self.members[name] = member
                self.rows[name] = row
                yield row
        yield KeysFooter()

    def on_mount(self) -> None:
        for name, member in self.members.items():
            link = FleetLink(member, self.rows[name], self.harness.clock)
            # One worker each: a context that hangs holds only its own.
            self.run_worker(link.run(), group="fleet", name=f"fleet:{name}", exit_on_error=False)
        current = self.rows.get(self.harness.target.name)
        self.select(current or next(iter(self.rows.values())))
        self.query_one(FleetList).focus()

    @property
    def selected(self) -> FleetRow | None:
        return next((r for r in self.rows.values() if r.has_class("-selected")), None)

    def select(self, row: FleetRow) -> None:
        for other in self.query("FleetRow.-selected"):
            other.remove_class("-selected")
            other.refresh()
        row.add_class("-selected")
        row.refresh()
        rows = self.query_one(FleetList)
        rows.scroll_to_widget(row, animate=False)
        # Again once laid out: a row selected before the first layout has no place yet.
        self.call_after_refresh(rows.scroll_to_widget, row, animate=False)

    def move(self, step: int) -> None:
        rows = list(self.rows.values())
        current = self.selected
        index = rows.index(current) if current in rows else 0
        self.select(rows[max(0, min(len(rows) - 1, index + step))])

    def open_selected(self) -> None:
        row = self.selected
        if row is None:
            return
        self.app.pop_screen()
        self.harness.switch_context(row.member.target)

    def action_back(self) -> None:
        self.app.pop_screen()

    @property
    def all_online(self) -> bool:
        return all(m.online for m in self.members.values())
