"""First paint as the operator sees it: a process in a real terminal, read through an emulator.

The app under test (and its baseline) runs in a pseudo-terminal of 100x30 with a real Textual
driver, exactly as ``harness-tui`` runs in a terminal. Everything it writes is fed to a terminal
emulator (pyte), and first paint is the moment the emulated screen first *shows* what it must:
for the TUI, the plugins screen with every plugin's live status and the link online, not a blank
or "connecting" placeholder replaced later; for a minimal Textual app, its one line of text.
Timed from just before the process is started, so interpreter start-up and imports count for
both. Both are then killed the same way.

Why not ``on_ready`` in a headless app, as before: Ready fires after the first layout, whatever it
shows (the TUI's said "connecting to the daemon…" with an empty table), and a headless driver
never turns a frame into terminal output.

Bytecode: both run with a private ``PYTHONPYCACHEPREFIX``, warmed by one discarded run, so each
loads compiled modules as an installed copy does (pip compiles at install). Without it, where
``PYTHONDONTWRITEBYTECODE`` is set (as on the project's machines), the harness and tui modules of
an editable install were compiled from source on every start while the baseline's textual came
compiled from site-packages.
"""

from __future__ import annotations

import fcntl
import os
import queue
import struct
import subprocess
import termios
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from harness.bench.stream import cpu_seconds

SIZE = (100, 30)  # columns, rows

# The strongest minimal app: Textual, one widget, nothing else; painted in the same terminal.
BASELINE_CODE = """
from textual.app import App
from textual.widgets import Static

class Minimal(App):
    def compose(self):
        yield Static("hello")

Minimal().run()
"""
BASELINE_SHOWN = "hello"

# The TUI as its console script starts it (harness-tui = tui.app:main), arguments after it.
TUI_CODE = "import sys; from tui.app import main; sys.exit(main())"

Shown = Callable[[list[str]], bool]


@dataclass
class Paint:
    wall_ms: float  # process start -> the screen first shows what it must
    cpu_ms: float  # the process's CPU time (all threads) at that moment
    screen: list[str]  # the screen then, for a report


def child_env(pycache: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment both apps run in: a terminal's, compiled bytecode in ``pycache``."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", "NO_COLOR")}
    env.update(TERM="xterm-256color", PYTHONPYCACHEPREFIX=str(pycache), **(extra or {}))
    env.pop("TEXTUAL_THEME", None)
    return env


def first_paint(
    argv: Sequence[str], shown: Shown, env: dict[str, str], timeout: float = 60.0
) -> Paint:
    """Run ``argv`` in a 100x30 pseudo-terminal until its screen satisfies ``shown``.

    A thread reads the terminal and stamps each chunk as it arrives; the emulator is fed here,
    apart. Fed inline, the emulator's time per chunk (a full frame is several reads) would hold
    up the app's writes, and a bigger screen would pay for it more than the baseline's."""
    import pyte  # the benchmark's own dependency (the dev extra), not the app's

    columns, rows = SIZE
    screen = pyte.Screen(columns, rows)
    stream = pyte.ByteStream(screen)
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
    chunks: queue.Queue[tuple[float, float, bytes]] = queue.Queue()

    def read() -> None:
        while True:
            try:
                data = os.read(master, 1 << 16)
            except OSError:  # EIO: the process closed the terminal (it ended), or we did
                data = b""
            at = time.perf_counter()
            try:
                cpu = cpu_seconds(proc.pid)
            except OSError:  # gone
                cpu = float("nan")
            chunks.put((at, cpu, data))
            if not data:
                return

    started = time.perf_counter()
    proc = subprocess.Popen(
        list(argv), stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True
    )
    os.close(slave)
    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        deadline = started + timeout
        while True:
            try:
                at, cpu, data = chunks.get(timeout=max(0.0, deadline - time.perf_counter()))
            except queue.Empty:
                raise TimeoutError(
                    "never shown; the screen was:\n" + "\n".join(screen.display)
                ) from None
            if not data:
                raise RuntimeError(
                    f"{argv[0]} ended (status {proc.poll()}) before showing it; the screen was:\n"
                    + "\n".join(screen.display)
                )
            stream.feed(data)
            if shown(screen.display):
                return Paint((at - started) * 1000, cpu * 1000, screen.display)
    finally:
        proc.kill()
        proc.wait()
        os.close(master)
        reader.join(5)


def contains(*texts: str) -> Shown:
    """Every one of ``texts`` is somewhere on the screen."""

    def check(lines: list[str]) -> bool:
        screen = "\n".join(lines)
        return all(t in screen for t in texts)

    return check


def rows_shown(rows: Sequence[Sequence[str]], *texts: str) -> Shown:
    """Each of ``rows`` on one line (every cell of it), and ``texts`` anywhere on the screen."""
    anywhere = contains(*texts)

    def check(lines: list[str]) -> bool:
        return anywhere(lines) and all(
            any(all(cell in line for cell in cells) for line in lines) for cells in rows
        )

    return check


def measure(
    apps: Sequence[tuple[str, Sequence[str], Shown]], runs: int, env: dict[str, str]
) -> dict[str, list[Paint]]:
    """``runs`` first paints of each app, interleaved (so load changes hit all alike), after
    one discarded run each that compiles the bytecode."""
    for _, argv, shown in apps:
        first_paint(argv, shown, env)
    found: dict[str, list[Paint]] = {name: [] for name, _, _ in apps}
    for _ in range(runs):
        for name, argv, shown in apps:
            found[name].append(first_paint(argv, shown, env))
    return found
