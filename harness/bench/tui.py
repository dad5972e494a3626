"""``python -m harness.bench tui``: change -> indicator; one part of 64 -> parts table; key delay
under a flood; first paint; idle CPU.

Each figure is printed beside a baseline measured in the same run: a minimal Textual app with one
Static fed by the same socket (for the indicator and the flood), a minimal app with one DataTable
of the same parts updated cell by cell (for the parts table), and a minimal app's first paint
and idle CPU. A change counts as shown when the first frame drawing it reaches the driver
(``FrameStamp``), with nothing polling the app meanwhile. The daemon runs in-process, on the same
event loop as the app under test (run_test), so the CPU figure of the flood covers daemon,
publisher and TUI together; the baseline shares that setup.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, ClassVar

import msgspec

from harness.bench import heading, median, paint, percentile, row
from harness.client import Client, DaemonUnavailable
from harness.config import Config, DaemonConfig
from harness.daemon import Daemon
from harness.plugin import Plugin, PluginContext
from harness.protocol import Event

FLOOD_RATE = 10_000  # events a second in part 2


class BenchPlugin(Plugin):
    """Connects at once and hands its context to the benchmark, which drives its connection."""

    name = "bench"
    version = "1.0"
    description = "benchmark plugin"
    contexts: ClassVar[list[PluginContext]] = []

    async def start(self, ctx: PluginContext) -> None:
        await ctx.set_connection("connected", username="Bench#0")
        BenchPlugin.contexts.append(ctx)

    async def stop(self, ctx: PluginContext) -> None:
        await ctx.set_connection("stopped")


@contextlib.asynccontextmanager
async def bench_daemon() -> AsyncIterator[tuple[Daemon, Config, PluginContext]]:
    base = Path(tempfile.mkdtemp(prefix="harness-bench-tui-"))
    config = Config(
        daemon=DaemonConfig(
            socket=str(base / "run" / "harness.sock"),
            database=str(base / "state" / "state.db"),
            client_queue_frames=100_000,
        )
    )
    BenchPlugin.contexts.clear()
    daemon = Daemon(config, {"bench": BenchPlugin})
    try:
        async with daemon.running():
            yield daemon, config, BenchPlugin.contexts[-1]
    finally:
        shutil.rmtree(base, ignore_errors=True)


class RenderStamp:
    """Wraps a widget's ``render`` to note when it first draws text containing ``expect``."""

    def __init__(self, widget: Any) -> None:
        self.expect: str | None = None
        self.seen_at = 0.0
        original = widget.render

        def render() -> Any:
            result = original()
            if self.expect is not None:
                text = getattr(result, "plain", None)
                text = str(result) if text is None else text
                if self.expect in text:
                    self.seen_at = time.perf_counter()
                    self.expect = None
            return result

        widget.render = render

    def arm(self, expect: str) -> None:
        self.seen_at = 0.0
        self.expect = expect

    async def wait(self, pause: Callable[[], Any], timeout: float = 5.0) -> float:
        deadline = time.perf_counter() + timeout
        while self.expect is not None:
            if time.perf_counter() > deadline:
                raise TimeoutError(f"never rendered {self.expect!r}")
            await pause()
        return self.seen_at


# -- the baseline app ------------------------------------------------------------------------


def make_baseline_app(socket: Path) -> Any:
    """A minimal Textual app: one Static updated per connection event, one for a key."""
    from textual import work
    from textual.app import App, ComposeResult
    from textual.binding import Binding
    from textual.widgets import Static

    class Baseline(App[None]):
        BINDINGS: ClassVar = [Binding("space", "toggle_key", "toggle")]

        def __init__(self) -> None:
            super().__init__()
            self.received = 0
            self.online = False
            self.paused = False

        def compose(self) -> ComposeResult:
            yield Static("waiting", id="conn")
            yield Static("live", id="key")

        def on_mount(self) -> None:
            self.listen()

        @work(exclusive=True)
        async def listen(self) -> None:
            client = await Client.connect(socket, client="bench-baseline")
            await client.subscribe(["*"])
            self.online = True
            conn = self.query_one("#conn", Static)
            try:
                while True:
                    event = await client.next_event()
                    self.received += 1
                    if event.event.endswith(":connection"):
                        data = event.data
                        conn.update(
                            f"{data['state']} {data.get('username', '')} {data.get('reason', '')}"
                        )
                    else:
                        conn.update(f"{event.event} {event.seq}")
            except DaemonUnavailable:
                self.online = False
            finally:
                await client.close()

        def action_toggle_key(self) -> None:
            self.paused = not self.paused
            self.query_one("#key", Static).update("paused" if self.paused else "live")

    return Baseline()


