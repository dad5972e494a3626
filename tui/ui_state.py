"""What harness-tui remembers between runs (the theme), in a small file of its own in the user
config directory, so the operator's config.toml and its comments are never rewritten."""

from __future__ import annotations

import os
from pathlib import Path

import msgspec


def default_path() -> Path:
    """``$XDG_CONFIG_HOME/harness/tui.json`` (platformdirs)."""
    import platformdirs

    return platformdirs.user_config_path("harness") / "tui.json"


class UiState(msgspec.Struct):
    # A Struct, not a dataclass: made in C, where a dataclass compiles generated source for
    # its methods on the way to the first frame (tui/state.py says the same).
    theme: str | None = None
    path: Path | None = None  # where it lives

    @classmethod
    def load(cls, path: Path | None = None) -> UiState:
        """The saved state; a missing or unreadable file is a fresh start, never an error."""
        path = path or default_path()
        try:
            state = msgspec.json.decode(path.read_bytes(), type=_Saved)
        except (OSError, msgspec.DecodeError):
            state = _Saved()
        return cls(theme=state.theme, path=path)

    def save(self) -> None:
        """Write atomically (temp file + rename): a crash never leaves half a file."""
        path = self.path or default_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_bytes(msgspec.json.encode(_Saved(theme=self.theme)) + b"\n")
        tmp.replace(path)


class _Saved(msgspec.Struct, kw_only=True, omit_defaults=True):
    theme: str | None = None
