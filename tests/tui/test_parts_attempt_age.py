"""A part whose attempt is under way says it with its age, counting up ("connecting to the
gateway (attempt 2, 4 s)"), in the parts table as in the indicator. The table redrew its timer
but kept the row it had drawn: a part equal to the one drawn before was taken as reading the
same unless it had a countdown (``retry_at``), so the age stood still at its first value. The
real app through its pilot, its clock the real one."""

from __future__ import annotations

import re
import time

from harness.config import Config
from harness.protocol import Connection, Part
from tests.tui.conftest import make_app, open_settings, until
from tui.widgets.parts_table import PartsTable


async def test_a_parts_attempt_age_counts_up(config: Config) -> None:
    app = make_app(config, stream=False, clock=time.time)
    async with app.run_test(size=(100, 30)) as pilot:
        app.stream.set_online(0)
        screen = await open_settings(pilot, "echo")
        table = screen.query_one(PartsTable)
        started = time.time() - 3
        part = Part(
            id="0",
            state="disconnected",
            since=started - 5,
            attempt=2,
            attempt_started=started,
            attempt_step="connecting to the gateway",
        )
        table.show(Connection(state="disconnected", seq=10**9, since=started - 5, parts=[part]))
        age = re.compile(r"^connecting to the gateway \(attempt 2, (\d+) s\)$")

        def seconds() -> int:
            m = age.match(table.row_texts()[0][-1])
            assert m is not None, table.row_texts()
            return int(m.group(1))

        first = seconds()
        # Before: the timer fired each second, and the row stayed at its first age.
        await until(pilot, lambda: seconds() >= first + 2)
        # The daemon away: nobody reports the attempt, said without an age (as the indicator).
        app.stream.set_offline("connection refused")
        await until(
            pilot, lambda: table.row_texts()[0][-1] == "connecting to the gateway (attempt 2)"
        )
