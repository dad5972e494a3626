"""``harness alerts``: the alert rules and targets with their delivery state, the notification
history, and a test send to one target. Target URLs are only ever shown redacted."""

from __future__ import annotations

import argparse
import time
from typing import Any

from harness.cli.common import EXIT_FAILED, EXIT_OK, print_json, with_client


def _when(ts: float | None) -> str:
    """A fixed-width stamp for the history's WHEN column."""
    if not ts:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def _moment(ts: float | None) -> str:
    """A moment in the overview: "17:51:34 (in 12 s)" today ("next 2026-11-26 17:51:34" made
    the operator work out how far away today's retry was), with the date on another day."""
    if not ts:
        return "-"
    from harness.cli.output import when

    return when(ts)


def _seconds(value: float) -> str:
    # Imported here: every `harness` command builds the parser, which imports this module.
    from harness.alerts.rules import format_duration

    return format_duration(value)


def print_overview(data: dict[str, Any]) -> None:
    rules = data["rules"]
    if not rules and not data["targets"]:
        print('no alerts configured: add [alerts] targets = ["json://host:port/path"] to the')
        print("config (one line gives a default rule; see docs/alerts.md)")
    if rules:
        print("RULES")
    for name, r in rules.items():
        flap = (
            f"flapping over {r['flap_changes']} changes in {_seconds(r['flap_window'])}"
            if r["flap_changes"]
            else "no flap detection"
        )
        remind = (
            f"remind every {_seconds(r['remind_every'])}" if r["remind_every"] else "no reminders"
        )
        print(
            f"  {name}: plugins {','.join(r['plugins'])} in {','.join(r['states'])} for "
            f"{_seconds(r['for'])}; {'resolved notices' if r['send_resolved'] else 'no resolved'}"
            f"; {remind}; {flap}; targets {','.join(r['targets']) or 'all'}"
        )
    if data["targets"]:
        print("TARGETS")
    for t in data["targets"]:
        state = f"{t['pending']} pending" if t["pending"] else "nothing pending"
        if t.get("last_error"):
            state += (
                f", FAILING ({t['attempts']} attempts, next {_moment(t.get('next_try'))}): "
                f"{t['last_error']}"
            )
        print(f"  {t['name']}  {t['url']}  {state}; last sent {_moment(t.get('last_sent'))}")
    active = data["active"]
    print("ACTIVE" if active else "no alert firing")
    for a in active:
        held = " (silenced: not sent yet)" if a.get("notified") is False else ""
        reason = f": {a['reason']}" if a.get("reason") else ""
        print(
            f"  {a['status'].upper():<8} {a['plugin']} {a['state']}{reason} since "
            f"{_moment(a['since'])} [rule {a['rule']}]{held}"
        )
    for s in data["silences"]:
        print(
            f"MAINTENANCE #{s['id']} {s['plugin']} until {_moment(s['ends'])}"
            + (f": {s['reason']}" if s["reason"] else "")
        )
    hb = data.get("heartbeat")
    if hb:
        print(
            f"HEARTBEAT {hb['url']} every {_seconds(hb['every'])}: {hb['pings']} ping(s), last ok "
            f"{_moment(hb['last_ok'])}"
            + (f", failing: {hb['last_error']}" if hb["last_error"] else "")
        )


def print_history(rows: list[dict[str, Any]]) -> None:
    if not rows:
        print("no notifications yet")
        return
    print(f"{'WHEN':<19}  {'KIND':<9} {'PLUGIN':<12} {'TARGET':<10} {'STATUS':<9} TRIES  DETAIL")
    for r in rows:
        detail = r.get("last_error") or r["title"]
        when = _when(r.get("sent_at") or r["created"])
        print(
            f"{when:<19}  {r['kind']:<9} {r['plugin']:<12} {r['target']:<10} {r['status']:<9} "
            f"{r['attempts']:>5}  {detail}"
        )


def cmd_alerts(args: argparse.Namespace) -> int:
    action = args.action or "list"

    async def body(client: Any) -> int:
        if action == "list":
            data = await client.request("alerts.list")
            print_json(data) if args.json else print_overview(data)
            return EXIT_OK
        if action == "history":
            params: dict[str, Any] = {"limit": args.limit}
            if args.target:
                params["target"] = args.target
            rows = await client.request("alerts.history", **params)
            print_json(rows) if args.json else print_history(rows)
            return EXIT_OK
        result = await client.request("alerts.test", target=args.target)
        if args.json:
            print_json(result)
        elif result["sent"]:
            print(f"test notification sent to {result['target']} ({result['url']})")
        else:
            print(
                f"test notification to {result['target']} ({result['url']}) FAILED: "
                f"{result['error']}"
            )
        return EXIT_OK if result["sent"] else EXIT_FAILED

    return with_client(args, body)
