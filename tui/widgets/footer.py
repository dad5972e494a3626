"""KeysFooter: the screen's keys on one line, drawn by one widget.

Textual's Footer is a container of one ``FooterKey`` widget per key. Each key is a node of its
own to style, with two component classes Textual styles as nodes of their own too, and its own
mount, layout and render: on the plugins screen six keys were 21 of the 85 style applications
before the first frame, and the app's CPU from set-up to the first frame fell from 99 to 75 ms
without them (``python -m harness.bench tui``, first paint; docs/benchmarks.md). This widget
draws the same line itself: the keys Textual's Footer would show, in its order, with the same
characters and colours (the snapshots in tests/tui compare them cell by cell), the command
palette's key on the right behind the same thin rule.

What the keys did as widgets, it does by position: a press of the mouse on a key presses that
key (a bell if the key is disabled), the key under the mouse is highlighted with the theme's
hover colour and shows its tooltip, and the mouse wheel scrolls keys that do not fit. A change of
the keys (a screen's bindings changing) repaints the line; nothing is mounted or removed. Like
Textual's Footer it has a ``compact`` style (less room round each key);
tests/tui/test_keys_footer.py compares both styles with Textual's Footer cell by cell.
"""

from __future__ import annotations

from typing import NamedTuple

from rich.cells import cell_len
from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.color import Color
from textual.reactive import reactive
from textual.screen import Screen
from textual.strip import Strip
from textual.widget import Widget


class Key(NamedTuple):
    """One key as shown: what to press, how it is written, and what it does."""

    key: str  # the binding's key, pressed on a click (as Textual's FooterKey does)
    display: str  # as written (App.get_key_display): "⏎", "^p", "space"
    description: str
    enabled: bool  # a disabled key is drawn dim and rings the bell when clicked
    tooltip: str
    id: str | None = None  # the binding's id: what SHORTER and GIVE_WAY name


GIVE_WAY = ("demo.outage", "demo.flap", "fleet", "alerts", "events", "plugins")
"""Keys (binding ids) left out, in this order, while a screen's keys do not fit its width even
in their shorter words (a screen's ``short_descriptions()``): the demo's keys first (the header
names them), then the keys to other screens, the last one first. A screen's own keys, ``q``
and ``?`` (which lists every key, these included) stay. Keys without one of these ids are never
left out: what does not fit then scrolls, as in Textual's Footer."""


class Keys(NamedTuple):
    keys: tuple[Key, ...]
    palette: Key | None  # the command palette's key, drawn on the right


class Colours(NamedTuple):
    """The footer's colours in the current theme, resolved over its background."""

    background: Color  # the footer's own: the room right of the keys, a compact key's margin
    item: Color  # behind a key
    hover: Color  # a key under the mouse
    key: Style
    description: Style
    rule: Color  # the thin rule before the palette key


# Room round a key's text, as Textual's Footer draws it. A key with a description has a cell of
# padding on each side of the key and one after its description; compact, none round the key, one
# before its description, and a cell of margin (the footer's background) after the whole key. A
# key without a description is its key alone (plus the margin, compact). The palette key is
# always drawn compact, with one cell after it (its padding; compact, its margin) and its rule,
# one cell, before it.
KEY_PAD = 1
PALETTE_RULE = "▏"


def _key_width(key: Key, compact: bool) -> int:
    if not key.description:
        return cell_len(key.display) + (1 if compact else 0)
    return cell_len(key.display) + cell_len(key.description) + (2 if compact else 3)


def _palette_width(key: Key) -> int:
    described = 1 + cell_len(key.description) if key.description else 0
    return 1 + cell_len(key.display) + described + 1


