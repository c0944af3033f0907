"""Check every chunk of an XDF file before pyxdf parses it, and recover what a damaged region leaves intact.

:func:`scan_chunks` walks the chunks of a file (see :mod:`devices.formats._xdf_spec` for the layout) and checks
each one's header *and* content: XML that parses, a Samples chunk whose samples (stream id, count, time stamps,
values or strings) end exactly where its length says, a ClockOffset of 20 content bytes with finite values, a
Boundary holding the boundary UUID, stream ids that were declared by a StreamHeader before.

When a chunk fails, the damage is one of these, tried in order:

1. **A damaged header over intact content.** The length field may be read with another width (1, 4 or 8 bytes),
   the tag may be another of the six, and the length may be wrong: for a Samples chunk the content says where it
   ends (the samples are walked), a ClockOffset is 20 bytes, a Boundary 16, XML ends at ``</info>``. A candidate
   is accepted when its content checks out *and* a valid chunk (or the end of the file) follows it. The chunk is
   kept, rewritten with a correct header.
2. **A damaged chunk whose length is intact**: a valid chunk follows where the length says. That one chunk is
   skipped.
3. **Anything else**: the bytes up to the next Boundary chunk (found by its 16-byte UUID) are skipped, and
   reading resumes there, as pyxdf does. pyxdf scans forward only after a failed read; a wrong tag or length that
   still reads is skipped or followed by it, and it can lose everything up to the next boundary, or the rest of
   the file, for one byte. With no boundary after the damage, the rest of the file is lost; if the file simply
   ends inside a chunk, that is a truncation (a recorder killed mid-write), not damage.

The result lists what pyxdf should parse: ranges of the file and repaired chunks, in file order.
"""

from __future__ import annotations

import math
import mmap
import re
import struct
from dataclasses import dataclass, field
from xml.etree import ElementTree

import numpy as np

from devices.formats import _xdf_spec as spec

#: Most bytes an XML chunk may have (real stream headers are a few kB; the channel list makes them grow).
MAX_XML_BYTES = 16 * 1024 * 1024
_WIDTHS = (1, 4, 8)
_FIELD = {name: re.compile(rf"<{name}>\s*([^<]*?)\s*</{name}>".encode()) for name in ("channel_count", "nominal_srate")}
_INFO_END = b"</info>"
_LOOKAHEAD_SAMPLES = 4096  # samples checked per vectorised step when walking numeric samples
_XML_TAGS = (spec.TAG_FILE_HEADER, spec.TAG_STREAM_HEADER, spec.TAG_STREAM_FOOTER)
#: Work the checks may spend on chunks that turn out damaged (bytes read, string walks weighted): damage makes
#: them read candidate chunks again, and a file crafted so that every chunk fails late must not make the scan
#: quadratic. Past the budget the rest of the file is given up as damaged.
_SPARE_WORK_BYTES = 16 * 1024 * 1024
_WORK_PER_FILE_BYTE = 2
_STRING_WALK_WEIGHT = 8
_RECOVERY_WORK = 64 * 1024
#: Furthest a string Samples chunk is walked to find where it ends when its length field is damaged.
_MAX_STRING_REPAIR_BYTES = 1024 * 1024
_WITH_STREAM_ID = (spec.TAG_STREAM_HEADER, spec.TAG_SAMPLES, spec.TAG_CLOCK_OFFSET, spec.TAG_STREAM_FOOTER)


@dataclass(frozen=True)
class Damage:
    """Bytes ``start`` to ``end - 1`` of the file were damaged and skipped, because of ``problem``."""

    start: int
    end: int
    problem: str

    def describe(self) -> str:
        """``"bytes 120–459 (…problem…)"``."""
        return f"bytes {self.start}–{self.end - 1} ({self.problem})"


