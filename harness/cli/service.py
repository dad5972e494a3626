"""``harness service install``: write the systemd unit for this installation."""

from __future__ import annotations

import argparse
import sys

from harness.cli.common import EXIT_FAILED, EXIT_OK, EXIT_USAGE, err


def cmd_service(args: argparse.Namespace) -> int:
    from harness import config as config_mod
    from harness import service

    system = args.scope == "system"
    # The unit names the file that --config or HARNESS_CONFIG gave (the service does not
    # inherit this shell's environment), once it is known to load: a unit pointing at a
    # missing or bad file would fail at every start.
    file, origin = config_mod.locate(args.config)
    named = str(file) if file is not None and origin in ("flag", "env") else None
    if named is not None:
        try:
            config_mod.load(named)
        except config_mod.ConfigError as exc:
            err(f"{exc}\n  nothing was written; fix the file, then check it: harness config")
            return EXIT_USAGE
    text = service.render(system=system, config=named)
    executable = service.command(named)[0]
    if system and executable.startswith(("/home/", "/root/")):
        # Said on stderr so that --print still gives a clean unit on stdout.
        err(
            f"warning: {executable} is under a home directory, which the system unit hides "
            "(ProtectHome=yes); install harness system-wide first, e.g.\n"
            "  PIPX_HOME=/opt/pipx PIPX_BIN_DIR=/usr/local/bin pipx install .\n"
            "  and run that installation's `harness service install --system`"
        )
    if (
        system
        and named is not None
        and named.startswith(("/home/", "/root/", "/tmp/", "/var/tmp/"))
    ):
        # The same hardening hides the config file: the unit would fail at every start with
        # "no such file" for a file the operator can see.
        err(
            f"warning: the config file {named} is where the system unit cannot see it "
            "(ProtectHome=yes, PrivateTmp=yes); move it, e.g. to /etc/harness/config.toml "
            "(found there without --config), then install again"
        )
    if args.print:
        sys.stdout.write(text)
        return EXIT_OK
    path = service.SYSTEM_UNIT_PATH if system else service.user_unit_path()
    if path.exists() and not args.force:
        err(
            f"{path} already exists; nothing was changed.\n"
            f"  compare with `harness service install --{args.scope} --print`, then "
            f"`harness service install --{args.scope} --force` to replace it"
        )
        return EXIT_USAGE
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    except OSError as exc:
        hint = " (a system unit needs root: run it with sudo)" if system else ""
        err(f"cannot write {path}: {exc.strerror}{hint}")
        return EXIT_FAILED
    print(f"wrote {path}")
    if system:
        print("next, as root:")
        print("  useradd --system --home-dir /var/lib/harness --shell /usr/sbin/nologin harness")
        print("  systemctl daemon-reload && systemctl enable --now harness")
        print("  journalctl -u harness -f            # its log")
    else:
        print("next:")
        print("  systemctl --user daemon-reload && systemctl --user enable --now harness")
        print("  journalctl --user -u harness -f     # its log")
        print('  loginctl enable-linger "$USER"      # keep it running while logged out')
    return EXIT_OK
