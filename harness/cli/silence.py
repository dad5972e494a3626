"""``harness silence``: maintenance windows. While one covers a plugin no alert about it is
sent, and the TUI leaves the window out of the plugin's uptime."""

from __future__ import annotations

import argparse
import time
from typing import Any

from harness.cli.common import EXIT_OK, EXIT_USAGE, fail, print_json, with_client


def _when(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def describe(s: dict[str, Any]) -> str:
    state = "active" if s["active"] else ("ended early" if s.get("ended") else "over")
    reason = f": {s['reason']}" if s.get("reason") else ""
    return f"#{s['id']} {s['plugin']} {_when(s['starts'])} .. {_when(s['ends'])} {state}{reason}"


def _bad_add(args: argparse.Namespace) -> str | None:
    """What is wrong with ``silence add``'s own arguments, checked here as the daemon checks
    them: a usage error (exit 2) in the daemon's words, before anything is sent (it was exit 1
    with msgspec's "Expected `str` of length <= 200 - at `$.reason`")."""
    from harness.alerts.rules import seconds
    from harness.alerts.silences import MAX_REASON, MAX_SILENCE, unprintable

    try:
        duration = seconds(args.duration)
    except ValueError as exc:
        return f"duration: {exc}"
    if not 0 < duration <= MAX_SILENCE:
        return f"duration: expected more than 0 and at most {MAX_SILENCE / 86400:g} days (30d)"
    if len(args.reason) > MAX_REASON:
        return f"reason: at most {MAX_REASON} characters, got {len(args.reason)}"
    if (problem := unprintable(args.reason)) is not None:
        return f"reason: {problem}"
    return None


def cmd_silence(args: argparse.Namespace) -> int:
    if args.action == "add" and (problem := _bad_add(args)) is not None:
        return fail(
            args,
            EXIT_USAGE,
            "usage",
            f"silence not added: {problem}",
            hint="\n  e.g. harness silence add discord 30m --reason deploy",
        )

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
