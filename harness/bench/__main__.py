"""Entry point: ``python -m harness.bench NAME [--quick]``; NAME is one of BENCHES below."""

from __future__ import annotations

import argparse
import importlib
import sys

BENCHES = {
    "stream": "bus and socket fan-out vs a minimal asyncio baseline",
    "connection": "local gateway action -> subscriber receives discord:connection",
    "tui": "daemon change -> widget; key delay under a flood; first paint; idle CPU",
    "persist": "plugin API -> SQLite -> stream vs raw sqlite3; retention under a flood",
    "hostile": "another client's status p99 and the daemon's RSS under a hostile subscriber",
    "alerts": "connection change -> notification received; 1,000 queued drained",
    "cli": "harness --help, status and events --since against stdlib clients",
    "fleet": "overview of 20 daemons; --host ssh:// status vs plain ssh",
    "shards": "sharded bot: launch -> every shard connected vs Discord's minimum; RSS per shard",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.bench", description=__doc__)
    parser.add_argument("bench", choices=sorted(BENCHES), help="which benchmark to run")
    parser.add_argument("--quick", action="store_true", help="fewer samples, for a smoke run")
    args, rest = parser.parse_known_args(argv)
    module = importlib.import_module(f"harness.bench.{args.bench}")
    if args.bench in ("persist", "stream", "tui"):  # options of their own (--only, ...)
        return int(module.main(quick=args.quick, argv=rest) or 0)
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    return int(module.main(quick=args.quick) or 0)


if __name__ == "__main__":
    sys.exit(main())
