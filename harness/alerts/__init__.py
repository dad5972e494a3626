"""Alerts: rules over connection events, targets through apprise, a durable SQLite outbox,
flap handling, silences and an outgoing heartbeat. See ``docs/alerts.md``.

Modules, one concern each: ``rules`` (the ``[alerts]`` config and durations), ``targets``
(apprise: parse, redact, send), ``outbox`` (the SQL of notifications and active firings),
``delivery`` (per-target senders with retry), ``silences`` (maintenance windows), ``engine``
(rule evaluation on the bus), ``heartbeat`` (watching the watcher), ``service`` (wires them into
the daemon and answers its requests).
"""
