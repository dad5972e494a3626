"""``harness status``: the daemon and its plugins."""

from __future__ import annotations

from harness.cli.common import EXIT_OK, print_json, with_connection

# typing, collections.abc and argparse only for the type checker: a one-shot command pays for
# each import.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from typing import Any


def cmd_status(args: argparse.Namespace) -> int:
    def body(client: Any) -> int:
        st = client.request("status")
        if args.json:
            print_json(st)
            return EXIT_OK
        from harness.cli.output import age, fix_hints, plugin_table, when

        print(
            f"{st['server']} running: pid {st['pid']}, up {age(st['uptime'])} "
            f"(started {when(st['started']).split(' (')[0]}), "
            f"seq {st['seq']}, {st['clients']} client(s)"
        )
        print(f"  socket    {st['socket']}\n  database  {st['database']}")
        # "storage   failing: disk full since 12:03 (5 events not stored)"
        print(f"  storage   {storage_line(st.get('storage')).removeprefix('storage ')}")
        print()  # the table apart from the daemon's lines (`plugins list` starts with it)
        plugin_table(st["plugins"])
        if any((p.get("connection") or {}).get("state") == "not_configured" for p in st["plugins"]):
            # The status answer has no schemas; the list has them, to name the missing keys.
            hints = fix_hints(client.request("plugins.list"))
            if hints:
                print("\nnot configured; next:")
                for hint in hints:
                    print(f"  {hint}")
        return EXIT_OK

    return with_connection(args, body, prepare=None if args.json else _prepare)


def _prepare() -> None:
    from harness.cli.output import prepare

    prepare()


def storage_line(storage: Any) -> str:
    """``ok``, or ``storage failing: disk full since 12:03 (5 events not stored)``."""
    import msgspec

    from harness import protocol

    if not isinstance(storage, dict):  # a daemon from before storage was reported
        return protocol.describe_storage(None)
    return protocol.describe_storage(msgspec.convert(storage, protocol.StorageHealth))
