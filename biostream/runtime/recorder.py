"""The session recorder: every stream of a session written to XDF as it arrives, as LabRecorder would.

It is an LSL consumer like any other: it opens its own inlet on each raw stream and each prediction stream the
session publishes, and on every marker (string) stream in view, as they appear (a continuous resolver watches
for them: ground truth, annotations, replay events), and appends what arrives to one XDF file
(:class:`devices.formats.XdfWriter`: append-only, every chunk flushed). So the file holds the samples exactly as
their outlets sent them (values and source timestamps), the clock offsets to put them on one clock (pyxdf applies
them), the prediction streams with their bundle metadata, and a header naming the bundles. It pulls every
``flush_s`` (0.25 s), so a killed process leaves a readable file with everything up to the last quarter second.

A write that fails (disk full, path gone) stops the recording, not the session: the file keeps what was
written and an event says why.

What a stream declares is untrusted (anyone on the network can publish one): streams beyond the reader's limits
are not recorded (an event says why), at most :data:`MAX_DESC_VALUES` simple description values of at most
:data:`MAX_DESC_VALUE_CHARS` characters each are copied into the file (element names that are not plain XML names
are skipped, and a description over :data:`devices.lsl_meta.MAX_DESC_BYTES` is not read), string samples arrive
cut by the reader, and at most :data:`MAX_MARKER_STREAMS` marker streams are picked up by the watcher.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pylsl

from biostream.lsl import StreamDescription, StreamReader
from biostream.runtime.cluster import current_node_id
from biostream.runtime.records import SessionEvent
from devices.errors import BadInputError
from devices.formats import XdfWriter
from devices.formats._xdf_spec import is_xml_name
from devices.lsl_meta import MAX_DESC_BYTES, safe_text

logger = logging.getLogger(__name__)

# Re-write a stream's clock offset at least this often (s), as LabRecorder does.
_OFFSET_EVERY_S = 5.0
#: Most ``<desc>`` values of a stream copied into the recording, and the longest kept (characters).
MAX_DESC_VALUES = 64
MAX_DESC_VALUE_CHARS = 1024
#: Most marker streams the watcher starts recording (the session's own streams do not count).
MAX_MARKER_STREAMS = 64
# Children of a description looked at for its values (a description may list 100,000 elements).
_MAX_DESC_CHILDREN = 1024


@dataclass
class _Recorded:
    reader: StreamReader
    stream_id: int
    offset_written_at: float = -1e9
    offset_written: float | None = None


def _desc_values(info: pylsl.StreamInfo) -> dict[str, str]:
    """The simple ``<key>value</key>`` children of a stream's description (channels excluded), bounded.

    At most :data:`MAX_DESC_VALUES` values among the first ``_MAX_DESC_CHILDREN`` children, each cut to
    :data:`MAX_DESC_VALUE_CHARS` characters without control characters; names that are not plain XML names are
    skipped; nothing from a description over ``MAX_DESC_BYTES``.
    """
    values: dict[str, str] = {}
    if len(info.as_xml().encode("utf-8", "replace")) > MAX_DESC_BYTES:
        return values
    child = info.desc().first_child()
    for _ in range(_MAX_DESC_CHILDREN):
        if child.empty() or len(values) >= MAX_DESC_VALUES:
            break
        name, value = child.name(), child.child_value()
        if name != "channels" and value and is_xml_name(name) and name not in values:
            values[name] = safe_text(value, MAX_DESC_VALUE_CHARS)
        child = child.next_sibling()
    return values


class SessionRecorder:
    """Record LSL streams to one XDF file (see the module docstring).

    Parameters
    ----------
    path : str or Path
        The XDF file to create (its folder must exist).
    header : dict of str to str
        Extra file-header fields (e.g. ``bundle_sha256``).
    flush_s : float
        How often streams are pulled and written (s).
    record_markers : bool
        Also record every marker stream that is or comes in view.
    """

    def __init__(
        self, path: str | Path, header: dict[str, str] | None = None, flush_s: float = 0.25,
        record_markers: bool = True,
    ) -> None:
        self.path = Path(path).expanduser()
        if not self.path.parent.is_dir():
            raise BadInputError(f"cannot record to '{self.path}': folder '{self.path.parent}' does not exist")
        self.flush_s = float(flush_s)
        self._lock = threading.Lock()
        self._streams: dict[str, _Recorded] = {}
        self._opening: set[str] = set()
        self._events: list[SessionEvent] = []
        self._stopped_reason = ""
        self._stop = threading.Event()
        try:
            self._writer: XdfWriter | None = XdfWriter(self.path, header=header)
        except BadInputError as err:
            # Not raised: as a Ray actor the reason would be lost with the actor; status() says it instead.
            self._writer = None
            why = str(err).rsplit("': ", 1)[-1]
            self._stopped_reason = f"cannot record to '{self.path}': {why}"
            self._stop.set()
        self._markers = pylsl.ContinuousResolver(pred="channel_format='string'") if record_markers else None
        self._seen: set[str] = set()
        self._markers_capped = False
        self._thread = threading.Thread(target=self._run, name="biostream-recorder", daemon=True)
        if self._writer is not None:
            self._thread.start()

    @property
    def recording(self) -> bool:
        """True until :meth:`stop` or a write failure (False from the start if the file could not be created)."""
        return not self._stop.is_set() and not self._stopped_reason

    def add_stream(self, description: StreamDescription, timeout_s: float = 5.0) -> dict[str, Any]:
        """Start recording a stream (blocking while its inlet opens); errors come back as ``{"ok": False, ...}``."""
        key = description.uid
        with self._lock:
            if key in self._streams or key in self._opening or not self.recording:
                return {"ok": key in self._streams or key in self._opening, "error": self._stopped_reason}
            self._opening.add(key)  # the session and the marker watcher may both ask for one stream
        try:
            reader = StreamReader(description).connect(timeout_s)
        except BadInputError as err:
            with self._lock:
                self._opening.discard(key)
            message = f"not recording: {str(err).splitlines()[0]}"
            logger.warning("%s", message)
            return {"ok": False, "error": message}
        desc = reader.description
        with self._lock:
            self._opening.discard(key)
            try:
                stream_id = self._writer.add_stream(
                    desc.name, desc.type, reader.channel_labels, desc.sfreq_hz, channel_format=desc.channel_format,
                    channel_units=reader.channel_units, channel_types=reader.channel_types,
                    source_id=desc.source_id, desc=_desc_values(reader.info),
                )
            except BadInputError as err:  # a header the file format cannot hold: skip this stream, keep recording
                reader.close()
                message = f"not recording {desc.summary()}: {str(err).splitlines()[0]}"
                logger.warning("%s", message)
                return {"ok": False, "error": message}
            except OSError as err:
                reader.close()
                self._fail(err)
                return {"ok": False, "error": self._stopped_reason}
            self._streams[key] = _Recorded(reader, stream_id)
        return {"ok": True}

    def events(self) -> list[SessionEvent]:
        """Take the events since the last call (a recording that stopped by itself, with the reason)."""
        with self._lock:
            events, self._events = self._events, []
        return events

    def counts(self) -> dict[str, int]:
        """Samples written per stream name."""
        with self._lock:
            return {r.reader.name: self._writer.sample_count(r.stream_id) for r in self._streams.values()}

    def status(self) -> dict[str, Any]:
        """Path, size on disk, whether it is still recording and why not, samples per stream, process and node."""
        size = self.path.stat().st_size if self.path.exists() else 0
        return {"path": str(self.path), "bytes": size, "recording": self.recording, "reason": self._stopped_reason,
                "counts": self.counts(), "pid": os.getpid(), "node_id": current_node_id()}

    def stop(self) -> dict[str, Any]:
        """Write what is left, close the file (stream footers) and return :meth:`status`."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10.0)
        with self._lock:
            if not self._stopped_reason:
                self._write_all()
            for recorded in self._streams.values():
                recorded.reader.close()
            if self._writer is not None:
                try:
                    self._writer.close()  # after a failed write: the footers if they still fit, else only the release
                except OSError as err:
                    self._fail(err)
        return self.status()

    # ------------------------------------------------------------------ loop
    def _run(self) -> None:
        while not self._stop.wait(self.flush_s):
            self._watch_markers()
            with self._lock:
                if self._stopped_reason:
                    return
                self._write_all()

    def _watch_markers(self) -> None:
        """Start recording marker streams that came into view (each opened on its own thread: it takes ~0.7 s)."""
        if self._markers is None:
            return
        for info in self._markers.results():
            if info.uid() not in self._seen:
                if len(self._seen) >= MAX_MARKER_STREAMS:
                    if not self._markers_capped:
                        self._markers_capped = True
                        self._note(f"more than {MAX_MARKER_STREAMS} marker streams in view: only the first "
                                   f"{MAX_MARKER_STREAMS} are recorded")
                    return
                self._seen.add(info.uid())
                description = StreamDescription.from_info(info)
                threading.Thread(target=self.add_stream, args=(description,), daemon=True).start()

    def _note(self, message: str) -> None:
        logger.warning("%s", message)
        with self._lock:
            self._events.append(SessionEvent("recording", message, level="warning", at_s=pylsl.local_clock()))

    def _write_all(self) -> None:
        now = pylsl.local_clock()
        for key, recorded in list(self._streams.items()):
            try:
                self._write_one(recorded, now)
            except OSError as err:  # the file, not the stream: nothing more can be written
                self._fail(err)
                return
            except Exception as err:  # noqa: BLE001 - one odd stream must not end the recording of the others
                logger.exception("recording: dropping stream '%s'", recorded.reader.name)
                recorded.reader.close()
                del self._streams[key]
                message = (f"stopped recording stream '{recorded.reader.name}': {type(err).__name__}: "
                           f"{str(err)[:200]} (the other streams are still recorded)")
                self._events.append(SessionEvent("recording", message, level="warning", at_s=now))

    def _write_one(self, recorded: _Recorded, now: float) -> None:
        try:
            chunk = recorded.reader.pull()
        except BadInputError as err:  # came back changed: keep what we have of it
            logger.warning("recording: %s", err)
            return
        if chunk is None or not chunk.n_samples:
            return
        offset = chunk.clock_offset_s
        if offset != recorded.offset_written or now - recorded.offset_written_at >= _OFFSET_EVERY_S:
            self._writer.write_clock_offset(recorded.stream_id, now, offset)
            recorded.offset_written, recorded.offset_written_at = offset, now
        self._writer.write_samples(recorded.stream_id, chunk.data, chunk.timestamps - offset)

    def _fail(self, err: OSError) -> None:
        if self._stopped_reason:  # the first failure is the one to tell
            return
        self._stopped_reason = f"recording to '{self.path}' stopped: {err.strerror or err} (what was written is kept)"
        logger.error("%s", self._stopped_reason)
        self._events.append(SessionEvent("recording", self._stopped_reason, level="error", at_s=pylsl.local_clock()))

