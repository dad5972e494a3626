"""config.example.toml documents every key with its real default."""

from __future__ import annotations

import tomllib
from pathlib import Path

import msgspec

from harness import config
from harness.plugins import builtin

EXAMPLE = Path(__file__).resolve().parent.parent / "config.example.toml"


def test_example_daemon_table_equals_the_defaults() -> None:
    loaded = config.load(EXAMPLE)
    assert msgspec.structs.asdict(loaded.daemon) == msgspec.structs.asdict(config.DaemonConfig())
    text = EXAMPLE.read_text()
    for field in msgspec.structs.fields(config.DaemonConfig):
        assert f"\n{field.name} = " in text, f"[daemon] {field.name} is not documented"


def test_example_plugin_tables_match_each_schema() -> None:
    loaded = config.load(EXAMPLE)
    text = EXAMPLE.read_text()
    for plugin in builtin():
        table = loaded.plugins[plugin.name]
        for field in plugin.settings_schema:
            assert field.name in text, f"plugins.{plugin.name}.{field.name} is not documented"
            if field.name in table:
                assert table[field.name] == field.default, field.name
            else:
                assert field.type == "secret", f"{field.name} is only commented out"


def test_example_alerts_table_equals_the_defaults() -> None:
    from harness.alerts.rules import AlertRule, AlertsConfig

    loaded = config.load(EXAMPLE)
    assert msgspec.structs.asdict(loaded.alerts) == msgspec.structs.asdict(AlertsConfig())
    text = EXAMPLE.read_text()
    for field in msgspec.structs.fields(AlertsConfig):
        if field.name != "rules":
            assert f"\n{field.encode_name} = " in text, f"[alerts] {field.name} is not documented"
    # The commented-out rule, uncommented, is the default rule.
    block = text[text.index("# [alerts.rules.connection]") :]
    rule_toml = "\n".join(line.removeprefix("# ") for line in block.splitlines())
    (rule,) = tomllib.loads(rule_toml)["alerts"]["rules"].values()
    assert set(rule) == {f.encode_name for f in msgspec.structs.fields(AlertRule)}
    assert msgspec.convert(rule, AlertRule) == AlertRule()


def test_example_metrics_table_equals_the_defaults() -> None:
    loaded = config.load(EXAMPLE)
    assert loaded.metrics == config.MetricsConfig()
    assert "\n[metrics]\n" in EXAMPLE.read_text()
