"""harness-tui: the Textual app, its app-level stream worker, and the command-line entry point."""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import msgspec
from textual import on, work
from textual.app import App, ScreenStackError
from textual.binding import Binding
from textual.notifications import SeverityLevel
from textual.reactive import var
from textual.signal import Signal
from textual.theme import Theme
from textual.worker import Worker, WorkerState

import harness
from harness import contexts, hangup
from harness.client import ClientError, DaemonUnavailable
from harness.client_config import load
from harness.config_paths import ConfigError
from harness.protocol import Event
from harness.transport import Target
from tui import collector, demo, leaving, quick_args
from tui.commands import HarnessCommands
from tui.screens.held import draw_when_idle
from tui.screens.plugins import PluginsScreen
from tui.state import KEPT, Clock, EventBatch, LinkState, PluginState
from tui.stream import BeforeSeed, Stream
from tui.ui_state import UiState

# Only the first screen's code is imported at start: the other screens, the key panel (it
# brings in a Markdown parser) and the alerts' types come in when first used, so the first
# paint does not wait for them (docs/benchmarks.md, "tui").
if TYPE_CHECKING:
    import argparse
    from types import SimpleNamespace

    from textual.screen import Screen

    from harness.alerts.silences import Silence
    from tui.screens.settings import SettingsScreen

STREAM_RESTART_DELAY = 1.0  # seconds before restarting a stream worker that crashed (a bug)
# Longest the first frame waits for the daemon's state (online, or offline with the stored
# state), so the operator's first sight is the real screen, not "connecting…" over an empty
# table redrawn a moment later. A daemon that has not answered by then (a slow ssh link, a
# stopped process) gets the placeholder, and the screen fills in when it answers.
FIRST_PAINT_WAIT = 0.5
TOAST_MAX_AGE = 60.0  # seconds: an alert event older than this (a replay) shows no toast


def alert_toast(e: Event) -> tuple[str, str, SeverityLevel] | None:
    """``(title, message, severity)`` of the notification an alert event pops up, or None."""
    d = e.data
    reason = f": {d['reason']}" if d.get("reason") else ""
    held = " (silenced: not sent)" if d.get("silenced") else ""
    if e.event == "alert:fired":
        return "Alert", f"{d.get('plugin')} is {d.get('state')}{reason}{held}", "error"
    if e.event == "alert:resolved":
        return "Resolved", f"{d.get('plugin')} recovered: {d.get('state')}{held}", "information"
    if e.event == "alert:failed":
        return (
            "Alert not delivered",
            f"target {d.get('target')} ({d.get('url')}): {d.get('error')} "
            f"(attempt {d.get('attempts')}, retrying)",
            "warning",
        )
    if e.event == "alert:flapping":
        return "Flapping", f"{d.get('plugin')} keeps changing state{held}", "warning"
    if e.event == "alert:stable":
        return "Stable again", f"{d.get('plugin')} is {d.get('state')}", "information"
    if e.event == "alert:silence":
        change = d.get("change")
        if change == "added":
            return (
                "Maintenance",
                f"#{d.get('id')} {d.get('plugin')}: alerts silenced",
                "information",
            )
        return "Maintenance over", f"#{d.get('id')} {d.get('plugin')} ({change})", "information"
    return None


def _mode_screen(screen: Screen[None]) -> Screen[None]:
    """A mode's first screen, marked as styled with the App's current CSS.

    Textual gives a new screen an out-of-date mark (-1), so the first screen of every mode made
    it re-parse every stylesheet of the App and restyle the DOM (``App.refresh_css``): 15-20 ms
    before the first frame, again on first opening the events and the alerts screens. Nothing
    is out of date: a new screen's widgets are styled with the current stylesheet as they are
    mounted, as the default screen of an App without modes is (Textual does not refresh it).
    A theme change still refreshes every screen: it bumps the App's count past this one.
    Pinned by tests/tui/test_first_paint.py."""
    screen._css_update_count = screen.app._css_update_count
    return screen


def _plugins_screen() -> Screen[None]:
    return _mode_screen(PluginsScreen())


