"""``harness demo``: a throwaway daemon with the Discord plugin on the local gateway, a timer that
flaps the connection, and the TUI on top, so a newcomer can watch the indicator live."""

from __future__ import annotations

import contextlib
import ctypes
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from harness import hangup
from harness.client import Client, DaemonUnavailable

DEMO_TOKEN = "demo-token-not-a-real-secret-0000000000"
_PR_SET_PDEATHSIG = 1


def _say(text: str) -> None:
    print(f"harness demo: {text}", file=sys.stderr, flush=True)


def _die_with_parent() -> None:
    """In the child, before exec: if the demo dies (a dropped SSH session), so does the child,
    instead of living on as an orphan holding a port or a socket. Linux only; harmless elsewhere."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _stop_children(procs: list[subprocess.Popen[bytes] | subprocess.Popen[str]]) -> None:
    for proc in reversed(procs):
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


def _start_gateway(log: Path) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "harness.discord_emulator",
            "--port",
            "0",
            "--token",
            DEMO_TOKEN,
            "--bot-name",
            "HarnessBot",
            # Discord's 41.25 s would leave the indicator without its "· 42 ms" for most of
            # the 20 s between the demo's drops: the first heartbeat comes up to one interval in.
            "--heartbeat-interval",
            "5000",
        ],
        stdout=subprocess.PIPE,
        stderr=log.open("w"),
        text=True,
        preexec_fn=_die_with_parent,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()  # "listening on http://127.0.0.1:PORT"
    if not line.startswith("listening on "):
        proc.kill()
        raise RuntimeError(f"the local gateway did not start (see {log})")
    return proc, line.removeprefix("listening on ")


def _wait_for_daemon(socket_path: Path, daemon: subprocess.Popen[bytes], log: Path) -> None:
    import asyncio

    async def probe() -> None:
        deadline = time.monotonic() + 20
        while True:
            try:
                client = await Client.connect(socket_path, client="harness-demo")
            except DaemonUnavailable:
                if hangup.signalled:
                    return
                if daemon.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the daemon did not start; its log: {log}") from None
                await asyncio.sleep(0.05)
            else:
                await client.close()
                return

    asyncio.run(probe())


def _flapper(url: str, every: float, stop: threading.Event) -> None:
    """Alternate a short drop (discord.py resumes at once) with a 5 s outage (retries with
    attempts), so every state of the indicator shows up within a minute or two."""
    outage = False
    while not stop.wait(every):
        action = "outage?seconds=5" if outage else "drop?code=4000"
        with contextlib.suppress(OSError):
            urllib.request.urlopen(
                urllib.request.Request(f"{url}/_control/{action}", method="POST"), timeout=5
            ).close()
        outage = not outage


def run_demo(*, keep: bool = False, flap_every: float = 20.0) -> int:
    from tui.need_terminal import refusal

    if no_terminal := refusal("harness demo"):
        # Before anything starts: nothing to clean up, and no screen drawn into a pipe.
        print(no_terminal, file=sys.stderr)
        return 2
    # A dropped SSH session, or `kill`: leave through the clean-up below (with SIGTERM's
    # default the demo died at once and left its directory behind). Recorded, and looked at
    # where leaving is safe: harness.hangup says why the handler does not raise.
    hangup.install()
    state = Path(tempfile.mkdtemp(prefix="harness-demo-"))
    procs: list[subprocess.Popen[bytes] | subprocess.Popen[str]] = []
    stop = threading.Event()
    try:
        gateway, url = _start_gateway(state / "gateway.log")
        procs.append(gateway)
        config = state / "harness.toml"
        config.write_text(
            "# Written by `harness demo`: everything lives in this directory.\n"
            f'[daemon]\nsocket = "{state}/harness.sock"\ndatabase = "{state}/state.db"\n\n'
            f'[plugins.discord]\nbot_token = "{DEMO_TOKEN}"\n'
            f'api_base_url = "{url}/api/v10"\ngateway_url = "{url.replace("http", "ws", 1)}/"\n'
            'status_text = "the harness demo"\n'
        )
        log = state / "daemon.log"
        # The daemon logs to a file: the TUI owns the terminal.
        daemon = subprocess.Popen(
            [sys.executable, "-m", "harness", "run", "--config", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=log.open("w"),
            preexec_fn=_die_with_parent,
        )
        procs.append(daemon)
        _say(f"state in {state}; starting the daemon and the local Discord gateway at {url}")
        _wait_for_daemon(state / "harness.sock", daemon, log)
        if hangup.signalled:
            return hangup.signalled  # the clean-up below still runs
        if flap_every > 0:
            threading.Thread(target=_flapper, args=(url, flap_every, stop), daemon=True).start()
        from tui import leaving
        from tui.app import main as tui_main

        def forced() -> None:  # a wedged TUI forced out (tui/leaving.py): clean up all the same
            _stop_children(procs)
            if not keep:
                shutil.rmtree(state, ignore_errors=True)

        leaving.before_forced_exit(forced)

        # The TUI leaves on a SIGTERM or SIGHUP recorded before it started, too.
        code = tui_main(["--config", str(config), "--plugin", "discord", "--demo-control", url])
    except RuntimeError as exc:
        _say(str(exc))
        return 1
    except KeyboardInterrupt:
        code = 130
    finally:
        stop.set()
        _stop_children(procs)
        if keep:
            _say(f"kept {state} (config, database, logs)")
        else:
            shutil.rmtree(state, ignore_errors=True)
    return int(code or 0)