# -- part 1: connection change -> widget -----------------------------------------------------


class FrameStamp:
    """When the first frame showing an expected change was handed to the terminal driver.

    A widget's render method is wrapped to notice the change (``check``); ``App._display``, which
    receives each frame the compositor built, is wrapped to take the time. The benchmark awaits an
    asyncio.Event set there instead of polling with ``pilot.pause``: each pause walks every widget
    on the screen and forces a screen update, which would both slow the app under test (more
    widgets than the baseline) and replace Textual's own frame pacing with the poll's."""

    def __init__(self, app: Any) -> None:
        self.check: Callable[[Any], bool] | None = None
        self.rendered = False
        self.seen_at = 0.0
        self.done = asyncio.Event()
        display = app._display

        def timed_display(screen: Any, renderable: Any) -> None:
            display(screen, renderable)
            if self.rendered and renderable is not None:
                self.rendered = False
                self.seen_at = time.perf_counter()
                self.done.set()

        app._display = timed_display

    def watch(self, widget: Any, method: str) -> None:
        """Wrap ``widget.method`` (``render`` or ``render_lines``) to run the armed check on
        what it returns."""
        original = getattr(widget, method)

        def wrapped(*args: Any) -> Any:
            result = original(*args)
            if self.check is not None and self.check(result):
                self.check = None
                self.rendered = True
            return result

        setattr(widget, method, wrapped)

    def arm(self, check: Callable[[Any], bool]) -> None:
        self.rendered = False
        self.done.clear()
        self.check = check

    async def wait(self, timeout: float = 5.0) -> float:
        try:
            async with asyncio.timeout(timeout):
                await self.done.wait()
        except TimeoutError:
            raise TimeoutError("the change was never painted") from None
        return self.seen_at


def _shows(expect: str) -> Callable[[Any], bool]:
    def check(result: Any) -> bool:
        text = getattr(result, "plain", None)
        return expect in (str(result) if text is None else text)

    return check


async def _online_widget(
    app: Any, pilot: Any, baseline: bool, baseline_id: str, widget_type: type[Any]
) -> Any:
    """The widget a latency run watches, once the app is online: ``baseline_id`` in a minimal
    app, else the HarnessApp's ``widget_type`` on its current screen."""
    if baseline:
        while not app.online:
            await pilot.pause(0.01)
        return app.query_one(baseline_id)
    while not (app.link.online and app.screen.query(widget_type)):
        await pilot.pause(0.01)
    return app.screen.query_one(widget_type)


async def change_latency(changes: int, *, baseline: bool) -> list[float]:
    """ms from ``set_connection`` being called to the first frame showing the change."""
    from tui.app import HarnessApp
    from tui.widgets.connection_status import ConnectionStatus

    samples: list[float] = []
    async with bench_daemon() as (_, config, ctx):
        if baseline:
            app: Any = make_baseline_app(config.socket_path)
        else:
            app = HarnessApp(config, plugin="bench")
        async with app.run_test(size=(100, 30)) as pilot:
            widget = await _online_widget(app, pilot, baseline, "#conn", ConnectionStatus)
            await pilot.pause(0.2)  # settled: the first layout and the seed are drawn
            stamp = FrameStamp(app)
            stamp.watch(widget, "render")
            for i in range(changes):
                name = f"Bench#{i + 1}"
                state = "connected" if i % 2 == 0 else "disconnected"
                stamp.arm(_shows(name))
                started = time.perf_counter()
                if state == "connected":
                    await ctx.set_connection(state, username=name)
                else:  # the indicator shows a retrying connection's reason, not its name
                    await ctx.set_connection(state, attempt=i, reason=name)
                samples.append((await stamp.wait() - started) * 1000)
                # Spaced beyond the stream's burst window, as real connection changes are.
                await asyncio.sleep(0.04)
    return samples