def _events_screen() -> Screen[None]:
    from tui.screens.events import EventsScreen

    return _mode_screen(EventsScreen())


def _alerts_screen() -> Screen[None]:
    from tui.screens.alerts import AlertsScreen

    return _mode_screen(AlertsScreen())


def _showing(screen: object, module: str, name: str) -> bool:
    """Whether ``screen`` is a ``module.name``, without importing a screen never opened."""
    loaded = sys.modules.get(module)
    return loaded is not None and isinstance(screen, getattr(loaded, name))


class HarnessApp(App[None]):
    """The monitor. ``clock`` and ``tz`` are injectable so snapshots can freeze time."""

    # Absolute, so subclasses defined elsewhere (tests, benchmarks) find it too.
    CSS_PATH = Path(__file__).with_name("app.tcss")
    TITLE = "harness"
    MODES: ClassVar = {
        "plugins": _plugins_screen,
        "events": _events_screen,
        "alerts": _alerts_screen,
    }
    DEFAULT_MODE = "plugins"
    COMMANDS = App.COMMANDS | {HarnessCommands}
    BINDINGS = [
        Binding("q", "quit", "Quit", id="quit"),
        Binding("p", "show_plugins", "Plugins", id="plugins"),
        Binding("e", "show_events", "Events", id="events"),
        Binding("a", "show_alerts", "Alerts", id="alerts"),
        Binding("question_mark", "toggle_keys", "Keys", id="keys"),
        Binding("F", "show_fleet", "Fleet", id="fleet", show=False),
        Binding("f", "demo_flap", "Flap connection", id="demo.flap"),
        Binding("o", "demo_outage", "Gateway outage 5 s", id="demo.outage"),
    ]

    # The only writer of these two is the Stream; widgets watch them.
    plugins: var[dict[str, PluginState]] = var(dict)
    link: var[LinkState] = var(LinkState)
    # Silences (maintenance windows) of the last 24 h: the alerts screen lists them, the history
    # widget leaves them out of the uptime. Fetched when the link comes up, then kept live
    # from `alert:silence` events.
    silences: var[tuple[Silence, ...]] = var(tuple)

    def __init__(
        self,
        config: contexts.Config,
        *,
        plugin: str | None = None,
        demo_control: str | None = None,
        clock: Clock = time.time,
        tz: dt.tzinfo | None = None,
        stream: bool = True,
        before_seed: BeforeSeed | None = None,
        cursor_blink: bool = True,
        target: Target | None = None,
        fleet: bool = False,
        ui_state: UiState | None = None,
        export_dir: Path | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        # The daemon watched: the config's own unless a context or --host says otherwise.
        self.target = target or contexts.default_target(config)
        self.start_fleet = fleet
        self.start_plugin = plugin
        self.demo_control = demo_control
        self.clock = clock
        self.tz = tz
        self.cursor_blink = cursor_blink
        self.start_stream = stream
        self.animation_level = "none"
        self.theme = "textual-dark"
        # The operator's choices (the theme) kept across runs; None (tests): nothing kept.
        self.ui_state = ui_state
        if ui_state is not None and ui_state.theme in self.available_themes:
            self.theme = ui_state.theme
        self.export_dir = export_dir or Path.cwd()
        self.before_seed = before_seed
        self.stream = self._new_stream()
        # Raw events in batches, for the events screen and the history widgets.
        self.events_signal: Signal[EventBatch] = Signal(self, "events")
        # The newest events, so an events screen opened late still shows recent history.
        self.recent_events: deque[Event] = deque(maxlen=KEPT)

    def _new_stream(self) -> Stream:
        # Only the config's own daemon has a database we can read; any other target (a
        # remote one, another socket) seeds and reads history through the protocol.
        own = self.target.socket == self.config.socket_path and not self.target.remote
        database = self.config.database_path if own else None
        return Stream(self, self.target, database, before_seed=self.before_seed)

    def on_load(self) -> None:
        # The stream starts before the first screen is composed, not after it is mounted: the
        # daemon answers (and the seed is read) while the screen is built, so the first frame
        # can show them. Everything the stream feeds is wired up here first.
        self.events_signal.subscribe(self, self._remember_events)
        self.events_signal.subscribe(self, self._on_alert_events)
        self.watch(self, "link", self._fetch_silences, init=False)
        if hangup.signalled:
            self.exit_on_signal(hangup.signalled)  # a signal came while the app was being set up
        if self.start_stream:
            self._hold_first_paint()
            self.run_stream()

    _paint_held: contextlib.ExitStack | None = None
    _first_screen_built = False
    _exit_on_signal = 0  # 128 + a signal that came before the first screen was built

    def exit_on_signal(self, code: int) -> None:
        """Exit as ``q`` does with ``code`` (128 + SIGTERM or SIGHUP), from the loop. Not before
        the first screen is built: Textual cannot leave while it composes it (seen with a `kill`
        during `harness demo`'s start: MountError or NoMatches from a screen's on_mount, a
        traceback and exit 1 instead of 143); then, once it is."""
        if self._first_screen_built:
            self.exit(None, code)
        elif not self._exit_on_signal:
            self._exit_on_signal = code

    _silences_after_paint = False

    @property
    def first_frame_released(self) -> bool:
        """Frames are drawn: the first one is no longer held for the daemon's state."""
        return self._paint_held is None

    def _hold_first_paint(self) -> None:
        """No frame until the first screen is built and the stream has the daemon's state, or
        FIRST_PAINT_WAIT after the screen is built."""
        self._paint_held = contextlib.ExitStack()
        self._paint_held.enter_context(self.batch_update())  # Textual draws nothing in a batch
        self.watch(self, "link", self._paint_when_ready, init=False)

    def _paint_when_ready(self, _: object = None) -> None:
        # The stream has decided (online, or offline with the stored state seeded) and the
        # screen shown has built what that state made it add (the settings form's rows): a
        # frame now shows the real screen.
        if not (self.link.changed_at and self._first_screen_built):
            return
        ready = getattr(self.screen, "first_paint_ready", None)
        if ready is None or ready():
            self._release_paint()

    def on_settings_form_ready(self) -> None:
        if self._paint_held is not None:
            self._paint_when_ready()

    def _release_paint(self) -> None:
        held, self._paint_held = self._paint_held, None
        if held is None:
            return
        held.close()
        with contextlib.suppress(ScreenStackError):
            screen = self.screen
            # What was rendered while held went nowhere, but the compositor counts it as shown:
            # its next update would be only the regions changed since (an incomplete screen,
            # completed a frame later). The whole screen is marked dirty, so the first frame
            # is all of it. Pinned by tests/tui/test_first_paint.py.
            compositor = screen._compositor
            compositor._dirty_regions.add(compositor.size.region)
            screen.refresh()  # as App.delay_update ends its batch
            draw_when_idle(self)  # not at the update timer's first tick (tui/screens/held.py)
        self._freeze()
        if self._silences_after_paint:
            self._silences_after_paint = False
            self.call_after_refresh(lambda: self._fetch_silences(self.link))

    def on_mount(self) -> None:
        self.theme_changed_signal.subscribe(self, self._keep_theme)
        if self.start_plugin:
            self.open_settings(self.start_plugin)
        if self.start_fleet:
            self.action_show_fleet()
        # After a screen pushed above has mounted its widgets (its mount is queued first).
        self.call_next(self._first_screen_ready)

    def _first_screen_ready(self) -> None:
        self._first_screen_built = True
        if self._exit_on_signal:
            self.exit(None, self._exit_on_signal)
            return
        if self._paint_held is not None:
            self.set_timer(FIRST_PAINT_WAIT, self._release_paint)
        self._paint_when_ready()

    def on_ready(self) -> None:
        if self._paint_held is None:  # else when the held first frame is let through
            self._freeze()

    _frozen = False

    def _freeze(self) -> None:
        if not self._frozen:  # once: at Ready, or at the held first frame if that is later
            self._frozen = True
            collector.freeze()  # the first screen is up: see tui/collector.py

    def on_unmount(self) -> None:
        collector.unfreeze()

    # -- contexts ---------------------------------------------------------------------------

    def targets(self) -> dict[str, Target]:
        """Every context of the config ("default" first); the current target included."""
        try:
            found = contexts.all_targets(self.config)
        except ConfigError as exc:
            self.notify(str(exc), title="Contexts", severity="error")
            found = {contexts.DEFAULT: contexts.default_target(self.config)}
        return found if self.target.name in found else {self.target.name: self.target, **found}

    def switch_context(self, target: Target) -> None:
        """Watch another daemon: a new stream, a clean slate, the plugins screen."""
        if target == self.target:
            return
        if self._asks_first(functools.partial(self.switch_context, target), f"watch {target.name}"):
            return
        self.target = target
        self.stream = self._new_stream()  # the old stream's leftovers are ignored from now
        self.plugins = {}
        self.link = LinkState()
        self.recent_events.clear()
        if self.start_stream:
            self.run_stream()  # exclusive: cancels the old stream, which closes its link
        while len(self.screen_stack) > 1 and not isinstance(self.screen, PluginsScreen):
            self.pop_screen()
        self.switch_mode("plugins")
        self.notify(f"Watching {target.name} ({target.where}).", title="Context")

    def action_show_fleet(self) -> None:
        from tui.screens.fleet import FleetScreen

        if not isinstance(self.screen, FleetScreen):
            self.push_screen(FleetScreen())

    def _remember_events(self, batch: EventBatch) -> None:
        self.recent_events.extend(batch.events)

    # -- alerts ----------------------------------------------------------------------------

    def _fetch_silences(self, link: LinkState) -> None:
        if not link.online:
            return
        if self._paint_held is not None:
            # Nothing on a first screen shows them: asked once the first frame is drawn, so
            # the request, its answer and the alerts' types stay off the path to that frame.
            self._silences_after_paint = True
            return
        self.run_worker(self._load_silences(), group="silences", exit_on_error=False)

    async def _load_silences(self) -> None:
        try:
            listed = await self.stream.request("silences.list")
        except (DaemonUnavailable, ClientError):
            return  # an older daemon or gone again: the next link change retries
        from harness.alerts.silences import Silence

        self.silences = tuple(msgspec.convert(s, Silence, strict=False) for s in listed)

    def _on_alert_events(self, batch: EventBatch) -> None:
        for e in batch.events:
            if not e.event.startswith("alert:"):
                continue
            if e.event == "alert:silence":
                self._apply_silence(e.data)
            # Replayed history is not news: only recent events pop up.
            if self.clock() - e.ts < TOAST_MAX_AGE:
                toast = alert_toast(e)
                if toast is not None:
                    title, message, severity = toast
                    self.notify(message, title=title, severity=severity, timeout=8)

    def _apply_silence(self, data: dict[str, object]) -> None:
        from harness.alerts.silences import Silence

        try:
            silence = msgspec.convert(data, Silence, strict=False)
        except msgspec.ValidationError:
            return
        kept = tuple(s for s in self.silences if s.id != silence.id)
        self.silences = (*kept, silence)

    def silenced(self, plugin: str) -> Silence | None:
        """The silence covering ``plugin`` now, if any: the TUI shows it as maintenance."""
        now = self.clock()
        return next((s for s in self.silences if s.covers(plugin, now)), None)

    def action_show_alerts(self) -> None:
        if self._asks_first(self.action_show_alerts, "show the alerts"):
            return
        self.switch_mode("alerts")

    def silence_plugin(self, plugin: str) -> None:
        """Open the silence dialog for ``plugin`` (from the command palette)."""
        if self._asks_first(functools.partial(self.silence_plugin, plugin), "show the alerts"):
            return
        self.switch_mode("alerts")
        from tui.screens.alerts import AlertsScreen

        screen = self.screen
        if isinstance(screen, AlertsScreen):
            screen.action_silence(plugin)

    @work(exclusive=True, group="stream", exit_on_error=False)
    async def run_stream(self) -> None:
        await self.stream.run()

    @on(Worker.StateChanged)
    def _worker_changed(self, event: Worker.StateChanged) -> None:
        # Worker failures are handled here, in one place. The stream loop handles every
        # connection problem itself, so an error here is a bug: say so and start over.
        if event.state != WorkerState.ERROR:
            return
        error = event.worker.error
        self.log.error(f"worker {event.worker.name} failed: {error!r}")
        if event.worker.group == "stream":
            self.notify(f"Stream failed ({error}); restarting.", severity="error")
            self.set_timer(STREAM_RESTART_DELAY, self.run_stream)
        else:
            self.notify(f"{event.worker.name} failed: {error}", severity="error")

    # -- navigation ------------------------------------------------------------------------

    def open_settings(self, name: str) -> SettingsScreen:
        """Show the settings screen of ``name`` (on the plugins stack)."""
        from tui.screens.discard import unsaved
        from tui.screens.settings import SettingsScreen

        if (kept := unsaved(self, staying=name)) is not None:
            self._asks_first(functools.partial(self.open_settings, name), f"open {name}")
            return kept  # still there, under the prompt
        if self.current_mode != "plugins":
            self.switch_mode("plugins")
        if isinstance(self.screen, SettingsScreen) and self.screen.plugin == name:
            return self.screen
        while isinstance(self.screen, SettingsScreen):
            self.pop_screen()
        screen = SettingsScreen(name)
        self.push_screen(screen)
        return screen

    def toggle_plugin(self, name: str) -> None:
        if self._asks_first(functools.partial(self.toggle_plugin, name), f"open {name}", name):
            return
        screen = self.open_settings(name)
        self.call_after_refresh(screen.action_toggle_enabled)

    def _keep_theme(self, theme: Theme) -> None:
        if self.ui_state is None or self.ui_state.theme == theme.name:
            return
        self.ui_state.theme = theme.name
        try:
            self.ui_state.save()
        except OSError as exc:
            self.notify(f"Theme not kept for next time: {exc}", severity="warning")

    def _asks_first(self, then: Callable[[], object], words: str, staying: str = "") -> bool:
        """Leaving would lose a settings screen's unsaved edits: True while a prompt asks
        first, and ``then`` is called once they are saved or discarded (tui/screens/discard.py).
        ``staying``: the plugin whose settings screen the caller keeps."""
        if "tui.screens.settings" not in sys.modules:
            return False  # no settings screen was ever opened
        from tui.screens.discard import ask_first

        return ask_first(self, then, words=words, staying=staying or None)

    async def action_quit(self) -> None:
        # q and ctrl+q. SIGTERM and SIGHUP exit directly (leave_on_signals): never a prompt.
        if self._asks_first(self.exit, "quit"):
            return
        self.exit()

    def action_show_plugins(self) -> None:
        if self._asks_first(self.action_show_plugins, "show the plugins"):
            return
        if self.current_mode != "plugins":
            self.switch_mode("plugins")
        # From a settings screen the plugins list is below it on the same stack.
        while _showing(self.screen, "tui.screens.settings", "SettingsScreen"):
            self.pop_screen()

    def action_toggle_keys(self) -> None:
        """``?``: the keys of this screen (Textual's key panel), and ``?`` again hides it."""
        from textual.widgets import HelpPanel

        if self.screen.query(HelpPanel):
            self.action_hide_help_panel()
        else:
            self.action_show_help_panel()

    def action_show_events(self) -> None:
        if self._asks_first(self.action_show_events, "show the events"):
            return
        self.switch_mode("events")

    # -- demo controls ---------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action.startswith("demo_") and not self.demo_control:
            return False  # hidden from the footer and inert without --demo-control
        # The key for the screen already shown only takes footer room (80 columns are few).
        if action == "show_plugins" and isinstance(self.screen, PluginsScreen):
            return False
        if action == "show_events" and _showing(self.screen, "tui.screens.events", "EventsScreen"):
            return False
        if action == "show_alerts" and _showing(self.screen, "tui.screens.alerts", "AlertsScreen"):
            return False
        return True

    @work(group="demo", exit_on_error=False)
    async def action_demo_flap(self) -> None:
        await self._demo(demo.flap)

    @work(group="demo", exit_on_error=False)
    async def action_demo_outage(self) -> None:
        await self._demo(demo.outage)

    async def _demo(self, call: demo.ControlCall) -> None:
        assert self.demo_control is not None
        try:
            result = await call(self.demo_control)
        except demo.ControlError as exc:
            self.notify(str(exc), title="Demo control", severity="error")
            return
        self.notify(result, title="Demo control")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    import argparse

    parser = argparse.ArgumentParser(
        prog="harness-tui",
        description="Monitor and configure the harness daemon: plugins, connections, events.",
    )
    parser.add_argument("--version", action="version", version=f"harness-tui {harness.__version__}")
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="the daemon's config file (default: $HARNESS_CONFIG, else "
        "~/.config/harness/config.toml if it exists, else built-in defaults)",
    )
    parser.add_argument("--plugin", metavar="NAME", help="open straight on this plugin's settings")
    from harness.cli import add_target_options

    add_target_options(parser)
    parser.add_argument(
        "--fleet", action="store_true", help="open on the fleet overview: every context at once"
    )
    parser.add_argument(
        "--demo-control",
        metavar="URL",
        help="local Discord gateway control URL (e.g. http://127.0.0.1:8765): adds the "
        "'f' flap and 'o' outage keys",
    )
    return parser.parse_args(argv)


