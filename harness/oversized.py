"""Events stored before the frame limit was enforced at publish time.

Since the first round-2 sessions a plugin's event over ``protocol.MAX_FRAME_BYTES`` is refused
before it is stored (``EventTooLarge``). A database written by older code may still hold one;
sent as it is, it would break the frame limit every client reads with, so every replay
reaching it would cut its subscriber off. Such an event is sent instead as a stand-in with the
same seq, time and name, whose data says what happened: the replay goes on, the seqs stay
whole, and the reader learns that one event was left out and why."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from harness import protocol
from harness.protocol import Event

log = logging.getLogger(__name__)

# A frame line is the frame and its newline.
_LINE_LIMIT = protocol.MAX_FRAME_BYTES + 1


def stand_in(event: Event, size: int) -> Event:
    """What is sent in place of ``event``, whose frame would be ``size`` bytes."""
    return Event(
        seq=event.seq,
        ts=event.ts,
        event=event.event,
        data={
            "omitted": (
                f"this event is {size:,} bytes, over the {protocol.MAX_FRAME_BYTES:,}-byte "
                "frame limit (stored by an older harness), so it is not sent; the stream "
                "goes on"
            ),
            "size": size,
        },
        persisted=event.persisted,
    )


def fit_frames(frames: list[bytes], events: Sequence[Event], peer: str) -> list[bytes]:
    """``frames`` (the encoded ``events``, one each), with each over the limit replaced by its
    stand-in's. The caller checks first that one is (one C-speed ``max`` per page)."""
    fitted = []
    for frame, event in zip(frames, events, strict=True):
        if len(frame) > _LINE_LIMIT:
            log.warning(
                "event %d (%s, %d bytes) is over the frame limit; sent to %s as a stand-in",
                event.seq,
                event.event,
                len(frame) - 1,
                peer,
            )
            frame = protocol.encode(stand_in(event, len(frame) - 1))
        fitted.append(frame)
    return fitted


def fit_events(events: list[Event]) -> list[Event]:
    """``events`` with each whose frame would be over the limit replaced by its stand-in (for
    an answer that carries events, such as ``events.history``)."""
    fitted = []
    for event in events:
        size = len(protocol.encode(event)) - 1
        fitted.append(stand_in(event, size) if size > protocol.MAX_FRAME_BYTES else event)
    return fitted
