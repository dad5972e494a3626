"""Which fields a settings save really changed, as a client can tell from the plugin's views.

A save sends only the fields the operator touched, but touching is not changing: emptying an
integer field already at its default unsets a stored value and leaves the effective value as
it was (the daemon's ``plugin:settings`` event says ``changed=[]``). The TUI and ``harness
plugins set`` said "Saved discord: max_backoff." all the same. They compare the plugin's
public settings (the effective values) before and after the save instead.

A secret is reported only as ``{"set": bool}``, so a new value in place of an old one looks the
same before and after: a secret given a value counts as changed (the client cannot see more,
and saying "nothing changed" after a token replacement would be the worse mistake).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any


def really_changed(
    patch: Mapping[str, Any],
    before: Mapping[str, Any],
    after: Mapping[str, Any],
    secrets: Iterable[str] = (),
) -> list[str]:
    """The names in ``patch`` whose public value differs between ``before`` and ``after``
    (sorted), secrets given a value included."""
    secret = set(secrets)
    return sorted(
        name
        for name, value in patch.items()
        if (name in secret and value is not None) or before.get(name) != after.get(name)
    )


def unchanged_message(plugin: str, patch: Mapping[str, Any]) -> str:
    """What to say when a save changed nothing the plugin uses (an emptied field whose
    default is what it had, or the same value typed again)."""
    names = ", ".join(sorted(patch))
    had = "already had that value" if len(patch) == 1 else "already had those values"
    return f"Nothing changed for {plugin}: {names} {had}."
