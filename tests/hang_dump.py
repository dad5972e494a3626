"""Before pytest-timeout ends a hung run, say what every asyncio task is waiting on.

pytest-timeout's thread method (pyproject.toml) dumps each thread's stack and exits; for an
asyncio test that shows only the event loop in ``select()``. The hang is in a task: an await
with no deadline. So a timer, armed per test, prints every unfinished task's coroutine stack
to stderr a little before the limit."""

from __future__ import annotations

import asyncio
import gc
import sys
import threading

import pytest

# Dump this long before pytest-timeout's limit (or at 90 % of a short one).
_AHEAD = 10.0


def test_timeout(item: pytest.Item) -> float:
    """The limit pytest-timeout applies to ``item``: its marker, else the ini value (0: none)."""
    marker = item.get_closest_marker("timeout")
    if marker is not None and marker.args:
        return float(marker.args[0] or 0)
    if marker is not None and "timeout" in marker.kwargs:
        return float(marker.kwargs["timeout"] or 0)
    option = item.config.getoption("timeout", None)
    value = option if option is not None else item.config.getini("timeout")
    return float(value or 0)


def dump_tasks(title: str) -> None:
    # From another thread, while the loop is stuck: reading frames is safe enough for a
    # diagnostic, and gc finds the tasks of any loop (the running loop is thread-local).
    tasks = [o for o in gc.get_objects() if isinstance(o, asyncio.Task) and not o.done()]
    out = sys.stderr
    print(f"\n{'+' * 20} {title}: {len(tasks)} asyncio task(s) {'+' * 20}", file=out)
    for task in tasks:
        print(f"--- {task.get_name()} ({task.get_coro()!r})", file=out)
        try:
            task.print_stack(file=out)
        except Exception as exc:  # a frame changing under us: say so, carry on
            print(f"    (stack not readable: {exc!r})", file=out)
    out.flush()


def arm(item: pytest.Item) -> threading.Timer | None:
    if not item.config.pluginmanager.hasplugin("timeout"):
        return None  # a venv from before pytest-timeout: no limit, nothing to dump ahead of
    limit = test_timeout(item)
    if limit <= 0:
        return None
    at = max(limit - _AHEAD, limit * 0.9)
    timer = threading.Timer(at, dump_tasks, args=(f"{item.nodeid} still running after {at:g} s",))
    timer.daemon = True
    timer.start()
    return timer
