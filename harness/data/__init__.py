"""Files shipped with harness: systemd unit templates."""
