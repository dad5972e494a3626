"""The app's screens: plugins overview, plugin settings, live events."""
