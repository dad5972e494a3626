"""``python -m harness.bench cli``: the one-shot commands against stdlib clients doing the same
request, in the same run, against one real ``harness run`` process.

- ``harness --help``: wall time of the process (median), against the 100 ms budget, as the
  installed ``harness`` script and as ``python -m harness``; the interpreter's own start is
  printed beside it for scale: ``python -c pass``, ``-I`` (site-packages and its ``.pth``
  files still run) and ``-S`` (no site at all).
- ``harness status --json``: against a stdlib client (socket + json) that sends the same hello
  and request and prints the same answer. Three times: with ``--socket`` (no config to read),
  with a config file (``--config``) naming the socket, and with no option at all, the config
  file found where the operator keeps it (``$XDG_CONFIG_HOME/harness/config.toml``).
- ``harness events --since 0 --json`` over a stored history: wall time and peak RSS against a
  stdlib client that subscribes the same way and passes on the event lines (known by their
  first bytes, as harness does; other frames decoded) until the ``replayed`` marker. The
  baseline passes on each received block of event lines in one write, as harness does (a
  newline never occurs inside a frame, so a block is all events when each of its line starts
  is an event's), and each run of event lines in a block with other frames in one write too;
  the line-by-line client the figures were first measured against is timed
  beside it, for scale.

Byte code: the children run with ``PYTHONPYCACHEPREFIX`` in the temporary directory and may
write byte code there (one warm-up run each before timing). With ``PYTHONDONTWRITEBYTECODE``
set, as it may be on a development machine, an editable install compiled every harness module
from source on every run while the standard library's came precompiled: the figures measured
the compiler (about 12 ms of CPU per ``status`` here), not what an installed harness, whose
byte code pip writes at install, does.

The stdlib clients end with ``os._exit`` after flushing, as the ``harness`` script does for its
one-shot commands.

Each command is a fresh process (``-m harness``, as the ``harness`` script does); peak memory
is the child's ``ru_maxrss`` from ``os.wait4``."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from harness.bench import heading, median, row
from harness.bench.stream import ServerProcess

# Both stdlib clients end with os._exit once their output is flushed, as the harness script
# does for its one-shot commands: no interpreter teardown on either side.
STDLIB_STATUS = """
import json, os, socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
s.sendall(b'{"type":"hello","protocol":1,"client":"stdlib"}\\n'
          b'{"type":"request","id":1,"method":"status","params":{}}\\n')
f = s.makefile("rb")
for line in f:
    frame = json.loads(line)
    if frame.get("type") == "response":
        print(json.dumps(frame["result"], indent=2))
        break
sys.stdout.flush()
os._exit(0)
"""

# Event lines are known by their first bytes (the daemon writes ``type`` first), as harness
# events does; only the other frames are decoded. A received block whose every line is an
# event goes out in one write (the strongest plain client: what harness events does too); in
# a block with other frames (the welcome and ack, the replayed marker), each run of event
# lines goes out in one write (until the seventh session, line by line: about 400 writes
# with an unbuffered stdout, ``PYTHONUNBUFFERED``, which harness did too).
STDLIB_EVENTS = """
import json, os, socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
s.sendall(b'{"type":"hello","protocol":1,"client":"stdlib"}\\n'
          b'{"type":"subscribe","id":1,"events":["*"],"since":0}\\n')
out = sys.stdout.buffer
prefix = b'{"type":"event"'
inner = b"\\n" + prefix
rest = b""
done = False
while not done:
    chunk = s.recv(65536)
    if not chunk:
        break
    data = rest + chunk
    end = data.rfind(b"\\n") + 1
    block, rest = data[:end], data[end:]
    if block.startswith(prefix) and block.count(inner) == block.count(b"\\n") - 1:
        out.write(block)
        continue
    run = []
    for line in block.split(b"\\n")[:-1]:
        if line.startswith(prefix):
            run.append(line)
            continue
        if run:
            run.append(b"")
            out.write(b"\\n".join(run))
            run = []
        if json.loads(line)["type"] == "replayed":
            done = True
            break
    if run:
        run.append(b"")
        out.write(b"\\n".join(run))
