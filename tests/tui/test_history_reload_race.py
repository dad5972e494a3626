"""A transition streamed while the history reads the store (the reload when the link comes
online) stays in the history whichever finishes first. Found as a flaky snapshot under load:
the streamed row was there or not by the order of the two; it was lost either way here."""

import pytest

from harness.config import Config
from harness.protocol import Event
from tests.tui.conftest import until
from tests.tui.test_snapshots import NOW, echo_info, prepared, settled, snapshot_app  # noqa: F401
from tui.widgets.history import ConnectionHistory


@pytest.mark.parametrize("load_first", [False, True])
async def test_a_transition_streamed_during_a_reload_is_kept(
    prepared: Config,  # noqa: F811
    load_first: bool,
) -> None:
    app = snapshot_app(prepared, plugin="echo")
    async with app.run_test(size=(100, 30)) as pilot:
        await app.stream.seed()
        app.stream.apply_infos([echo_info(token=False)])
        app.stream.set_online(5)
        history = app.screen.query_one(ConnectionHistory)
        if load_first:
            await until(pilot, lambda: history.loaded)
        conn = {"state": "not_configured", "reason": "no token", "seq": 6, "since": NOW - 60}
        app.stream.on_event(Event(seq=6, ts=NOW - 60, event="echo:connection", data=conn))
        await until(pilot, lambda: app.plugins["echo"].seq == 6)
        await settled(pilot)
        assert [t[0] for t in history.transitions] == [1, 2, 3, 4, 5, 6]


async def test_a_reload_from_a_database_with_lower_seqs_does_not_freeze_the_history(
    prepared: Config,  # noqa: F811
) -> None:
    """A daemon on a fresh database starts its seqs again: transitions held from before (seqs
    110, 120) are not kept past a reload that reads 1..5, or add() would skip every new one."""
    app = snapshot_app(prepared, plugin="echo")
    async with app.run_test(size=(100, 30)) as pilot:
        await app.stream.seed()
        app.stream.apply_infos([echo_info()])
        history = app.screen.query_one(ConnectionHistory)
        await until(pilot, lambda: history.loaded)
        await settled(pilot)
        history.transitions.clear()
        history.transitions.extend(
            [(110, NOW - 120, "connected", "Old#1"), (120, NOW - 60, "disconnected", "")]
        )
        history.loaded = False
        history.reload()
        await until(pilot, lambda: history.loaded)
        assert [t[0] for t in history.transitions] == [1, 2, 3, 4, 5]
        conn = {"state": "connected", "username": "New#1", "seq": 6, "since": NOW}
        history.add([Event(seq=6, ts=NOW, event="echo:connection", data=conn)])
        assert [t[0] for t in history.transitions][-1] == 6