def bench_parts(parts: int, down: int, reason: str, since: float) -> list[Any]:
    """``parts`` parts, all connected since ``since`` except ``down``, which went down now."""
    from harness.protocol import Part

    return [
        Part(
            id=str(n),
            state="disconnected" if n == down else "connected",
            since=time.time() if n == down else since,
            reason=reason if n == down else None,
            latency_ms=40.0,
            guilds=n,
        )
        for n in range(parts)
    ]


def make_baseline_parts_app(socket: Path, parts: int) -> Any:
    """A minimal Textual app: one DataTable of the parts, fed by the same socket; each event
    updates the cells that changed (``update_cell``), as the stock widget is meant to be used."""
    from textual import work
    from textual.app import App, ComposeResult
    from textual.widgets import DataTable

    from harness import render
    from harness.protocol import Part

    class BaselineParts(App[None]):
        def __init__(self) -> None:
            super().__init__()
            self.online = False
            self.rows: dict[str, tuple[str, ...]] = {}

        # As many rows on screen as the TUI's table shows (its max-height), so both paint alike.
        CSS = "#parts { max-height: 11; border: round $panel-lighten-2; }"

        def compose(self) -> ComposeResult:
            yield DataTable(id="parts")

        def on_mount(self) -> None:
            self.query_one(DataTable).add_columns(*render.PART_COLUMNS)
            self.listen()

        @work(exclusive=True)
        async def listen(self) -> None:
            import msgspec

            client = await Client.connect(socket, client="bench-baseline")
            await client.subscribe(["*"])
            table = self.query_one(DataTable)
            columns = [c.key for c in table.ordered_columns]
            self.online = True
            try:
                while True:
                    event = await client.next_event()
                    if not event.event.endswith(":connection"):
                        continue
                    shown = msgspec.convert(event.data.get("parts") or [], list[Part])
                    for part in shown:
                        row = render.part_row(part, time.time(), None)
                        old = self.rows.get(part.id)
                        if old is None:
                            table.add_row(*row, key=part.id)
                        else:
                            for column, cell, was in zip(columns, row, old, strict=True):
                                if cell != was:
                                    table.update_cell(part.id, column, cell)
                        self.rows[part.id] = row
            except DaemonUnavailable:
                self.online = False
            finally:
                await client.close()

    return BaselineParts()


async def parts_latency(changes: int, parts: int, *, baseline: bool = False) -> list[float]:
    """ms from set_connection changing one part of ``parts`` (and the one changed before going
    back to connected) to the first frame painting it (``render_lines`` of the table running
    with the new cell in place)."""
    from tui.app import HarnessApp
    from tui.widgets.parts_table import PartsTable

    samples: list[float] = []
    since = time.time() - 3600
    async with bench_daemon() as (_, config, ctx):
        await ctx.set_connection(
            "connected", username="Bench#0", parts=bench_parts(parts, -1, "", since)
        )
        if baseline:
            app: Any = make_baseline_parts_app(config.socket_path, parts)
        else:
            app = HarnessApp(config, plugin="bench")
        async with app.run_test(size=(100, 30)) as pilot:
            table = await _online_widget(app, pilot, baseline, "#parts", PartsTable)
            # The baseline has no seed: both are shown the parts once more, live.
            await ctx.set_connection(
                "connected", username="Bench#0", parts=bench_parts(parts, -1, "", since)
            )
            while table.row_count != parts:
                await pilot.pause(0.01)
            await pilot.pause(0.2)  # settled: the first layout is drawn
            stamp = FrameStamp(app)
            stamp.watch(table, "render_lines")
            for i in range(changes):
                down = i % min(parts, 8)  # parts on screen, so the change is painted
                reason = f"cause {i}"

                def painted(_: Any, key: str = str(down), text: str = reason) -> bool:
                    return bool(table.get_row(key)[-1] == text)

                stamp.arm(painted)
                started = time.perf_counter()
                await ctx.set_connection(
                    "connecting", username="Bench#0", parts=bench_parts(parts, down, reason, since)
                )
                samples.append((await stamp.wait() - started) * 1000)
                await asyncio.sleep(0.04)
    return samples


