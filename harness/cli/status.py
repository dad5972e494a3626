"""``harness status``: the daemon and its plugins."""

from __future__ import annotations

import argparse
from typing import Any

from harness.cli.common import EXIT_OK, print_json, with_client
from harness.cli.output import plugin_table


def cmd_status(args: argparse.Namespace) -> int:
    async def body(client: Any) -> int:
        st = await client.request("status")
        if args.json:
            print_json(st)
            return EXIT_OK
        up = int(st["uptime"])
        print(
            f"{st['server']} running: pid {st['pid']}, up {up // 3600}h {up % 3600 // 60}m "
            f"{up % 60}s, seq {st['seq']}, {st['clients']} client(s)"
        )
        print(f"  socket    {st['socket']}\n  database  {st['database']}")
        # "storage   failing: disk full since 12:03 (5 events not stored)"
        print(f"  storage   {storage_line(st.get('storage')).removeprefix('storage ')}")
        plugin_table(st["plugins"])
        return EXIT_OK

    return with_client(args, body)


def storage_line(storage: Any) -> str:
    """``ok``, or ``storage failing: disk full since 12:03 (5 events not stored)``."""
    import msgspec

    from harness import protocol

    if not isinstance(storage, dict):  # a daemon from before storage was reported
        return protocol.describe_storage(None)
    return protocol.describe_storage(msgspec.convert(storage, protocol.StorageHealth))


def register(sub: Any, parents: Any) -> None:
    status = sub.add_parser("status", parents=[parents.client], help="daemon and plugin status")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(func=cmd_status)
