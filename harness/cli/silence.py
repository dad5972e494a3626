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


def register(sub: Any, parents: Any) -> None:
    client = parents.client
    silence = sub.add_parser(
        "silence",
        help="maintenance windows: no alerts for a plugin for a while",
        description="e.g. `harness silence add discord 30m --reason deploy`",
    )
    ssub = silence.add_subparsers(dest="action", required=True, metavar="ACTION")
    add = ssub.add_parser("add", parents=[client], help="silence a plugin (a name or glob)")
    add.add_argument("plugin", help="plugin name, or a glob such as '*'")
    add.add_argument("duration", help="how long: 30m, 2h, 90s")
    add.add_argument("--reason", default="", help="shown with the silence")
    end = ssub.add_parser("end", parents=[client], help="end a silence now")
    end.add_argument("id", type=int)
    ssub.add_parser("list", parents=[client], help="silences of the last 24 h")
    for p in ssub.choices.values():
        p.add_argument("--json", action="store_true", help="machine-readable output")
    silence.set_defaults(func=cmd_silence)
