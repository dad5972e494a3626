"""harness: a plugin-hosting daemon with a Unix-socket event stream and a terminal monitor."""

__version__ = "0.1.0"