out.flush()
os._exit(0)
"""

# The baseline the figures were first measured against: line by line (for scale).
STDLIB_EVENTS_LINES = """
import json, os, socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
s.sendall(b'{"type":"hello","protocol":1,"client":"stdlib"}\\n'
          b'{"type":"subscribe","id":1,"events":["*"],"since":0}\\n')
out = sys.stdout.buffer
for line in s.makefile("rb"):
    if line.startswith(b'{"type":"event"'):
        out.write(line)
    elif json.loads(line)["type"] == "replayed":
        break
out.flush()
os._exit(0)
"""


def warm(argv: list[str], env: dict[str, str]) -> None:
    """One untimed run: its byte code written (PYTHONPYCACHEPREFIX), its files in the cache."""
    timed(argv, env)


def timed(argv: list[str], env: dict[str, str] | None = None) -> tuple[float, float, float]:
    """(wall ms, peak RSS MiB, CPU ms) of one child process; its output is discarded. CPU
    (user + system) is printed beside wall time because on a shared machine the wall time of
    a short process is mostly waiting for a core."""
    started = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = (time.perf_counter() - started) * 1000
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        assert proc.stderr is not None
        raise RuntimeError(f"{argv[:4]} failed ({proc.returncode}): {proc.stderr.read()!r}")
    return wall, usage.ru_maxrss / 1024, (usage.ru_utime + usage.ru_stime) * 1000


def seed(database: Path, count: int) -> None:
    """``count`` events straight into the daemon's table (the daemon is stopped meanwhile)."""
    now = time.time()
    data = '{"state":"connected","username":"HarnessBot#1234","since":1764100000.0,"n":%d}'
    with sqlite3.connect(database) as db:
        start = db.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()[0]
        db.executemany(
            "INSERT INTO events (seq, ts, name, data) VALUES (?, ?, ?, ?)",
            ((start + i, now, "flood:tick", data % i) for i in range(1, count + 1)),
        )


def main(quick: bool = False) -> int:
    runs = 5 if quick else 15
    events = 10_000 if quick else 100_000
    py = sys.executable
    was = "set" if os.environ.get("PYTHONDONTWRITEBYTECODE") else "unset"
    print(
        f"harness cli benchmark ({'quick' if quick else 'full'}); {os.cpu_count()} CPUs; "
        f"each command a fresh process, median of {runs}; byte code cached as installed "
        f"(PYTHONDONTWRITEBYTECODE was {was})"
    )
    with tempfile.TemporaryDirectory(prefix="hb-cli-") as tmp:
        # See the module's docstring: byte code written and read as an installation has it.
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env["PYTHONPYCACHEPREFIX"] = str(Path(tmp) / "pycache")
        daemon = ServerProcess("daemon", Path(tmp))
        daemon.start()  # creates the schema
        daemon.stop()
        seed(daemon.base / "state.db", events)
        daemon.start()
        try:
            _report(daemon, py, env, runs, events)
        finally:
            daemon.stop()
    return 0


