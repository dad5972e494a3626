"""Test helpers shipped with harness: a local Discord gateway."""