@dataclass(frozen=True)
class ChunkScan:
    """What is readable in an XDF file.

    Attributes
    ----------
    file_bytes : int
        The file's size.
    pieces : tuple
        What to hand to the parser after the magic, in file order: ``(start, end)`` byte ranges of the file, or
        ``bytes`` of a repaired chunk.
    n_chunks : int
        Number of chunks kept.
    has_file_header : bool
        Whether a valid FileHeader chunk was found.
    tag_counts : dict of int to int
        Number of chunks kept per tag.
    truncation : str
        Empty, or how the file ends inside a chunk (``"Samples chunk at byte 5120 needs 73 more bytes"``).
    complete_bytes : int
        Where that cut chunk starts (the file size when not truncated).
    damaged : tuple of Damage
        Regions skipped in the middle of the file.
    repaired : tuple of str
        Chunks kept with a rewritten header, and what was wrong with it.
    absurd_header : str
        Empty, or what is impossible in the first StreamHeader that declares an impossible stream (channel count,
        rate, size): such a file is refused before it is parsed.
    """

    file_bytes: int
    pieces: tuple[tuple[int, int] | bytes, ...]
    n_chunks: int
    has_file_header: bool
    tag_counts: dict[int, int] = field(default_factory=dict)
    truncation: str = ""
    complete_bytes: int = 0
    damaged: tuple[Damage, ...] = ()
    repaired: tuple[str, ...] = ()
    absurd_header: str = ""

    @property
    def truncated(self) -> bool:
        """True when the file ends inside a chunk."""
        return bool(self.truncation)

    @property
    def intact(self) -> bool:
        """True when every byte of the file belongs to a valid chunk (the file can be parsed as it is)."""
        return not (self.truncation or self.damaged or self.repaired)

    @property
    def problem(self) -> str:
        """One line on what is wrong: damaged regions, repairs and truncation, or ``""``."""
        parts = []
        if self.damaged:
            shown = ", ".join(d.describe() for d in self.damaged[:3])
            more = f" and {len(self.damaged) - 3} more regions" if len(self.damaged) > 3 else ""
            parts.append(f"damaged and skipped: {shown}{more}")
        if self.repaired:
            more = f" and {len(self.repaired) - 3} more" if len(self.repaired) > 3 else ""
            parts.append("repaired: " + "; ".join(self.repaired[:3]) + more)
        if self.truncation:
            parts.append(f"truncated: {self.truncation}")
        return "; ".join(parts)


@dataclass(frozen=True)
class _Header:
    start: int
    width: int
    length: int
    tag: int

    @property
    def content_start(self) -> int:
        return self.start + 1 + self.width + 2

    @property
    def end(self) -> int:
        return self.start + 1 + self.width + self.length


@dataclass(frozen=True)
class _Layout:
    """How a stream's samples are stored: value bytes per channel (0 for strings) and the channel count."""

    item_bytes: int
    n_channels: int


def scan_chunks(data: bytes | mmap.mmap) -> ChunkScan:
    """Check and, where damaged, recover the chunks of the XDF file whose bytes are ``data``.

    Parameters
    ----------
    data : bytes or mmap.mmap
        The whole file, magic included; only the chunks after the magic are looked at.
    """
    return _Scanner(data).run()


class _TooMuchWork(Exception):
    """The checks read more than their budget: the rest of the file is given up as damaged."""


