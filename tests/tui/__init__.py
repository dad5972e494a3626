"""Tests of the harness TUI: a real daemon, a real socket, the real app driven by Pilot."""
