"""harness-tui: the Textual monitor for the harness daemon (seeds from SQLite, streams live)."""
