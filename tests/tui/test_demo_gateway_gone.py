"""Reported from outside (round 2, sixth session): in `harness demo`, pressing ``f`` (flap)
after the demo's gateway had died showed a raw connect error ("http://127.0.0.1:PORT:
Connection refused"): it says now what happened and what to do."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from harness.config import Config
from harness.demo import _start_gateway
from tests.conftest import HANG_GUARD
from tests.tui.conftest import make_app, until


@pytest.mark.parametrize("key", ["f", "o"])
async def test_a_fault_key_after_the_gateway_died_says_what_happened(
    config: Config, state_dir: Path, key: str
) -> None:
    # The demo's own gateway, started as the demo starts it, then killed.
    gateway, url = _start_gateway(state_dir / "gateway.log")
    try:
        gateway.kill()
    finally:
        await asyncio.wait_for(asyncio.to_thread(gateway.wait), HANG_GUARD)
        assert gateway.stdout is not None
        gateway.stdout.close()
    notes: list[tuple[str, str | None]] = []
    app = make_app(config, stream=False, demo_control=url)

    def notify(message: str, **kw: object) -> None:
        notes.append((str(message), str(kw.get("severity"))))

    app.notify = notify  # type: ignore[method-assign,assignment]
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press(key)
        await until(pilot, lambda: len(notes) == 1)
    message, severity = notes[0]
    assert severity == "error", notes
    assert f"the demo's gateway at {url} is not running" in message, message
    assert "stopped or crashed" in message and "harness demo" in message, message