# -- part 2: key delay under a flood ---------------------------------------------------------


async def flood_keys(seconds: float, presses: int, *, baseline: bool) -> dict[str, float]:
    from tui.app import HarnessApp
    from tui.screens.events import EventsScreen

    delays: list[float] = []
    async with bench_daemon() as (daemon, config, _):
        bus = daemon.bus
        assert bus is not None
        app: Any = make_baseline_app(config.socket_path) if baseline else HarnessApp(config)
        async with app.run_test(size=(100, 30)) as pilot:
            if baseline:
                while not app.online:
                    await pilot.pause(0.01)
                target: Any = app.query_one("#key")
            else:
                while not app.link.online:
                    await pilot.pause(0.01)
                await pilot.press("e")
                while not isinstance(app.screen, EventsScreen):
                    await pilot.pause(0.01)
                target = app.screen.query_one("#events-state")
            stamp = RenderStamp(target)
            sent = 0
            stop = asyncio.Event()

            async def flood() -> None:
                nonlocal sent
                start = time.perf_counter()
                while not stop.is_set():
                    due = int((time.perf_counter() - start) * FLOOD_RATE) - sent
                    for _ in range(max(0, due)):
                        bus.publish(
                            Event(
                                seq=bus.next_seq(),
                                ts=time.time(),
                                event="bench:tick",
                                data={"n": sent},
                            )
                        )
                        sent += 1
                    await asyncio.sleep(0.002)

            received_before = app.received if baseline else app.stream.events_received
            cpu0, wall0 = time.process_time(), time.perf_counter()
            task = asyncio.create_task(flood())
            gap = seconds / (presses + 1)
            paused = False
            for _ in range(presses):
                await asyncio.sleep(gap)
                paused = not paused
                stamp.arm("paused" if paused else "live")
                started = time.perf_counter()
                await pilot.press("space")
                seen = await stamp.wait(lambda: pilot.pause(0.001))
                delays.append((seen - started) * 1000)
            await asyncio.sleep(max(0.0, seconds - (time.perf_counter() - wall0)))
            stop.set()
            await task
            cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
            received = app.received if baseline else app.stream.events_received
            received -= received_before
            online = app.online if baseline else app.link.online
    return {
        "p50": median(delays),
        "p99": percentile(delays, 99),
        "cpu": cpu / wall * 100,
        "sent_rate": sent / wall,
        "received_rate": received / wall,
        "online": float(online),
    }


# -- part 3: first paint (harness/bench/paint.py) ------------------------------------------

# Idle: say "ready" once settled, then sit until killed; the parent reads our CPU time. On
# SIGUSR1, say how many liveness ticks were read so far (-1: a checkout that does not keep its
# watcher where this looks, as --against's may not) and how often each Textual timer fired
# (by name: "screen_update" is a repaint; "text-change" and "age" were redraws because an age
# on screen changed, before the screen's one clock for ageing texts, which is counted as
# "ageing-clock": it is the event loop's timer, not a Textual one).
_CHILD_IDLE_TUI = """
import collections, signal, sys
from textual.timer import Timer
from harness.config import Config, DaemonConfig
from tui.app import HarnessApp
import tui.ageing as ageing

fired = collections.Counter()
_tick = Timer._tick

async def _counted(self, **kwargs):
    fired[self.name] += 1
    await _tick(self, **kwargs)

Timer._tick = _counted

class Idle(HarnessApp):
    def on_ready(self) -> None:
        self.set_timer({settle}, lambda: (sys.__stdout__.write("ready\\n"), sys.__stdout__.flush()))
        signal.signal(signal.SIGUSR1, self._report)

    def _report(self, *_) -> None:
        watcher = getattr(self.stream, "watcher", None)
        clock = getattr(ageing, "ScreenClock", None)
        if clock is not None and clock.fires:
            fired["ageing-clock"] = clock.fires
        timers = ",".join(f"{{name}}:{{n}}" for name, n in fired.items())
        sys.__stdout__.write(f"ticks {{watcher.ticks if watcher else -1}} {{timers}}\\n")
        sys.__stdout__.flush()

config = Config(daemon=DaemonConfig(socket={socket!r}, database={database!r}))
Idle(config, plugin={plugin!r}).run(headless=True)
"""

