"""The plugins table at 60, 80 and 100 columns keeps the words that matter whole: an overdue
heartbeat ACK and a retry countdown are said in fewer words where the full ones do not fit
("no ACK 14 s", "retry in 50 min") rather than cut ("no heartbeat reply fo…", "retrying in
12…"). The real app through its pilot against a real in-process daemon whose plugins report
the connections, with names and a version as long as the demo's."""

from __future__ import annotations

import re
import time
from typing import Any, ClassVar

import pytest

from harness.config import Config
from harness.plugin import Plugin, PluginContext
from harness.protocol import Health
from tests.conftest import StartDaemon
from tests.tui.conftest import make_app, screen_text, until
from tui.screens.plugins import PluginsScreen


class Late(Plugin):
    """Connected as the demo's bot, 1 ms, its heartbeat ACK 14 s overdue."""

    name = "discord"
    version = "0.1.0"
    ctx: ClassVar[PluginContext | None] = None

    async def start(self, ctx: PluginContext) -> None:
        Late.ctx = ctx
        await ctx.set_connection("connected", username="HarnessBot#1234", latency_ms=1.0)
        ctx.publish_health(Health(latency_ms=1.0, ack_overdue_since=time.time() - 14.0))


class Waiting(Plugin):
    """Disconnected, its second attempt due in 50 min (a countdown that cannot run out under
    the slowest test: at its end it would read "retrying now")."""

    name = "discard"  # as long as the demo's "discord": the same columns
    version = "0.1.0"

    async def start(self, ctx: PluginContext) -> None:
        await ctx.set_connection("disconnected", retry_at=time.time() + 3000.0, attempt=2)


def row(app: Any, name: str) -> str:
    lines = [line for line in screen_text(app).splitlines() if f" {name} " in line]
    return lines[0].rstrip() if lines else ""


# The words each width must show whole (never "…"), for the late ACK and the countdown.
# The ACK's age is "14 s" when published, more on a loaded machine ("2 min" after 90 s).
AGE = r"(\d+) (s|min)"
WANTED = {
    60: (rf"● connected  (\d\d:\d\d  )?1 ms · no ACK {AGE}$", r"○ disconnected  retry in \d+ min$"),
    80: (
        rf"● connected  \d\d:\d\d  1 ms · no ACK {AGE}$",
        r"○ disconnected  .*retrying in \d+ min$",
    ),
    100: (rf"1 ms · no heartbeat reply for {AGE}$", r"retrying in \d+ min · attempt 2$"),
}


@pytest.mark.parametrize("width", sorted(WANTED))
async def test_an_overdue_ack_and_a_countdown_fit_whole(
    width: int, start_daemon: StartDaemon, config: Config
) -> None:
    await start_daemon(plugins={"discord": Late, "discard": Waiting}, cfg=config)
    app = make_app(config)
    late, countdown = WANTED[width]
    async with app.run_test(size=(width, 24)) as pilot:
        await until(pilot, lambda: isinstance(app.screen, PluginsScreen))
        await until(pilot, lambda: app.first_frame_released)
        await until(pilot, lambda: re.search(late, row(app, "discord")) is not None)
        await until(pilot, lambda: re.search(countdown, row(app, "discard")) is not None)
        for name in ("discord", "discard"):
            assert "…" not in row(app, name), row(app, name)
            assert len(row(app, name)) <= width
        # 14 s when it was published, more under load: never less.
        seen = re.search(late, row(app, "discord"))
        assert seen, row(app, "discord")
        number, unit = seen.groups()[-2:]
        assert unit == "min" or int(number) >= 14, row(app, "discord")