def read_config(args: argparse.Namespace | SimpleNamespace) -> tuple[contexts.Config, Target]:
    """The config's client part and the daemon to watch. Like every client command, the TUI
    reads only ``[daemon].socket``/``database`` and ``[contexts]`` (harness.client_config): a
    mistake elsewhere in the file is ``harness run``'s and ``harness config``'s to report, and
    must not keep the operator from watching the daemon. Raises ConfigError."""
    config = load(args.config)
    target = contexts.resolve(
        config, host=args.host, context=args.context, remote_harness=args.remote_harness
    )
    return config, target


def leave_on_signals(app: HarnessApp) -> contextlib.AbstractContextManager[None]:
    """While the app runs, `kill` (SIGTERM) and a dropped SSH link (SIGHUP) leave as `q`
    does: the terminal is restored and whoever started the TUI (`harness demo`) runs its
    clean-up. The signal is recorded (harness.hangup says why it is not raised); the running
    loop, if there is one, is asked to exit the app, and on_load looks at the record if the
    app was still being set up."""
    import asyncio

    def leave(code: int) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # not started yet: on_load sees hangup.signalled
        loop.call_soon_threadsafe(app.exit_on_signal, code)

    @contextlib.contextmanager
    def for_sure() -> Iterator[None]:
        # A wedged loop never runs `leave`: a second SIGTERM, or GRACE seconds, end the
        # process anyway; a repeated SIGHUP does not (tui/leaving.py).
        with leaving.leaving(leave) as listener, hangup.recording(listener):
            yield

    return for_sure()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``harness-tui``; returns the exit status."""
    # A plain command line without argparse (tui/quick_args.py says why); argparse otherwise.
    args = quick_args.parse(sys.argv[1:] if argv is None else argv) or parse_args(argv)
    try:
        config, target = read_config(args)
    except ConfigError as exc:
        # Before Textual starts, so the message lands on a normal terminal.
        print(f"harness-tui: {exc}", file=sys.stderr)
        return 2
    from tui.need_terminal import refusal

    if no_terminal := refusal("harness-tui"):
        print(no_terminal, file=sys.stderr)
        return 2
    from tui.wedge_hook import wedgeable

    app = wedgeable(HarnessApp)(
        config,
        plugin=args.plugin,
        demo_control=args.demo_control,
        target=target,
        fleet=args.fleet,
        ui_state=UiState.load(),
    )
    with leave_on_signals(app):
        app.run()
    return app.return_code or 0


if __name__ == "__main__":
    sys.exit(main())
