"""tui/quick_args.py parses harness-tui's plain command lines without argparse: on every
command line it either makes exactly the namespace argparse makes, or steps aside (None) so
argparse parses it or reports the error. Checked on generated command lines, hostile ones
included."""

from __future__ import annotations

import contextlib
import io
import itertools
import random
from typing import Any

from tui import quick_args
from tui.app import parse_args

WORDS = [
    "--config",
    "--conf",
    "--config=/x",
    "--plugin",
    "--demo-control",
    "--host",
    "--context",
    "--remote-harness",
    "--fleet",
    "--fle",
    "--fleet=1",
    "-h",
    "--help",
    "--version",
    "--",
    "-",
    "",
    " ",
    "-1",
    "/etc/h.toml",
    "discord",
    "http://127.0.0.1:8765",
    "ssh://server",
    "prod",
    "nonsense",
    "a b",
    "-x y",
]


def argparse_namespace(argv: list[str]) -> dict[str, Any] | None:
    """What argparse makes of ``argv`` (None: it printed help or an error and exited)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            return vars(parse_args(argv))
        except SystemExit:
            return None


def check(argv: list[str]) -> bool:
    """Assert the two agree on ``argv``; True if the quick parser took it."""
    quick = quick_args.parse(argv)
    if quick is None:
        return False
    expected = argparse_namespace(argv)
    assert expected is not None, f"quick parser accepted what argparse refuses: {argv!r}"
    assert vars(quick) == expected, argv
    return True


def test_the_common_forms_are_parsed_as_argparse_parses_them() -> None:
    for argv in (
        [],
        ["--config", "/etc/h.toml"],
        ["--plugin", "discord"],
        ["--config", "/etc/h.toml", "--plugin", "discord", "--demo-control", "http://x:1"],
        ["--fleet"],
        ["--host", "ssh://server", "--remote-harness", "harness2"],
        ["--context", "prod"],
        ["--config", "a", "--config", "b"],  # the last one wins, as in argparse
    ):
        assert check(argv), f"not taken by the quick parser: {argv!r}"


def test_what_it_does_not_take_goes_to_argparse() -> None:
    for argv in (
        ["-h"],
        ["--help"],
        ["--version"],
        ["--conf", "x"],  # an abbreviation: argparse's to expand
        ["--config=/x"],
        ["extra"],  # argparse refuses it
        ["--plugin", "-x"],  # a value starting with -
        ["--config"],
    ):
        assert quick_args.parse(argv) is None, argv


def test_generated_command_lines_agree_with_argparse() -> None:
    """Every pair and triple of words, and random longer lines: where the quick parser takes
    one, argparse makes the same namespace of it."""
    taken = 0
    for size in (1, 2, 3):
        for words in itertools.product(WORDS, repeat=size):
            taken += check(list(words))
    rng = random.Random(7)
    for _ in range(2000):
        taken += check(rng.choices(WORDS, k=rng.randint(4, 8)))
    assert taken > 100  # the generator reaches the forms it takes, not only refusals
