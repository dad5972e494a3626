"""``harness demo``: a throwaway daemon, the local Discord gateway and the TUI, to watch it live."""

from __future__ import annotations

import argparse


def cmd_demo(args: argparse.Namespace) -> int:
    from harness.demo import run_demo

    return run_demo(keep=args.keep, flap_every=args.flap_every)
