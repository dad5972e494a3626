"""harness/cli/quick_parse.py parses the common one-shot command lines without argparse: on
every command line it either makes exactly the namespace argparse makes, or steps aside (None)
so argparse parses it or reports the error. Checked on generated command lines, hostile ones
included."""

from __future__ import annotations

import contextlib
import io
import itertools
import random
import time
from typing import Any

import pytest

from harness.cli import build_parser, quick_parse

# Words a command line is made of: the flags of status and events, the client options,
# values good and bad, and what argparse treats specially (help, abbreviations, =, --,
# negative numbers, empty words, other commands).
WORDS = [
    "status",
    "events",
    "plugins",
    "list",
    "run",
    "--json",
    "--js",
    "--json=1",
    "-f",
    "--follow",
    "-fn",
    "--since",
    "--until",
    "-n",
    "-n5",
    "--lines",
    "--scan",
    "--socket",
    "--sock",
    "--socket=/x",
    "--config",
    "--host",
    "--context",
    "--remote-harness",
    "-h",
    "--help",
    "--version",
    "--",
    "-",
    "",
    " ",
    "-1",
    "-5m",
    "0",
    "12",
    "1042",
    "9" * 30,
    "10m",
    "2h",
    "1.5s",
    "2026-11-25T10:00",
    "10:00",
    "nonsense",
    "٤",
    "²",
    "x:*",
    "*:connection",
    "/tmp/h.sock",
    "ssh://server",
    "a b",
    "-x y",
    "--json --json",
]


PARSER = build_parser(eager=True)  # one parser for every line (argparse parsers are reusable)


def argparse_namespace(argv: list[str]) -> dict[str, Any] | None:
    """What argparse makes of ``argv`` (None: it printed help or an error and exited)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            return vars(PARSER.parse_args(argv))
        except SystemExit:
            return None


def check(argv: list[str]) -> bool:
    """Assert the two agree on ``argv``; True if the quick parser took it."""
    quick = quick_parse.parse(argv)
    if quick is None:
        return False
    expected = argparse_namespace(argv)
    assert expected is not None, f"quick parser accepted what argparse refuses: {argv!r}"
    assert vars(quick) == expected, argv
    return True


@pytest.fixture(autouse=True)
def frozen_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """--since 10m is "10 minutes before now": the same now for both parsers."""
    monkeypatch.setattr(time, "time", lambda: 1_764_100_000.0)


COMMON = [
    ["status", "--json"],
    ["status", "--json", "--socket", "/run/h.sock"],
    ["--socket", "/run/h.sock", "status", "--json"],
    ["--config", "/etc/h.toml", "status"],
    ["status", "--json", "--config", "/etc/h.toml"],
    ["--socket", "a", "status", "--socket", "b"],
    ["--host", "ssh://server", "status", "--remote-harness", "harness2"],
    ["--context", "prod", "status"],
    ["events", "--since", "0", "--json"],
    ["events", "--since", "0", "--json", "--socket", "/run/h.sock"],
    ["events", "-f", "x:*", "--json"],
    ["events", "x:*", "*:connection", "-n", "5"],
    ["events", "--since", "10m", "--until", "2026-11-25T10:00", "--json"],
    ["events", "--lines", "0", "--scan", "10", "--follow"],
    ["events"],
    ["status"],
]


def test_the_common_forms_are_parsed_as_argparse_parses_them() -> None:
    for argv in COMMON:
        assert check(argv), f"not taken by the quick parser: {argv!r}"


def test_what_it_does_not_take_goes_to_argparse() -> None:
    for argv in (
        ["status", "-h"],
        ["--help"],
        ["--version"],
        ["status", "--js"],  # an abbreviation: argparse's to expand
        ["status", "--socket=/x"],
        ["status", "extra"],  # argparse refuses it
        ["events", "a", "--json", "b"],  # a second run of patterns: refused by argparse
        ["events", "-n", "-1"],  # a value starting with -
        ["events", "--since", "nonsense"],  # argparse says what is wrong
        ["events", "-n", "x"],
        ["status", "--socket"],
        ["plugins", "list"],  # not one of its commands
        [],
    ):
        assert quick_parse.parse(argv) is None, argv


def test_generated_command_lines_agree_with_argparse() -> None:
    """Every pair and triple of words after each command, and random longer lines: where
    the quick parser takes one, argparse makes the same namespace of it."""
    taken = 0
    heads = [["status"], ["events"], ["--socket", "/s", "events"], ["--json", "status"], []]
    for head in heads:
        for size in (1, 2):
            for words in itertools.product(WORDS, repeat=size):
                taken += check([*head, *words])
    rng = random.Random(10)
    for _ in range(3000):
        taken += check([rng.choice(WORDS) for _ in range(rng.randint(0, 7))])
        taken += check([rng.choice(["status", "events"]), *rng.choices(WORDS, k=rng.randint(0, 6))])
    assert taken > 500  # the comparison ran on many lines it took, not only refusals