_CHILD_IDLE_BASELINE = """
import sys
from textual.app import App
from textual.widgets import Static

class Idle(App):
    def compose(self):
        yield Static("hello")

    def on_ready(self) -> None:
        self.set_timer({settle}, lambda: (sys.__stdout__.write("ready\\n"), sys.__stdout__.flush()))

Idle().run(headless=True)
"""


class Idle(msgspec.Struct, frozen=True):
    """What an idle app process did over a window: CPU time of all its threads (nanosecond
    resolution, ``/proc/PID/task/*/schedstat``) and its wake-ups (voluntary context switches:
    each time a thread blocked and was woken, summed over threads); for an app that does the
    liveness work, the ticks it read in the window (None: not asked; -1: it could not say)."""

    cpu_ns: int
    wall: float
    wakeups: int
    involuntary: int
    ticks: int | None = None
    timers: dict[str, int] = {}  # Textual timers that fired in the window, by name (the TUI)

    @property
    def percent(self) -> float:
        return self.cpu_ns / 1e9 / self.wall * 100


def _threads(pid: int) -> tuple[int, int, int]:
    """(CPU ns, voluntary, involuntary context switches), summed over ``pid``'s threads."""
    cpu = voluntary = involuntary = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/schedstat") as f:
                cpu += int(f.read().split()[0])
            with open(f"/proc/{pid}/task/{task}/status") as f:
                for line in f:
                    if line.startswith("voluntary_ctxt_switches:"):
                        voluntary += int(line.split()[1])
                    elif line.startswith("nonvoluntary_ctxt_switches:"):
                        involuntary += int(line.split()[1])
        except FileNotFoundError:
            continue  # a thread that ended meanwhile (an idle app starts none)
    return cpu, voluntary, involuntary


def _ticks_read(proc: subprocess.Popen[str], timeout: float = 30.0) -> tuple[int, dict[str, int]]:
    """Ask an idle child how many liveness ticks it has read and, if it counts them, how often
    each Textual timer fired (SIGUSR1, one line back: ``ticks N [name:count,...]``)."""
    import select
    import signal

    assert proc.stdout is not None
    proc.send_signal(signal.SIGUSR1)
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    line = proc.stdout.readline() if ready else ""
    if not line.startswith("ticks "):
        raise RuntimeError(f"the idle app did not say its ticks: {line!r}")
    words = line.split()
    timers = dict(item.rsplit(":", 1) for item in words[2].split(",")) if len(words) > 2 else {}
    return int(words[1]), {name: int(n) for name, n in timers.items()}


