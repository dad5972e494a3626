"""``harness demo``: a throwaway daemon, the local Discord gateway and the TUI, to watch it live."""

from __future__ import annotations

import argparse
from typing import Any


def cmd_demo(args: argparse.Namespace) -> int:
    from harness.demo import run_demo

    return run_demo(keep=args.keep, flap_every=args.flap_every)


def register(sub: Any, parents: Any) -> None:
    demo = sub.add_parser(
        "demo", help="a throwaway daemon + local Discord gateway + the TUI, to watch it live"
    )
    demo.add_argument("--keep", action="store_true", help="keep the temporary state directory")
    demo.add_argument(
        "--flap-every",
        type=float,
        default=20.0,
        metavar="SECONDS",
        help="drop the gateway connection this often (0: never; keys f/o still work)",
    )
    demo.set_defaults(func=cmd_demo)
