"""Times in event data read as times on the events screen, as in `harness events`: a storage
gap's, a resolved alert's, a silence's and an overdue heartbeat's were shown as Unix epochs
(found trying harness from outside, round 2, fourth session)."""

from __future__ import annotations

import datetime as dt
import re

import pytest

from harness.protocol import Event
from tui.screens.events import compact, describe_event

T0 = 1795683320.25
TZ = dt.UTC


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("daemon:storage", {"state": "recovered", "failed_since": T0, "recovered_at": T0 + 5}),
        ("alert:silence", {"plugin": "echo", "starts": T0, "ends": T0 + 1800, "ended": T0 + 60}),
        ("alert:resolved", {"rule": "down", "plugin": "echo", "fired_at": T0}),
        ("echo:health", {"latency_ms": 1.5, "ack_overdue_since": T0}),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_times_in_event_data_are_clock_times(name: str, data: dict[str, object]) -> None:
    event = Event(seq=7, ts=T0, event=name, data=data)
    for text in (compact(event, width=400, tz=TZ), describe_event(event, TZ)):
        assert not re.search(r"=\d{9,}", text), text
        assert "=08:55:20" in text, text