class KeysFooter(Widget, can_focus=False):
    ALLOW_SELECT = False
    DEFAULT_CSS = """
    KeysFooter {
        dock: bottom;
        height: 1;
        color: $footer-foreground;
        background: $footer-background;
    }
    """

    compact = reactive(False)
    """Draw the keys in compact style (less room round each), as Textual's Footer.compact."""

    def __init__(self, *, compact: bool = False) -> None:
        super().__init__()
        self.set_reactive(KeysFooter.compact, compact)
        self._shown: Keys | None = None  # the keys on the last line drawn
        self._scroll = 0  # cells of the key list scrolled off to the left
        self._room = 0  # cells for the keys left of the palette key, when last drawn
        self._hover: Key | None = None
        self._colours: tuple[object, Colours] | None = None  # keyed by the theme's variables
        # Where each key was drawn, for the mouse: (first cell, end cell, key).
        self._spans: list[tuple[int, int, Key]] = []

    # -- what is shown -----------------------------------------------------------------------

    def _keys(self) -> Keys:
        """The keys Textual's Footer would show: each action's first shown binding, in the
        screen's order, and the command palette's key."""
        app = self.app
        active = self.screen.active_bindings
        by_action: dict[str, Key] = {}
        for _, binding, enabled, tooltip in active.values():
            if binding.show and binding.action not in by_action:
                by_action[binding.action] = Key(
                    binding.key,
                    app.get_key_display(binding),
                    binding.description,
                    enabled,
                    tooltip,
                    binding.id,
                )
        palette = None
        if app.ENABLE_COMMAND_PALETTE and (found := active.get(app.COMMAND_PALETTE_BINDING)):
            _, binding, enabled, _ = found
            palette = Key(
                binding.key,
                app.get_key_display(binding),
                binding.description,
                enabled,
                binding.tooltip or binding.description,
            )
        return self._fitted(Keys(tuple(by_action.values()), palette))

    def _fitted(self, keys: Keys) -> Keys:
        """``keys`` made to fit the footer's width (80 columns cut the events screen's keys in
        the middle of "Plugins"): first the screen's shorter words, then the keys of
        :data:`GIVE_WAY` left out in its order. What still does not fit scrolls."""
        width = self.size.width
        if width <= 0:
            return keys
        room = width - (_palette_width(keys.palette) if keys.palette is not None else 0)

        def fits(candidate: tuple[Key, ...]) -> bool:
            return sum(_key_width(key, self.compact) for key in candidate) <= room

        shown = keys.keys
        if fits(shown):
            return keys
        short = getattr(self.screen, "short_descriptions", None)
        words: dict[str, str] = short() if callable(short) else {}
        if words:
            shown = tuple(
                key._replace(description=words[key.id], tooltip=key.tooltip or key.description)
                if key.id in words
                else key
                for key in shown
            )
        for leaving in GIVE_WAY:
            if fits(shown):
                break
            shown = tuple(key for key in shown if key.id != leaving)
        return keys._replace(keys=shown)

    def on_mount(self) -> None:
        self.screen.bindings_updated_signal.subscribe(self, self._bindings_changed)
        self.app.theme_changed_signal.subscribe(self, lambda _: self.refresh())

    def on_unmount(self) -> None:
        self.screen.bindings_updated_signal.unsubscribe(self)
        self.app.theme_changed_signal.unsubscribe(self)

    def _bindings_changed(self, screen: Screen[object]) -> None:
        if not screen.app.app_focus:
            return  # as Textual's Footer: the terminal lost focus; it signals again on focus
        if self._shown is None:
            return  # nothing drawn yet: the first draw reads the keys
        if self.is_attached and screen is self.screen and self._keys() != self._shown:
            self.refresh()

    # -- drawing ---------------------------------------------------------------------------

    def _theme_colours(self) -> Colours:
        variables = self.app.theme_variables
        _, background = self.background_colors
        cached = self._colours
        if cached is not None and cached[0] is variables and cached[1].background == background:
            return cached[1]

        def over(base: Color, name: str) -> Color:
            return base + Color.parse(variables.get(name, "transparent"))

        item = over(background, "footer-item-background")
        key_bg, description_bg = (
            over(item, "footer-key-background"),
            over(item, "footer-description-background"),
        )
        colours = Colours(
            background=background,
            item=item,
            hover=over(background, "block-hover-background"),
            key=Style(
                bold=True,
                color=over(key_bg, "footer-key-foreground").rich_color,
                bgcolor=key_bg.rich_color,
            ),
            description=Style(
                color=over(description_bg, "footer-description-foreground").rich_color,
                bgcolor=description_bg.rich_color,
            ),
            rule=background + Color.parse(variables.get("foreground", "white")).multiply_alpha(0.2),
        )
        self._colours = (variables, colours)
        return colours

    def _key_segments(self, key: Key, colours: Colours, palette: bool) -> list[Segment]:
        key_style, description_style = colours.key, colours.description
        if key == self._hover:
            on_hover = Style(bgcolor=colours.hover.rich_color)
            key_style, description_style = key_style + on_hover, description_style + on_hover
        if not key.enabled:
            dim = Style(dim=True)
            key_style, description_style = dim + key_style, dim + description_style
        if not key.description:
            segments = [Segment(key.display, key_style)]
        elif palette or self.compact:
            segments = [
                Segment(key.display, key_style),
                Segment(f" {key.description}", description_style),
            ]
        else:
            pad = " " * KEY_PAD
            segments = [
                Segment(pad + key.display + pad, key_style),
                Segment(f"{key.description} ", description_style),
            ]
        if self.compact and not palette:
            segments.append(Segment(" ", Style(bgcolor=colours.background.rich_color)))
        return segments

    def render_line(self, y: int) -> Strip:
        width = self.size.width
        keys = self._keys()
        self._shown = keys
        colours = self._theme_colours()
        blank = Style(bgcolor=colours.background.rich_color)
        compact = self.compact
        palette = keys.palette
        palette_width = _palette_width(palette) if palette is not None else 0
        room = self._room = max(0, width - palette_width)  # for the other keys, scrolled
        total = sum(_key_width(key, compact) for key in keys.keys)
        self._scroll = max(0, min(self._scroll, total - room))

        self._spans = []
        segments: list[Segment] = []
        margin = 1 if compact else 0  # a compact key's last cell is its margin: not the key's
        x = -self._scroll
        for key in keys.keys:
            end = x + _key_width(key, compact)
            if end - margin > 0 and x < room:
                self._spans.append((max(x, 0), min(end - margin, room), key))
            segments.extend(self._key_segments(key, colours, palette=False))
            x = end
        left = Strip(segments).crop(self._scroll, self._scroll + room)
        if left.cell_length < room:
            left = Strip([*left, Segment(" " * (room - left.cell_length), blank)])
        if palette is None:
            return left
        self._spans.append((room, width - margin, palette))
        behind = colours.hover if palette == self._hover else colours.item
        on = Style(bgcolor=behind.rich_color)
        after = colours.background if compact else behind  # compact: its margin, not padding
        right = [
            Segment(PALETTE_RULE, Style(color=colours.rule.rich_color) + on),
            *self._key_segments(palette, colours, palette=True),
            Segment(" ", Style(bgcolor=after.rich_color)),
        ]
        return Strip([*left, *right]).crop(0, width)

    # -- the mouse -------------------------------------------------------------------------

    def _key_at(self, x: int) -> Key | None:
        for start, end, key in self._spans:
            if start <= x < end:
                return key
        return None

    def on_mouse_down(self, event: events.MouseDown) -> None:
        key = self._key_at(event.x)
        if key is None:
            return
        event.stop()
        if key.enabled:
            self.app.simulate_key(key.key)
        else:
            self.app.bell()

    def on_mouse_move(self, event: events.MouseMove) -> None:
        self._set_hover(self._key_at(event.x))

    def on_leave(self, _: events.Leave) -> None:
        self._set_hover(None)

    def _set_hover(self, key: Key | None) -> None:
        if key == self._hover:
            return
        self._hover = key
        self.tooltip = (key.tooltip or None) if key is not None else None
        self.styles.pointer = "default" if key is None else "pointer"
        self.screen.update_pointer_shape()
        self.refresh()

    def _scroll_by_key(self, forward: bool) -> bool:
        """Scroll the keys by one key; whether they moved."""
        starts, x = [], 0
        for key in self._shown.keys if self._shown else ():
            starts.append(x)
            x += _key_width(key, self.compact)
        furthest = max(0, x - self._room)  # the last key's end at the right edge
        if forward:
            target = min(next((s for s in starts if s > self._scroll), furthest), furthest)
        else:
            target = next((s for s in reversed(starts) if s < self._scroll), 0)
        if target == self._scroll:
            return False
        self._scroll = target
        self.refresh()
        return True

    def on_mouse_scroll_down(self, event: events.MouseScrollDown) -> None:
        if self._scroll_by_key(forward=True):
            event.stop()

    def on_mouse_scroll_up(self, event: events.MouseScrollUp) -> None:
        if self._scroll_by_key(forward=False):
            event.stop()

    on_mouse_scroll_right = on_mouse_scroll_down  # type: ignore[assignment]
    on_mouse_scroll_left = on_mouse_scroll_up  # type: ignore[assignment]
