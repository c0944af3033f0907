"""LSL ingestion: discovery, selectors and the :class:`StreamReader` inlet wrapper.

The reader gives numpy chunks with clock-corrected and dejittered timestamps, gap/jump events, and recovers when
an outlet with the same source id comes back.
"""

from biostream.lsl.dejitter import Dejitterer, TimelineUpdate
from biostream.lsl.discovery import (
    StreamDescription,
    list_streams,
    parse_selector,
    resolve_selector,
    resolve_stream,
)
from biostream.lsl.events import DisconnectEvent, GapEvent, JumpEvent, ReconnectEvent, StreamEvent
from biostream.lsl.inlet import Chunk, ReaderState, ReaderStats, StreamReader

__all__ = [
    "Chunk",
    "Dejitterer",
    "DisconnectEvent",
    "GapEvent",
    "JumpEvent",
    "ReaderState",
    "ReaderStats",
    "ReconnectEvent",
    "StreamDescription",
    "StreamEvent",
    "StreamReader",
    "TimelineUpdate",
    "list_streams",
    "parse_selector",
    "resolve_selector",
    "resolve_stream",
]
