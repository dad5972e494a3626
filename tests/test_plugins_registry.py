"""The plugin registry: built-ins plus the ``harness.plugins`` entry-point group, found through
a real installed-distribution record on sys.path."""

from __future__ import annotations

import logging
import sys
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from harness.client import Client
from harness.plugins import ENTRY_POINT_GROUP, discover
from harness.plugins.discord import DiscordPlugin
from tests.conftest import StartDaemon

PLUGIN_MODULE = """
from harness.plugin import Plugin


class Weather(Plugin):
    name = "weather"
    version = "2.0"

    async def start(self, ctx):
        await ctx.set_connection("connected", username="weather-api")


class Impostor(Plugin):
    name = "discord"  # tries to take a built-in's name


class NotAPlugin:
    name = "nope"
"""


@pytest.fixture
def installed(tmp_path: Path) -> Iterator[Path]:
    """A distribution installed into a directory on sys.path, as pip would leave it."""
    (tmp_path / "harness_weather.py").write_text(PLUGIN_MODULE)
    dist = tmp_path / "harness_weather-2.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: harness-weather\nVersion: 2.0\n")
    (dist / "entry_points.txt").write_text(
        f"[{ENTRY_POINT_GROUP}]\n"
        "weather = harness_weather:Weather\n"
        "impostor = harness_weather:Impostor\n"
        "broken = harness_weather_missing:Thing\n"
        "nope = harness_weather:NotAPlugin\n"
    )
    sys.path.insert(0, str(tmp_path))
    yield tmp_path
    sys.path.remove(str(tmp_path))
    sys.modules.pop("harness_weather", None)


def test_builtins_are_always_there() -> None:
    assert discover()["discord"] is DiscordPlugin


def test_third_party_plugins_are_found_and_bad_ones_skipped(
    installed: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR)
    found = discover()
    assert found["weather"].version == "2.0"
    assert found["discord"] is DiscordPlugin  # a third party cannot shadow a built-in
    assert "nope" not in found
    text = caplog.text
    assert "broken could not be loaded" in text
    assert "nope is not a harness Plugin subclass" in text
    assert "impostor: name 'discord' is already taken" in text


async def test_a_third_party_plugin_runs_in_the_daemon(
    installed: Path, start_daemon: StartDaemon, connect: Callable[[], Awaitable[Client]]
) -> None:
    # The real registry, as `harness run` builds it (the Discord plugin sits unconfigured).
    await start_daemon(plugins=discover())
    client = await connect()
    info = await client.request("plugins.get", name="weather")
    assert info["version"] == "2.0" and info["status"] == "running"
    assert info["metadata"]["connection"]["username"] == "weather-api"