class _Scanner:
    def __init__(self, data: bytes | mmap.mmap) -> None:
        self.data = data
        self.size = len(data)
        self.layouts: dict[int, _Layout] = {}
        self.pieces: list[tuple[int, int] | bytes] = []
        self.damaged: list[Damage] = []
        self.repaired: list[str] = []
        self.tag_counts: dict[int, int] = {}
        self.has_file_header = False
        self.absurd = ""
        self._info_search = (self.size, -1, 0)  # (from, found at or -1, up to) of the last search for </info>
        self._budget = _WORK_PER_FILE_BYTE * self.size + _SPARE_WORK_BYTES
        self._spent = 0  # work of checks (bytes read, weighted), less that of checks that found a valid chunk

    # ------------------------------------------------------------------------------------------------ the walk

    def run(self) -> ChunkScan:
        pos = len(spec.MAGIC)
        truncation = ""
        complete = self.size
        while pos < self.size:
            try:
                header, problem, cut = self._header(pos)
                if header is not None:
                    if header.tag == spec.TAG_STREAM_HEADER and not self.absurd:
                        self.absurd = self._absurd_stream_header(header)
                        if self.absurd:
                            break
                    spent = self._spent
                    problem = self._content_problem(header)
                    if not problem:
                        self._spent = spent  # checking a valid chunk is progress, not waste
                        self._keep(header)
                        pos = header.end
                        continue
                next_pos = self._recover(pos, problem)
            except _TooMuchWork:
                self.damaged.append(Damage(pos, self.size, "damage too dense to check any further"))
                break
            if next_pos is not None:
                pos = next_pos
                continue
            if cut:
                truncation, complete = problem, pos
            else:
                self.damaged.append(Damage(pos, self.size, f"{problem}; no Boundary chunk follows"))
            break
        return ChunkScan(
            file_bytes=self.size,
            pieces=tuple(self.pieces),
            n_chunks=sum(self.tag_counts.values()),
            has_file_header=self.has_file_header,
            tag_counts=dict(self.tag_counts),
            truncation=truncation,
            complete_bytes=complete,
            damaged=tuple(self.damaged),
            repaired=tuple(self.repaired),
            absurd_header=self.absurd,
        )

    def _recover(self, pos: int, problem: str) -> int | None:
        """Deal with the bad chunk at ``pos`` (see the module notes); return where to go on, or None."""
        self._charge(_RECOVERY_WORK)  # the candidates tried cost Python time beyond the bytes they read
        fixed = self._fix_samples(pos)
        if fixed is not None:
            header, content, why = fixed
            self._keep(header, spec.encode_chunk(header.tag, content))
            self.repaired.append(f"Samples chunk at byte {pos}: {why}")
            return header.end
        repaired = self._repair(pos)
        if repaired is not None:
            header, content_end, why = repaired
            content = self._read(header.content_start, content_end)
            self._keep(header, spec.encode_chunk(header.tag, content))
            self.repaired.append(f"{spec.TAGS[header.tag]} chunk at byte {pos}: {why}")
            return content_end
        header, _, _ = self._header(pos)
        if header is not None and header.end > pos and self._plausible_next(header.end):
            self.damaged.append(Damage(pos, header.end, problem))
            return header.end
        boundary = self._next_boundary(pos)
        if boundary is not None:
            self.damaged.append(Damage(pos, boundary, f"{problem}; resumed at the Boundary chunk at byte {boundary}"))
            return boundary
        return None

    def _fix_samples(self, pos: int) -> tuple[_Header, bytes, str] | None:
        """A numeric Samples chunk with an intact header whose sample count or time-stamp bytes are damaged.

        When the samples between the count and the end of the chunk fill it exactly with one layout, all with an
        8-byte stamp or all without, the layout is known: a count that disagrees, or stamp bytes that disagree,
        were damaged (pyxdf would read the samples after such a byte shifted). The count or the stamp bytes are
        rewritten; stamps and values are kept as they are.
        """
        header, _, _ = self._header(pos)
        if header is None or header.tag != spec.TAG_SAMPLES or not self._plausible_next(header.end):
            return None
        layout = self._layout_at(header.content_start)
        count = self._varlen(header.content_start + 4, header.end)
        if layout is None or layout.item_bytes == 0 or count is None:
            return None
        n_samples, start = count
        body = bytearray(self._read(start, header.end))
        row = layout.item_bytes * layout.n_channels
        for stride, flag in ((row + 9, 8), (row + 1, 0)):
            if not body or len(body) % stride:
                continue
            fitting = len(body) // stride
            flags = np.frombuffer(bytes(body[::stride]), dtype=np.uint8)
            flags_ok = bool(np.all(flags != 0) if flag else np.all(flags == 0))
            if fitting == n_samples and not flags_ok:
                why = f"{int(np.sum((flags == 0) if flag else (flags != 0)))} time-stamp bytes contradict its length"
            elif fitting != n_samples and flags_ok:
                why = f"sample count {n_samples} corrected to {fitting}"
            else:
                continue
            body[::stride] = bytes([flag]) * fitting
            stream_id = bytes(self.data[header.content_start : header.content_start + 4])
            return header, stream_id + spec.encode_varlen(fitting) + bytes(body), why
        return None

    def _repair(self, pos: int) -> tuple[_Header, int, str] | None:
        """A header with another width, tag or length whose content checks out and is followed by a chunk."""
        width0 = self.data[pos]
        widths = [width0] if width0 in _WIDTHS else []
        widths += [w for w in _WIDTHS if w != width0]
        for width in widths:
            if pos + 1 + width + 2 > self.size:
                continue
            length = int.from_bytes(self.data[pos + 1 : pos + 1 + width], "little")
            tag0 = struct.unpack_from("<H", self.data, pos + 1 + width)[0]
            tags = ([tag0] if tag0 in spec.TAGS else []) + [t for t in spec.TAGS if t != tag0]
            for tag in tags:
                header = _Header(pos, width, length, tag)
                ends = [header.end] if 2 <= length and header.end <= self.size else []
                natural = self._natural_end(header)
                if natural is not None and natural <= self.size and natural not in ends:
                    ends.append(natural)
                for end in ends:
                    candidate = _Header(pos, width, end - pos - 1 - width, tag)
                    if self._content_problem(candidate) or not self._plausible_after(candidate):
                        continue
                    changes = []
                    if width != width0:
                        changes.append(f"length width {width0} read as {width}")
                    if tag != tag0:
                        changes.append(f"tag {tag0} read as {tag}")
                    if end != header.end:
                        changes.append(f"length {length} corrected to {candidate.length}")
                    return candidate, end, ", ".join(changes)
        return None

    def _natural_end(self, header: _Header) -> int | None:
        """Where the chunk's content says it ends, ignoring the length field (None when it cannot say)."""
        start = header.content_start
        if header.tag == spec.TAG_SAMPLES:
            layout = self._layout_at(start)
            return None if layout is None else self._samples_end(start + 4, self.size, layout, exact=False)
        if header.tag == spec.TAG_CLOCK_OFFSET:
            return start + 20
        if header.tag == spec.TAG_BOUNDARY:
            return start + len(spec.BOUNDARY_UUID)
        found = self._next_info_end(start, min(self.size, start + MAX_XML_BYTES))
        return None if found < 0 else found + len(_INFO_END)

    def _next_info_end(self, start: int, stop: int) -> int:
        """``find(b"</info>", start, stop)``, remembering the last answer.

        Damaged chunks are met in file order, so the previous answer usually still holds and the scan stays
        linear in the file size however many chunks are damaged.
        """
        searched_from, found, searched_to = self._info_search
        if searched_from <= start and (
            (start <= found and found + len(_INFO_END) <= stop) or (found < 0 and searched_to >= stop)
        ):
            return found
        found = self._find(_INFO_END, start, stop)
        self._info_search = (start, found, stop)
        return found

    def _plausible_after(self, candidate: _Header) -> bool:
        """:meth:`_plausible_next` after ``candidate``, with the stream it declares (if any) known meanwhile."""
        if candidate.tag != spec.TAG_STREAM_HEADER:
            return self._plausible_next(candidate.end)
        stream_id = struct.unpack_from("<I", self.data, candidate.content_start)[0]
        self.layouts[stream_id] = self._layout(candidate)
        try:
            return self._plausible_next(candidate.end)
        finally:
            del self.layouts[stream_id]

    def _plausible_next(self, pos: int) -> bool:
        """True at the end of the file or where a valid chunk, or one cut by the end of the file, starts."""
        if pos == self.size:
            return True
        header, _, cut = self._header(pos)
        if header is None:
            return cut
        return not self._content_problem(header)

    def _next_boundary(self, pos: int) -> int | None:
        """Where the next Boundary chunk after ``pos`` starts (or, with its header damaged, where its UUID ends)."""
        found = self._find(spec.BOUNDARY_UUID, pos + 1, self.size)
        if found < 0:
            return None
        for width in _WIDTHS:
            header = bytes([width]) + (2 + len(spec.BOUNDARY_UUID)).to_bytes(width, "little") + b"\x05\x00"
            start = found - len(header)
            if start > pos and bytes(self.data[start:found]) == header:
                return start
        return found + len(spec.BOUNDARY_UUID)

    def _find(self, needle: bytes, start: int, stop: int) -> int:
        return self.data.find(needle, start, stop)

    def _read(self, start: int, end: int) -> bytes:
        """The bytes ``[start, end)``, counted against the work budget."""
        self._charge(end - start)
        return bytes(self.data[start:end])

    def _charge(self, n_bytes: int) -> None:
        self._spent += max(0, n_bytes)
        if self._spent > self._budget:
            raise _TooMuchWork

    # ------------------------------------------------------------------------------------------- one chunk

    def _header(self, pos: int) -> tuple[_Header | None, str, bool]:
        """The chunk header at ``pos``, or (None, problem, whether the file ends inside it)."""
        width = self.data[pos]
        if width not in _WIDTHS:
            return None, f"invalid chunk length width {width} at byte {pos}", False
        if pos + 1 + width > self.size:
            return None, f"chunk length cut off at byte {pos}", True
        length = int.from_bytes(self.data[pos + 1 : pos + 1 + width], "little")
        if pos + 1 + width + 2 > self.size:
            return None, f"chunk tag cut off at byte {pos}", True
        tag = struct.unpack_from("<H", self.data, pos + 1 + width)[0]
        if tag not in spec.TAGS or length < 2:
            return None, f"invalid chunk (tag {tag}, length {length}) at byte {pos}", False
        header = _Header(pos, width, length, tag)
        if header.end > self.size:
            return None, f"{spec.TAGS[tag]} chunk at byte {pos} needs {header.end - self.size} more bytes", True
        return header, "", False

    def _content_problem(self, header: _Header) -> str:
        """What is wrong with the content of a chunk whose header is well formed, or ``""``."""
        where = f"{spec.TAGS[header.tag]} chunk at byte {header.start}"
        start, end = header.content_start, header.end
        if end > self.size:
            return f"{where} runs past the end of the file"
        if header.tag in _WITH_STREAM_ID:
            if end - start < 4:
                return f"{where} is too short for a stream id"
            stream_id = struct.unpack_from("<I", self.data, start)[0]
            if header.tag == spec.TAG_STREAM_HEADER:
                if stream_id in self.layouts:
                    return f"{where} declares stream {stream_id} a second time"
            elif stream_id not in self.layouts:
                return f"{where} belongs to stream {stream_id}, which no StreamHeader declared"
            start += 4
        if header.tag == spec.TAG_STREAM_HEADER:
            root = self._xml(start, end, decode=True)
            if root is None or root.tag != "info":
                return f"{where} holds damaged XML"
            return _stream_fields_problem(root, where)
        if header.tag in _XML_TAGS:
            return "" if self._xml(start, end) is not None else f"{where} holds damaged XML"
        if header.tag == spec.TAG_SAMPLES:
            layout = self.layouts[struct.unpack_from("<I", self.data, header.content_start)[0]]
            if self._samples_end(start, end, layout, exact=True) != end:
                return f"{where} holds damaged samples"
            return ""
        if header.tag == spec.TAG_CLOCK_OFFSET:
            if end - start != 16:
                return f"{where} has {end - start} bytes of offsets, not 16"
            if not all(math.isfinite(v) for v in struct.unpack_from("<dd", self.data, start)):
                return f"{where} holds an offset that is not a finite number"
            return ""
        if header.tag == spec.TAG_BOUNDARY and (
            end - start != len(spec.BOUNDARY_UUID) or self._read(start, end) != spec.BOUNDARY_UUID
        ):
            return f"{where} does not hold the boundary UUID"
        return ""

    def _keep(self, header: _Header, repaired: bytes | None = None) -> None:
        if header.tag == spec.TAG_STREAM_HEADER:
            stream_id = struct.unpack_from("<I", self.data, header.content_start)[0]
            self.layouts[stream_id] = self._layout(header)
        self.has_file_header = self.has_file_header or header.tag == spec.TAG_FILE_HEADER
        self.tag_counts[header.tag] = self.tag_counts.get(header.tag, 0) + 1
        if repaired is not None:
            self.pieces.append(repaired)
        elif self.pieces and isinstance(self.pieces[-1], tuple) and self.pieces[-1][1] == header.start:
            self.pieces[-1] = (self.pieces[-1][0], header.end)
        else:
            self.pieces.append((header.start, header.end))

    def _xml(self, start: int, end: int, *, decode: bool = False) -> ElementTree.Element | None:
        """The XML element in ``[start, end)``, or None.

        Parsed as pyxdf does: stream headers after decoding with replacement characters, file headers and footers
        as bytes (where bad UTF-8 fails).
        """
        if end - start > MAX_XML_BYTES:
            return None
        raw = self._read(start, end)
        try:
            return ElementTree.fromstring(raw.decode("utf-8", "replace") if decode else raw)
        except ElementTree.ParseError:
            return None

    def _layout(self, header: _Header) -> _Layout:
        root = self._xml(header.content_start + 4, header.end, decode=True)
        assert root is not None  # checked by _content_problem
        channel_format = (root.findtext("channel_format") or "").strip()
        item_bytes = 0 if channel_format == "string" else np.dtype(spec.VALUE_DTYPES[channel_format]).itemsize
        return _Layout(item_bytes, int((root.findtext("channel_count") or "").strip()))

    def _layout_at(self, start: int) -> _Layout | None:
        if start + 4 > self.size:
            return None
        return self.layouts.get(struct.unpack_from("<I", self.data, start)[0])

    def _varlen(self, pos: int, limit: int) -> tuple[int, int] | None:
        """XDF's variable-length integer at ``pos``: (value, position after it), or None."""
        if pos >= limit:
            return None
        width = self.data[pos]
        if width not in _WIDTHS or pos + 1 + width > limit:
            return None
        return int.from_bytes(self.data[pos + 1 : pos + 1 + width], "little"), pos + 1 + width

    def _samples_end(self, pos: int, limit: int, layout: _Layout, *, exact: bool) -> int | None:
        """Where the samples starting at ``pos`` (their count first) end, reading no further than ``limit``.

        As pyxdf reads them: each sample starts with a time-stamp byte, and a non-zero one is followed by an
        8-byte stamp; then the values (numeric) or, per channel, a variable-length byte count and the bytes.
        ``exact``: the samples must end at ``limit`` (a chunk's declared end), else None. Otherwise (a length
        field is being repaired) numeric samples are tried only in the layouts recorders write: every sample
        stamped, only the first one stamped, or none.
        """
        count = self._varlen(pos, limit)
        if count is None:
            return None
        n_samples, pos = count
        if layout.item_bytes == 0:
            walk_to = limit if exact else min(limit, pos + _MAX_STRING_REPAIR_BYTES)
            end = self._string_samples_end(pos, walk_to, n_samples, layout.n_channels)
            return end if not exact or end == limit else None
        row = layout.item_bytes * layout.n_channels
        if n_samples * (1 + row) > limit - pos:
            return None
        if not exact:
            for n_stamped in (n_samples, min(n_samples, 1), 0):
                end = pos + n_samples * (1 + row) + 8 * n_stamped
                if end <= limit and self._uniform_after(pos, n_samples, row, n_stamped, quick_reject=True):
                    return end
            return None
        extra = limit - pos - n_samples * (1 + row)  # 8 bytes per stamped sample
        if extra % 8 or extra // 8 > n_samples:
            return None
        n_stamped = extra // 8
        if n_stamped in (0, 1, n_samples):
            return limit if self._uniform_after(pos, n_samples, row, n_stamped) else None
        return self._walk_numeric(pos, limit, n_samples, row)

    def _uniform_after(self, pos: int, n_samples: int, row: int, n_stamped: int, *, quick_reject: bool = False) -> bool:
        """True when the first ``n_stamped`` (all, 1 or 0) samples carry a stamp and the others do not.

        ``quick_reject``: look at the first few samples before reading them all (garbage fails there).
        """
        if n_stamped not in (0, n_samples):  # the first stamped, the rest not
            if self.data[pos] == 0:
                return False
            pos, n_samples, n_stamped = pos + 9 + row, n_samples - 1, 0
        if n_samples == 0:
            return True
        stride = row + (9 if n_stamped else 1)
        for n in ((16, n_samples) if quick_reject and n_samples > 64 else (n_samples,)):
            flags = np.frombuffer(self._read(pos, pos + n * stride), dtype=np.uint8)[::stride]
            if not (np.all(flags != 0) if n_stamped else np.all(flags == 0)):
                return False
        return True

    def _walk_numeric(self, pos: int, limit: int, n_samples: int, row: int) -> int | None:
        """Walk samples of mixed layouts one run of equal layout at a time; end at ``limit`` or None."""
        window = 8  # samples looked at in one step: doubles while the layout stays the same
        while n_samples:
            if pos >= limit:
                return None
            stamped = self.data[pos] != 0
            stride = row + (9 if stamped else 1)
            k = min(n_samples, window, (limit - pos) // stride)
            if k == 0:
                return None
            flags = np.frombuffer(self._read(pos, pos + k * stride), dtype=np.uint8)[::stride]
            same = flags != 0 if stamped else flags == 0
            run = k if same.all() else int(np.argmin(same))
            window = min(2 * window, _LOOKAHEAD_SAMPLES) if run == k else 8
            pos += run * stride
            n_samples -= run
        return pos if pos == limit else None

    def _string_samples_end(self, pos: int, limit: int, n_samples: int, n_channels: int) -> int | None:
        start, end = pos, None
        for _ in range(n_samples):
            if pos >= limit:
                break
            pos += 9 if self.data[pos] != 0 else 1
            for _ in range(n_channels):
                size = self._varlen(pos, limit)
                pos = limit + 1 if size is None else size[1] + size[0]
                if pos > limit:
                    break
            if pos > limit:
                break
        else:
            end = pos
        self._charge(_STRING_WALK_WEIGHT * (min(pos, limit) - start))  # a Python step per value, not a copy
        return end

    def _absurd_stream_header(self, header: _Header) -> str:
        """What is impossible in a StreamHeader (checked before pyxdf would allocate what it declares), or ''."""
        content_bytes = header.length - 2
        if content_bytes > MAX_XML_BYTES:
            return f"the StreamHeader at byte {header.start} is {content_bytes} bytes long (at most {MAX_XML_BYTES})"
        content = self._read(header.content_start, header.end)
        found = {name: pattern.search(content) for name, pattern in _FIELD.items()}
        count, rate = (m.group(1).decode("utf-8", "replace") if m else "" for m in found.values())
        if not count.isdigit() or not 1 <= int(count) <= spec.MAX_CHANNELS:
            return (
                f"the stream declared at byte {header.start} has channel_count {count!r} "
                f"(1 to {spec.MAX_CHANNELS} accepted)"
            )
        try:
            srate = float(rate or 0.0)
        except ValueError:
            srate = math.nan
        if not (math.isfinite(srate) and srate >= 0.0):
            return (
                f"the stream declared at byte {header.start} has nominal_srate {rate!r} "
                "(a finite rate >= 0 is needed)"
            )
        return ""


def _stream_fields_problem(root: ElementTree.Element, where: str) -> str:
    """What pyxdf needs from a StreamHeader and does not find (a name, a known format, a count, a rate), or ''."""
    if root.find("name") is None or root.findtext("name") is None:
        return f"{where} has no stream name"
    channel_format = (root.findtext("channel_format") or "").strip()
    if channel_format != "string" and channel_format not in spec.VALUE_DTYPES:
        return f"{where} has an unknown channel_format {channel_format!r}"
    count = (root.findtext("channel_count") or "").strip()
    if not count.isdigit() or not 1 <= int(count) <= spec.MAX_CHANNELS:
        return f"{where} has channel_count {count!r}"
    try:
        rate = float((root.findtext("nominal_srate") or "").strip())
    except ValueError:
        rate = math.nan
    if not (math.isfinite(rate) and rate >= 0.0):
        return f"{where} has no finite nominal_srate >= 0"
    return ""