def idle_cpu(code: str, seconds: float, python: str | None = None, *, ticks: bool = False) -> Idle:
    """What an app process does over ``seconds`` once it has settled (read from /proc).
    ``code``: the child's Python source, or ``-m module args...``; ``python``: another
    checkout's interpreter (``--against``); ``ticks``: ask the child (SIGUSR1) for the
    liveness ticks it read, before and after the window (each asked outside it)."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    args = code.split() if code.startswith("-m ") else ["-c", textwrap.dedent(code)]
    proc = subprocess.Popen(
        [python or sys.executable, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != "ready":
            raise RuntimeError("the idle app did not start")
        ticks0, timers0 = 0, dict[str, int]()
        if ticks:
            ticks0, timers0 = _ticks_read(proc)
            time.sleep(0.1)  # the signal's own wake-up, if any, stays out of the window
        cpu0, vol0, inv0 = _threads(proc.pid)
        wall0 = time.monotonic()
        time.sleep(seconds)
        cpu1, vol1, inv1 = _threads(proc.pid)
        wall = time.monotonic() - wall0
        read, timers = None, {}
        if ticks:
            after, timers1 = _ticks_read(proc)
            read = -1 if min(ticks0, after) < 0 else after - ticks0
            timers = {
                name: n - timers0.get(name, 0)
                for name, n in timers1.items()
                if n > timers0.get(name, 0)
            }
    finally:
        proc.kill()
        proc.wait()
    return Idle(cpu1 - cpu0, wall, vol1 - vol0, inv1 - inv0, read, timers)


def _idle_rows(
    label: str, idle: Idle, base: Idle, same_work: Idle | None = None, target: str = ""
) -> None:
    """An idle app's figures, each against the minimal app (the target's baseline); with
    ``same_work``, its CPU time and wake-ups against that baseline too."""
    row(f"idle CPU, {label}", idle.percent, "%", baseline=base.percent, target=target)
    row("  its CPU time over the window", idle.cpu_ns / 1e6, "ms", baseline=base.cpu_ns / 1e6)
    row("  its wake-ups (voluntary context switches)", idle.wakeups, "", baseline=base.wakeups)
    if same_work is not None:
        row(
            "  its CPU time, vs the same-work baseline",
            idle.cpu_ns / 1e6,
            "ms",
            baseline=same_work.cpu_ns / 1e6,
        )
        row(
            "  its wake-ups, vs the same-work baseline",
            idle.wakeups,
            "",
            baseline=same_work.wakeups,
        )
    if idle.ticks is not None and idle.ticks >= 0:
        row("  liveness ticks it read in the window", idle.ticks, "")
    elif idle.ticks is not None:
        print("    liveness ticks: not counted (that checkout's TUI does not say)", flush=True)
    if idle.timers:
        # What else woke it: a redraw because an age on screen changed ("ageing-clock"; in
        # older checkouts "text-change", "age"), the repaint that follows ("screen_update").
        # The settings screen's ages change every second in the plugin's first minute, then
        # every minute: a 30 s window holds one such change or none, depending on when it
        # starts.
        fired = ", ".join(f"{name} {n}" for name, n in sorted(idle.timers.items()))
        print(f"    Textual timers fired in the window: {fired}", flush=True)


def live_daemon_figures(
    quick: bool, *, first: bool = True, idle: bool = True, against: Path | None = None
) -> None:
    """First paint and idle CPU against a real ``harness run`` with a seeded database."""
    from harness.bench.stream import ServerProcess

    seed = 2_000 if quick else 10_000
    idle_seconds = 5.0 if quick else 30.0
    runs = 2 if quick else 5
    with tempfile.TemporaryDirectory(prefix="harness-bench-live-") as tmp:
        daemon = ServerProcess("daemon", Path(tmp))
        daemon.start()
        try:
            daemon.go(seed, 0)
            deadline = time.monotonic() + 300
            while daemon._request("status")["seq"] < seed:
                if time.monotonic() > deadline:
                    raise RuntimeError("seeding the database timed out")
                time.sleep(0.2)
            socket_path, database = daemon.path, str(daemon.base / "state.db")
            if first:
                config = daemon.base / "harness.toml"
                live_first_paint(daemon._request("plugins.list"), config, runs, against)
            if not idle:
                return
            idle_figures(socket_path, database, idle_seconds, against)
        finally:
            daemon.stop()


def idle_figures(socket_path: str, database: str, seconds: float, against: Path | None) -> None:
    heading(
        f"tui: idle CPU over {seconds:g} s (live daemon, nothing changing; CPU of "
        "all threads in ns from /proc/PID/task/*/schedstat, wake-ups = voluntary "
        "context switches)"
    )
    print(
        "  baselines: the minimal app (the target's); the same-work baseline = the minimal app "
        "plus the TUI's liveness, raw (harness/bench/idle_liveness.py: one connection, the "
        "same ping every=5 ticks, a deadline moved per tick, nothing drawn unless it changes)",
        flush=True,
    )
    settle = 3.0
    base = idle_cpu(_CHILD_IDLE_BASELINE.format(settle=settle), seconds)
    same = idle_cpu(f"-m harness.bench.idle_liveness {socket_path} {settle}", seconds, ticks=True)
    for label, plugin in (("plugins screen", None), ("settings screen", "flood")):
        code = _CHILD_IDLE_TUI.format(
            settle=settle, socket=socket_path, database=database, plugin=plugin
        )
        _idle_rows(label, idle_cpu(code, seconds, ticks=True), base, same, target="<= 1.5x")
        if against is not None:
            # The other checkout's TUI, right after this one's (same daemon, same
            # minute): its tree first on the path, as for first paint.
            other = f"import sys; sys.path.insert(0, {str(against)!r})\n" + code
            python = str(against / ".venv" / "bin" / "python")
            figures = idle_cpu(other, seconds, python, ticks=True)
            _idle_rows(f"--against: {label}", figures, base, same)
    _idle_rows("baseline (minimal app)", base, base)
    _idle_rows("same-work baseline", same, base, same)


def live_first_paint(
    listed: list[dict[str, Any]], config: Path, runs: int, against: Path | None
) -> None:
    heading(
        f"tui: first paint against a live daemon (a real terminal, 100x30: process start -> "
        f"the plugins screen shows every plugin's status and the link online; median of {runs}, "
        "interleaved)"
    )
    # Every plugin's row with its live status, the link online, the footer drawn.
    live = paint.rows_shown(
        [(info["name"], info["status"]) for info in listed], "daemon online", "Quit"
    )
    paints = _first_paints(_tui_argvs(["--config", str(config)], live, against), runs)
    _paint_rows("first paint, live daemon", paints, target="<= 1.3x")


def _tui_argvs(
    args: list[str], shown: paint.Shown, against: Path | None
) -> list[tuple[str, list[str], paint.Shown]]:
    """The TUI of this checkout; with ``against``, also that checkout's (its .venv)."""
    apps = [("tui", [sys.executable, "-c", paint.TUI_CODE, *args], shown)]
    if against is not None:
        # PYTHONPATH (this checkout, for the baseline) would win over that venv's editable
        # install: the other checkout's tree goes first on the path.
        code = f"import sys; sys.path.insert(0, {str(against)!r}); " + paint.TUI_CODE
        apps.append(
            ("against", [str(against / ".venv" / "bin" / "python"), "-c", code, *args], shown)
        )
    return apps


