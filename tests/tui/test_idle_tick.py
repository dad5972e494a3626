"""An idle TUI's liveness tick reaches nothing in Textual (issue 10's idle CPU: the tick is all
an idle TUI does every 5 s). A tick that changes nothing on screen posts no message, asks for
no repaint and leaves nothing for the event loop to run; only the deadline moves. The real app
through its pilot, a real in-process daemon ticking every 0.05 s.

What runs in a tick is checked while it runs (the watch's callback, wrapped), so timed redraws
of ages on screen, which come on their own schedule, cannot be mistaken for the tick's."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from textual.message_pump import MessagePump
from textual.widget import Widget

from harness.config import Config
from harness.tick_reader import TickReader
from tests.conftest import HANG_GUARD, StartDaemon
from tests.tui.conftest import make_app, open_settings, until


@pytest.mark.parametrize("screen", ["plugins", "settings"])
async def test_a_tick_posts_nothing_and_redraws_nothing(
    start_daemon: StartDaemon, config: Config, monkeypatch: pytest.MonkeyPatch, screen: str
) -> None:
    await start_daemon(cfg=config)
    app = make_app(config)
    # Ticks every 0.05 s; a deadline far away, so that a loaded machine never turns a late
    # tick into "not responding" (a change on screen, which a tick may rightly cause).
    app.stream.ping_after, app.stream.ping_timeout = 0.05, HANG_GUARD
    in_tick = False
    during: list[str] = []
    left_to_run: list[int] = []

    def recording(name: str, original: Any) -> Any:
        def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
            if in_tick:
                during.append(f"{name} on {type(self).__name__}")
            return original(self, *args, **kwargs)

        return wrapper

    monkeypatch.setattr(
        MessagePump, "post_message", recording("post_message", MessagePump.post_message)
    )
    monkeypatch.setattr(Widget, "refresh", recording("refresh", Widget.refresh))
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: app.link.online and app.stream.watcher is not None)
        if screen == "settings":
            await open_settings(pilot, "echo")
        client, watcher = app.stream.client, app.stream.watcher
        assert client is not None and watcher is not None and watcher.ticked
        loop = asyncio.get_running_loop()
        on_tick = client.on_tick
        assert on_tick is not None

        def tick(ok: bool) -> None:
            nonlocal in_tick
            ready = len(loop._ready)  # type: ignore[attr-defined]
            in_tick = True
            try:
                on_tick(ok)
            finally:
                in_tick = False
            left_to_run.append(len(loop._ready) - ready)  # type: ignore[attr-defined]

        client.on_tick = tick
        reader = client._reader
        assert isinstance(reader, TickReader)
        fast, ticks = reader.fast_ticks, watcher.ticks
        await until(pilot, lambda: len(left_to_run) >= 10 and reader.fast_ticks >= fast + 3)
        assert watcher.ticks >= ticks + 10
        assert during == []  # no message posted, no refresh asked for
        assert set(left_to_run) == {0}  # nothing scheduled to run after it (a wake-up)
        assert app.link.online and app.link.responding
