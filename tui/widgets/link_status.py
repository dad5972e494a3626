"""LinkStatus: the top bar of every screen, saying where we are and whether the daemon is online.

Online/offline is a glyph and a word, never colour alone. When the link is down for a reason a
retry will not fix (a socket another user could control, a frame over the protocol's limit), the
cause is said here too, with the command that gives the whole story: the link's full detail is
also the bar's tooltip. Over ``--host ssh://…`` a failed ssh link is told from a daemon that is
down: "ssh link down: connection refused (12 s) · retrying", not "daemon offline".
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from rich.text import Text
from textual.widget import Widget

from harness.transport import link_failure_gist
from tui.ageing import AgeTimer
from tui.state import LinkState, ago

if TYPE_CHECKING:
    from tui.app import HarnessApp

# What the clients say (harness/socket_trust.py) -> the words that fit the bar at 80 columns.
# Matched on the messages' stable openings: the stream hands the link only the text.
_CAUSES = (
    ("refusing to talk to", "socket not trusted"),
    ("frame larger than", "a frame over the size limit"),
)
_HINT = " — see `harness status`"


def offline_cause(detail: str) -> str | None:
    """The short cause of an outage retrying cannot end, or None for an ordinary one."""
    for opening, words in _CAUSES:
        if opening in detail:
            return words
    return None


class LinkStatus(Widget):
    """``harness > Plugins                       ▲ daemon online``"""

    DEFAULT_CSS = """
    LinkStatus {
        dock: top;
        height: 1;
        background: $panel;
        color: $text;
        padding: 0 1;
        &.-offline { background: $error-muted; }
        &.-storage { background: $warning-muted; }
    }
    """

    def __init__(self, where: str) -> None:
        super().__init__()
        self.where = where
        self._link = LinkState()
        self._ages = AgeTimer(self)

    @property
    def harness(self) -> HarnessApp:
        return cast("HarnessApp", self.app)

    def on_mount(self) -> None:
        self.watch(self.app, "link", self._on_link)

    def _on_link(self, link: LinkState) -> None:
        self._link = link
        self.set_class(not link.online and link.changed_at > 0, "-offline")
        self.set_class(link.online and link.storage is not None, "-storage")
        self.tooltip = None if link.online else link.detail
        self.refresh()

    def link_gist(self) -> str | None:
        """Over ssh, when it is the ssh link that failed (not the daemon behind it): why, in a
        few words (harness.transport.link_failure_gist); else None."""
        link = self._link
        if link.online or not link.responding or not self.harness.target.remote:
            return None
        return link_failure_gist(link.detail)

    def status_text(self, gist: bool = True, retrying: bool = True) -> str:
        """The right-hand text. When the ssh link is what failed, ``gist`` adds why in a few
        words and ``retrying`` says so (render() leaves them out where they do not fit)."""
        link = self._link
        if link.online or not link.ever_online:
            self._ages.cancel()  # nothing shown here ages
        if link.online:
            if link.storage:  # the daemon runs but cannot store: what it shows is not saved
                return f"▲ online · ⚠ {link.storage}"
            return "▲ daemon online"
        if link.changed_at == 0.0:
            return "◌ connecting to the daemon…"
        if not link.responding:
            # Connected, but nothing answers: the age is how long ago it was last heard. Over
            # ssh the silence may be the link's as much as the daemon's: nothing tells which.
            now = self.harness.clock()
            self._ages.drawn(now, [now - link.changed_at])
            silent = ago(now - link.changed_at).removesuffix(" ago")
            if self.harness.target.remote:
                return f"? no answer over ssh ({silent})"
            return f"? daemon not responding ({silent})"
        link_gist = self.link_gist()
        if link_gist is not None:
            # The ssh link failed, not (as far as anyone can tell) the daemon: say so, and why.
            text = "▼ ssh link down" + (f": {link_gist}" if gist else "")
            if link.ever_online:
                now = self.harness.clock()
                text += f" ({ago(now - link.changed_at).removesuffix(' ago')})"
                self._ages.drawn(now, [now - link.changed_at])
            return text + (" · retrying" if retrying else "")
        cause = offline_cause(link.detail)
        if cause is not None:
            self._ages.cancel()  # the cause, not the age, is what matters: it will not pass
            return f"▼ offline: {cause}"  # render() adds the hint where it fits
        text = "▼ daemon offline"
        if link.ever_online:
            now = self.harness.clock()
            text += f" ({ago(now - link.changed_at).removesuffix(' ago')})"
            self._ages.drawn(now, [now - link.changed_at])  # "offline (42 s)" ages
        text += " · retrying"
        if not link.database:
            text += " · no database yet"
        return text

    def render(self) -> Text:
        # Where the breadcrumb's extras (context, demo keys) give way for a status to be read
        # whole, this is what is left of it.
        bare = Text.assemble(("harness", "bold"), " > ", self.where)
        left = bare.copy()
        target = self.harness.target
        if target.name != "default":  # which daemon: the context's name (or the --host)
            left.append(f"  @ {target.name}" + (" (read-only)" if target.read_only else ""))
        if self.harness.demo_control:
            # The footer cannot fit the demo keys beside a screen's own at 80 columns.
            left.append("  · demo keys: f flap, o outage", style="italic")
        status = self.status_text()
        if self.link_gist() is not None:
            # Why the link failed is read whole, or not at all: the breadcrumb's extras give
            # way first, then "· retrying", then the why (the tooltip keeps ssh's sentence).
            width = self.size.width
            if left.cell_len + 1 + len(status) > width:
                left = bare
            if left.cell_len + 1 + len(status) > width:
                status = self.status_text(retrying=False)
            if left.cell_len + 1 + len(status) > width:
                status = self.status_text(gist=False)
        elif not self._link.online and offline_cause(self._link.detail) is not None:
            # The cause must be read whole: the breadcrumb's extras give way first, then the hint.
            width = self.size.width
            if left.cell_len + 1 + len(status) + len(_HINT) > width:
                left = bare
            if left.cell_len + 1 + len(status) + len(_HINT) <= width:
                status += _HINT
        elif self._link.online and self._link.storage is not None:
            # "⚠ storage failing: disk full since 12:03" is read whole too: it lost its time
            # at 80 columns beside a plugin's breadcrumb. The extras give way, then the brand.
            width = self.size.width
            if left.cell_len + 1 + len(status) > width:
                left = bare
            if left.cell_len + 1 + len(status) > width:
                left = Text(self.where)
        elif not self._link.online:
            # "? daemon not responding (12 s)", "▼ daemon offline (3 s) · retrying": read whole
            # as well (beside the demo's keys at 80 columns they were cut to "? daemon not").
            # The breadcrumb's extras give way.
            if left.cell_len + 1 + len(status) > self.size.width:
                left = bare
        right = Text(status, style="bold")
        gap = max(1, self.size.width - left.cell_len - right.cell_len)
        return Text.assemble(left, " " * gap, right)