def _first_paints(
    apps: list[tuple[str, list[str], paint.Shown]], runs: int
) -> dict[str, list[paint.Paint]]:
    """First paints of ``apps`` and of the minimal baseline app, interleaved."""
    baseline = ("baseline", [sys.executable, "-c", paint.BASELINE_CODE], paint.contains("hello"))
    with tempfile.TemporaryDirectory(prefix="harness-bench-pyc-") as pycache:
        env = paint.child_env(
            Path(pycache), {"PYTHONPATH": str(Path(__file__).resolve().parents[2])}
        )
        return paint.measure([baseline, *apps], runs, env)


def _paint_rows(label: str, paints: dict[str, list[paint.Paint]], target: str) -> None:
    base = paints["baseline"]
    base_wall, base_cpu = median([p.wall_ms for p in base]), median([p.cpu_ms for p in base])
    for name, prefix in (("tui", ""), ("against", "--against: ")):
        if name not in paints:
            continue
        wall, cpu = (
            median([p.wall_ms for p in paints[name]]),
            median([p.cpu_ms for p in paints[name]]),
        )
        row(prefix + label, wall, "ms", baseline=base_wall, target=target)
        row(prefix + "  its CPU time until then", cpu, "ms", baseline=base_cpu)
    row("baseline first paint (minimal app)", base_wall, "ms")
    row("  its CPU time until then", base_cpu, "ms")


# -- main ------------------------------------------------------------------------------------


PARTS = ("indicator", "parts", "keys", "paint", "idle")


