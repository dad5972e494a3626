"""harness/plain_toml.py reads plain TOML without tomllib: on every text it either gives
exactly what tomllib gives (types included) or steps aside (None) so tomllib reads it and
words the error. Checked on generated files, hostile ones included."""

from __future__ import annotations

import random
import tomllib
from importlib import resources
from typing import Any

from harness import plain_toml

LINES = [
    "",
    "   ",
    "# a comment",
    "  # indented comment ]\"'",
    "[daemon]",
    "[daemon] # the daemon",
    " [daemon]",
    "[ daemon ]",
    "[daemon.sub]",
    "[daemon.sub.deeper]",
    "[plugins.discord]",
    "[alerts.rules.connection]",
    "[[alerts.rules]]",
    "[contexts.prod]",
    "[a-b_1]",
    '["quoted"]',
    "[a.]",
    "[]",
    'socket = "/run/h.sock"',
    "socket = '/run/h.sock'",
    'socket="/x" # c',
    'socket = "/x"#c',
    'socket = "a\\nb"',
    'socket = "\\u00e9 \\U0001F600 \\b\\t\\f\\r\\\\ \\""',
    'socket = "\\\\u0041"',
    'socket = "\\ud800"',
    'socket = "\\U0010FFFF"',
    'socket = "\\U00110000"',
    'socket = "\\u00E"',
    'socket = "\\e"',
    'socket = "\\x41"',
    'socket = "\\"',
    'socket = "a\\"b"',
    'socket = """multi"""',
    "socket = 'it''s'",
    'socket = "tab\there"',
    'socket = "ünïcödé ✓"',
    'socket = ""',
    "sub = 1",
    "daemon = 2",
    'contexts = "x"',
    "n = 0",
    "n = -0",
    "n = 007",
    "n = +5",
    "n = 1_000",
    "n = 12345678901234567890123",
    "n = 123456789012345678",
    "x = 0.5",
    "x = -1.25",
    "x = 1.",
    "x = .5",
    "x = 1e3",
    "x = inf",
    "x = nan",
    "b = true",
    "b = false",
    "b = True",
    "b = truex",
    "t = 1979-05-27T07:32:00Z",
    "t = 07:32:00",
    "l = []",
    "l = [ ]",
    'l = ["*"]',
    'l = ["a", "b,c", 1, true,]',
    "l = [1 2]",
    "l = [,]",
    "l = [[1]]",
    "l = [1, # c",
    "l = [",
    "l = [ # opened",
    '  "a",',
    "  1, # one",
    "  2",
    "  # a comment alone",
    "  , 3",
    ",",
    "]",
    "] # closed",
    "]]",
    "i = { a = 1 }",
    "a.b = 1",
    '"q" = 1',
    "k =",
    "= 1",
    "k = 1 2",
    'k = "x" trailing',
    "k = 1\r",
    "k\t= 1",
    "\x00",
    'k = "\x7f"',
    "\ufeff[daemon]",
]


def same(a: Any, b: Any) -> bool:
    """Equal, with the same types all the way down (1, 1.0 and True are not the same)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def check(text: str) -> bool:
    plain = plain_toml.loads(text)
    if plain is None:
        return False
    try:
        expected = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise AssertionError(f"read what tomllib refuses ({exc}): {text!r}") from None
    assert same(plain, expected), (text, plain, expected)
    return True


def test_the_example_config_is_read_as_tomllib_reads_it() -> None:
    text = resources.files("harness.data").joinpath("config.example.toml").read_text()
    assert check(text)


def test_what_it_does_not_read_is_left_to_tomllib() -> None:
    for text in (
        "[daemon]\n[daemon]",  # a table twice
        "a = 1\na = 2",  # a key twice
        "[a]\nb = 1\n[a.b]",  # a value, then a table of that name
        "[a.b]\n[a]\nb = 1",
        'a = "\\ud800"',  # an escape TOML refuses
        "[[a]]",
        "x = 1979-05-27",
        "l = [\n  [1],\n]",  # an array of arrays
        "l = [\n  1\n",  # never closed
    ):
        assert plain_toml.loads(text) is None, text


def test_generated_files_agree_with_tomllib() -> None:
    taken = 0
    for first in LINES:
        for second in LINES:
            taken += check(f"{first}\n{second}")
            taken += check(f"[daemon]\n{first}\n[contexts.x]\n{second}\n")
    rng = random.Random(10)
    for _ in range(3000):
        taken += check("\n".join(rng.choices(LINES, k=rng.randint(0, 12))))
    assert taken > 1000  # compared on many files it read, not only on refusals


def test_generated_arrays_over_several_lines_agree_with_tomllib() -> None:
    items = ['  "a",', "  1, # one", "  # a comment alone", "", "  2", "  , 3", ",", '  "b"']
    rng = random.Random(8)
    taken = 0
    for _ in range(3000):
        opening = rng.choice(["l = [", "l = [ # opened", "l = [1,", "l = [1"])
        closing = rng.choice(["]", "] # closed", "  ]", "]]", "] x", ", ]"])
        body = rng.choices(items, k=rng.randint(0, 5))
        taken += check("\n".join(["[daemon]", opening, *body, closing, 'socket = "/s"', ""]))
    assert taken > 300
