"""Target URLs as the operator sees them (redacted) and as the log filter masks them, and the
duration syntax of the [alerts] section."""

from __future__ import annotations

import pytest

from harness.alerts.rules import seconds
from harness.alerts.targets import invalid_reason, redact, secrets_of


@pytest.mark.parametrize(
    ("url", "shown", "secret"),
    [
        # The Telegram host is the bot token; apprise masks it, so do we.
        (
            "tgram://123456789:ABCdefGhIJKlmnoPQRstuVWxyz/12345",
            "tgram://…",
            "ABCdefGhIJKlmnoPQRstuVWxyz",
        ),
        ("discord://1234567890/abcdefTOKENxyz123", "discord://…", "abcdefTOKENxyz123"),
        ("slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ", "slack://…", "T1JJ3T3L2"),
        ("ntfy://mytopic-is-secret", "ntfy://…", "mytopic-is-secret"),
        ("ntfys://ntfy.sh/my-secret-topic", "ntfys://ntfy.sh/…", "my-secret-topic"),
        ("mailto://user:pass1234@gmail.com", "mailto://gmail.com/…", "pass1234"),
        (
            "json://u:pw12345@host.example:8080/p/tok12345678?x=secretvalue1",
            "json://host.example/…",
            "tok12345678",
        ),
    ],
)
def test_target_urls_are_shown_redacted_and_masked_in_logs(
    url: str, shown: str, secret: str
) -> None:
    assert invalid_reason(url) is None
    assert redact(url) == shown
    assert secret not in redact(url)
    assert secret in secrets_of(url) and url in secrets_of(url)


@pytest.mark.parametrize("url", ["nosuch://x/y", "json://", "not a url", "discord://"])
def test_urls_apprise_cannot_use_are_named(url: str) -> None:
    assert invalid_reason(url)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("2m", 120.0),
        ("0.3s", 0.3),
        ("250ms", 0.25),
        ("1h", 3600.0),
        ("1d", 86400.0),
        ("45", 45.0),
        (0, 0.0),
        (1.5, 1.5),
    ],
)
def test_durations(text: str | float, value: float) -> None:
    assert seconds(text) == pytest.approx(value)


@pytest.mark.parametrize("bad", ["soon", "-1s", "2 minutes", "", "1w", True, -3, float("inf")])
def test_bad_durations_say_what_is_expected(bad: str | float) -> None:
    with pytest.raises(ValueError, match="expected a duration"):
        seconds(bad)