def _report(daemon: ServerProcess, py: str, env: dict[str, str], runs: int, events: int) -> None:
    sock = daemon.path
    config = daemon.base / "harness.toml"
    heading(f"harness --help (load average {os.getloadavg()[0]:.2f})")
    script = Path(py).with_name("harness")  # what pip generated: the command users run
    floors = {
        "python -c pass": [py, "-c", "pass"],
        # -I: no user site, no PYTHON* variables; site-packages and its .pth files still run
        "python -I -c pass": [py, "-I", "-c", "pass"],
        # -S: no site at all (no .pth: not even the editable install's finder)
        "python -S -c pass": [py, "-S", "-c", "pass"],
    }
    helps = {
        "harness --help (the installed script)": [str(script), "--help"],
        "python -m harness --help": [py, "-m", "harness", "--help"],
    }
    if not script.exists():
        del helps["harness --help (the installed script)"]
    timings: dict[str, list[tuple[float, float, float]]] = {k: [] for k in {**helps, **floors}}
    for argv in {**helps, **floors}.values():
        warm(argv, env)
    for _ in range(runs):  # interleaved, so that load spikes hit all of them alike
        for label, argv in {**helps, **floors}.items():
            timings[label].append(timed(argv, env))
    for label in helps:
        row(f"{label}, wall", median([t[0] for t in timings[label]]), "ms", target="<= 100 ms")
        row(f"{label}, CPU", median([t[2] for t in timings[label]]), "ms")
    for label in floors:  # the interpreter's own start, for scale
        row(f"{label} (for scale), wall", median([t[0] for t in timings[label]]), "ms")
        row(f"{label} (for scale), CPU", median([t[2] for t in timings[label]]), "ms")

    heading(
        "harness status --json vs a stdlib client doing the same request "
        f"(load average {os.getloadavg()[0]:.2f})"
    )
    stdlib_code = textwrap.dedent(STDLIB_STATUS)
    commands = {
        "stdlib client (socket + json)": [py, "-c", stdlib_code, sock],
        "harness status --json --socket": [
            py,
            "-m",
            "harness",
            "status",
            "--json",
            "--socket",
            sock,
        ],
        "harness status --json --config": [
            *[py, "-m", "harness", "status", "--json", "--config", str(config)]
        ],
        # No option: the config file the operator keeps in $XDG_CONFIG_HOME/harness/.
        "harness status --json (config found)": [py, "-m", "harness", "status", "--json"],
    }
    found = config.parent / "xdg-config"
    (found / "harness").mkdir(parents=True, exist_ok=True)
    (found / "harness" / "config.toml").write_text(config.read_text())
    envs = {label: env for label in commands}
    envs["harness status --json (config found)"] = {**env, "XDG_CONFIG_HOME": str(found)}
    results: dict[str, list[tuple[float, float, float]]] = {k: [] for k in commands}
    for label, argv in commands.items():
        warm(argv, envs[label])
    for _ in range(runs):  # interleaved, so that load spikes hit all of them alike
        for label, argv in commands.items():
            results[label].append(timed(argv, envs[label]))
    base_label = next(iter(commands))
    for index, what in ((0, "wall"), (2, "CPU")):
        base = median([r[index] for r in results[base_label]])
        for label in commands:
            value = median([r[index] for r in results[label]])
            if label == base_label:
                row(f"{label}, {what}", value, "ms")
            else:
                row(f"{label}, {what}", value, "ms", baseline=base, target="<= 1.3x")

    heading(
        f"harness events --since 0 --json, {events:,} stored events, output to /dev/null "
        f"(load average {os.getloadavg()[0]:.2f})"
    )
    clients = {
        "stdlib": [py, "-c", textwrap.dedent(STDLIB_EVENTS), sock],
        "harness": [py, "-m", "harness", "events", "--since", "0", "--json", "--socket", sock],
        "lines": [py, "-c", textwrap.dedent(STDLIB_EVENTS_LINES), sock],
    }
    for argv in clients.values():
        warm(argv, env)
    samples: dict[str, list[tuple[float, float, float]]] = {k: [] for k in clients}
    order = list(clients)
    # Interleaved, each round starting with the next client (in a fixed order harness always
    # ran right after the baseline). No carry-over was found (the daemon spends no CPU in the
    # second after a replay's client leaves); the rotation only rules it out. Nine rounds,
    # not five: the time is mostly the daemon's (about 300 ms of its CPU per replay here),
    # which swings with the machine's load.
    for round_ in range(max(3, runs * 3 // 5)):
        turn = round_ % len(order)
        for label in order[turn:] + order[:turn]:
            samples[label].append(timed(clients[label], env))

    def figure(label: str, index: int) -> float:
        return median([s[index] for s in samples[label]])

    b_time, b_cpu, b_mem = figure("stdlib", 0), figure("stdlib", 2), figure("stdlib", 1)
    row("stdlib client time", b_time, "ms")
    row("harness events time", figure("harness", 0), "ms", baseline=b_time, target="<= 1.1x")
    row("stdlib client CPU", b_cpu, "ms")
    row("harness events CPU", figure("harness", 2), "ms", baseline=b_cpu)
    row("stdlib client peak RSS", b_mem, "MiB")
    row("harness events peak RSS", figure("harness", 1), "MiB", baseline=b_mem, target="<= 2x")
    row("(scale) stdlib client line by line, time", figure("lines", 0), "ms", baseline=b_time)
    row("(scale) stdlib client line by line, CPU", figure("lines", 2), "ms", baseline=b_cpu)


if __name__ == "__main__":
    sys.exit(main("--quick" in sys.argv))
