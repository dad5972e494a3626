"""``harness silence``: maintenance windows. While one covers a plugin no alert about it is
sent, and the TUI leaves the window out of the plugin's uptime."""

from __future__ import annotations

import argparse
import time
from typing import Any

from harness.cli.common import EXIT_OK, print_json, with_client


def _when(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def describe(s: dict[str, Any]) -> str:
    state = "active" if s["active"] else ("ended early" if s.get("ended") else "over")
    reason = f": {s['reason']}" if s.get("reason") else ""
    return f"#{s['id']} {s['plugin']} {_when(s['starts'])} .. {_when(s['ends'])} {state}{reason}"


def cmd_silence(args: argparse.Namespace) -> int:
    async def body(client: Any) -> int:
        if args.action == "add":
            s = await client.request(
                "silences.add", plugin=args.plugin, duration=args.duration, reason=args.reason
            )
            print_json(s) if args.json else print(f"silenced {describe(s)}")
        elif args.action == "end":
            s = await client.request("silences.end", id=args.id)
            print_json(s) if args.json else print(f"ended {describe(s)}")
        else:
            silences = await client.request("silences.list")
            if args.json:
                print_json(silences)
            elif not silences:
                print("no silences in the last 24 h")
            else:
                for s in silences:
                    print(describe(s))
        return EXIT_OK

    return with_client(args, body)