def main(quick: bool = False, argv: list[str] | None = None) -> int:
    """Run the measurements and print them with their baselines and targets."""
    parser = argparse.ArgumentParser(prog="python -m harness.bench tui")
    parser.add_argument(
        "--only", choices=PARTS, action="append", help="run only this part (may be repeated)"
    )
    parser.add_argument(
        "--against",
        type=Path,
        metavar="CHECKOUT",
        help="first paint and idle CPU: also measure the TUI of another checkout "
        "(with its own .venv), interleaved with this one's",
    )
    args = parser.parse_args(argv or [])
    only = set(args.only or PARTS)
    changes = 20 if quick else 200
    seconds, presses = (2.0, 5) if quick else (10.0, 20)
    runs = 2 if quick else 5
    if "indicator" in only:
        indicator_figures(changes)
    if "parts" in only:
        parts_figures(changes)
    if "keys" in only:
        key_figures(seconds, presses)
    if "paint" in only:
        no_daemon_first_paint(runs, args.against)
    if only & {"paint", "idle"}:
        live_daemon_figures(quick, first="paint" in only, idle="idle" in only, against=args.against)
    return 0


def indicator_figures(changes: int) -> None:
    heading(f"tui: daemon set_connection -> ConnectionStatus rendered ({changes} changes)")
    base = asyncio.run(change_latency(changes, baseline=True))
    tui = asyncio.run(change_latency(changes, baseline=False))
    row("p50 latency", median(tui), "ms", baseline=median(base))
    row(
        "p99 latency",
        percentile(tui, 99),
        "ms",
        baseline=percentile(base, 99),
        target="target p99 <= 16.7 ms (one frame)",
    )
    row("baseline p50 (one Static per event)", median(base), "ms")
    row("baseline p99", percentile(base, 99), "ms")


def parts_figures(changes: int) -> None:
    heading(f"tui: one part of 64 changed -> parts table painted ({changes} changes)")
    parts_base = asyncio.run(parts_latency(changes, 64, baseline=True))
    parts = asyncio.run(parts_latency(changes, 64))
    row("p50 latency", median(parts), "ms", baseline=median(parts_base))
    row(
        "p99 latency",
        percentile(parts, 99),
        "ms",
        baseline=percentile(parts_base, 99),
        target="target p99 <= 16.7 ms (one frame)",
    )
    row("baseline p50 (one DataTable, update_cell)", median(parts_base), "ms")
    row("baseline p99", percentile(parts_base, 99), "ms")


def key_figures(seconds: float, presses: int) -> None:
    heading(
        f"tui: key press -> screen changed, under {FLOOD_RATE:,} events/s for "
        f"{seconds:g} s ({presses} presses; daemon in the same process)"
    )
    fb = asyncio.run(flood_keys(seconds, presses, baseline=True))
    ft = asyncio.run(flood_keys(seconds, presses, baseline=False))
    row("key delay p50", ft["p50"], "ms", baseline=fb["p50"])
    row("key delay p99", ft["p99"], "ms", baseline=fb["p99"], target="target <= 100 ms")
    row("process CPU (daemon + publisher + app)", ft["cpu"], "%", baseline=fb["cpu"])
    row("events published", ft["sent_rate"], "ev/s")
    row("events received by the app", ft["received_rate"], "ev/s", baseline=fb["received_rate"])
    row("baseline key delay p50", fb["p50"], "ms")
    row("baseline key delay p99", fb["p99"], "ms")
    row("baseline CPU", fb["cpu"], "%")
    for label, figures in (("tui", ft), ("baseline", fb)):
        if not figures["online"]:
            print(f"  note: the {label} app was cut off by the daemon (lagged) during the flood")


def no_daemon_first_paint(runs: int, against: Path | None) -> None:
    heading(
        "tui: first paint, no daemon (a real terminal, 100x30: process start -> the plugins "
        f"screen says there is no database yet and the link is offline; median of {runs}, "
        "interleaved)"
    )
    with tempfile.TemporaryDirectory(prefix="harness-bench-paint-") as tmp:
        config = Path(tmp) / "harness.toml"
        config.write_text(f'[daemon]\nsocket = "{tmp}/none.sock"\ndatabase = "{tmp}/none.db"\n')
        offline = paint.contains("No database yet", "offline", "Quit")
        paints = _first_paints(_tui_argvs(["--config", str(config)], offline, against), runs)
    _paint_rows("first paint", paints, target="target <= 1000 ms")
