"""Widgets of the harness TUI, one per module."""
