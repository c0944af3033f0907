"""Finding LSL streams: list what is visible, resolve one stream from a query, parse ``KEY=VALUE`` selectors.

A *selector* is the user's way to name a stream (``--stream name=Polar H10 ECG``): a dict with any of the keys
``name``, ``type`` and ``source_id``. :func:`resolve_stream` turns it into exactly one ``pylsl.StreamInfo`` or
raises :class:`devices.errors.BadInputError` with a one-line message naming the query and what is visible.

Anyone on the network can publish a stream, so a description is untrusted data: discovery lists every stream it
can parse (liblsl drops answers it cannot, e.g. a NaN or infinite rate or a name that does not fit one UDP
datagram), its text is shown through :func:`devices.lsl_meta.safe_text`, and
:attr:`StreamDescription.problems` says why a stream would be refused for monitoring (more than
:data:`MAX_CHANNELS` channels, a rate that is not finite, negative or over :data:`MAX_SRATE_HZ`, more than
:data:`MAX_VALUES_PER_S` values per second, a string stream wider than :data:`MAX_STRING_CHANNELS` or faster than
:data:`MAX_STRING_VALUES_PER_S`, an unknown format, or a name, type, source id or host over
:data:`MAX_FIELD_CHARS` characters). A stream picked from discovery is opened again by its ``uid`` (a random id
liblsl gives every outlet), so another outlet with the same name or source id is never taken for it.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import pylsl

from devices._checks import ensure_positive
from devices.errors import BadInputError, StreamMismatchError
from devices.lsl_meta import FORMAT_NAMES, safe_text

logger = logging.getLogger(__name__)

#: Keys a selector may use, in the order messages list them.
SELECTOR_KEYS = ("name", "type", "source_id")

#: How many visible streams an error message lists before "and N more".
_MAX_LISTED = 8
#: Most channels of a stream biostream opens (256-channel EEG caps and 1024-electrode grids fit).
MAX_CHANNELS = 1024
#: Highest nominal rate of a stream biostream opens, in Hz (biosignal amplifiers stay well under it).
MAX_SRATE_HZ = 100_000.0
#: Most values per second (channels x rate) of a stream biostream opens: 1024 channels at 2048 Hz. Its buffers
#: (1 s of pull buffer, the display history) are sized from this, so it bounds their memory.
MAX_VALUES_PER_S = 1024 * 2048
#: Most channels and values per second of a string stream biostream opens: liblsl receives each string whole
#: (there is no size limit in LSL) and queues what is not pulled yet, so string streams are kept narrow and slow
#: (marker streams have one channel and an irregular rate).
MAX_STRING_CHANNELS = 16
MAX_STRING_VALUES_PER_S = 100
#: Longest name, type, source id or host name of a stream biostream opens (characters).
MAX_FIELD_CHARS = 256
# Characters of each field in one-line summaries.
_SHOWN_CHARS = 64
# How long to look for the very outlet a description names (by uid) before falling back to its source id, in s.
_UID_WAIT_S = 1.0

# Split "type=ECG; name=Polar H10" only where a known key follows, so names containing ';' survive.
_SPLIT_RE = re.compile(r";\s*(?=(?:" + "|".join(SELECTOR_KEYS) + r")\s*=)")


@dataclass(frozen=True)
class StreamDescription:
    """What discovery knows about one visible LSL stream (the resolved info; no channel metadata).

    Attributes
    ----------
    name, type : str
        The outlet's stream name and content type (``"ECG"``, ``"EEG"``, ``"Markers"``).
    n_channels : int
        Channels per sample.
    sfreq_hz : float
        Nominal sampling rate in Hz; 0.0 for irregular streams (markers).
    channel_format : str
        Value format name: ``float32``, ``double64``, ``string``, ``int8/16/32/64``.
    source_id : str
        The outlet's persistent id ('' when it set none; such a stream cannot be recovered by id).
    hostname : str
        Host the outlet runs on.
    uid : str
        Unique id of this outlet instance (changes when the outlet is recreated).
    """

    name: str
    type: str
    n_channels: int
    sfreq_hz: float
    channel_format: str
    source_id: str
    hostname: str
    uid: str

    @classmethod
    def from_info(cls, info: pylsl.StreamInfo) -> StreamDescription:
        """Describe a resolved or full ``pylsl.StreamInfo``."""
        return cls(
            name=info.name(),
            type=info.type(),
            n_channels=int(info.channel_count()),
            sfreq_hz=float(info.nominal_srate()),
            channel_format=FORMAT_NAMES.get(info.channel_format(), "undefined"),
            source_id=info.source_id(),
            hostname=info.hostname(),
            uid=info.uid(),
        )

    @property
    def is_regular(self) -> bool:
        """True for a stream with a nominal rate (> 0 Hz)."""
        return self.sfreq_hz > 0

    @property
    def is_numeric(self) -> bool:
        """True unless the stream carries strings (marker streams usually do)."""
        return self.channel_format != "string"

    @property
    def key(self) -> str:
        """A readable identity for logs and UIs: the name, with the source id when there is one (display-safe)."""
        name = safe_text(self.name, _SHOWN_CHARS)
        return f"{name} [{safe_text(self.source_id, _SHOWN_CHARS)}]" if self.source_id else name

    @property
    def problems(self) -> tuple[str, ...]:
        """Why this stream would be refused for monitoring, one short phrase each (empty when it would not).

        Limits: :data:`MAX_CHANNELS`, :data:`MAX_SRATE_HZ`, :data:`MAX_VALUES_PER_S`, :data:`MAX_STRING_CHANNELS`,
        :data:`MAX_STRING_VALUES_PER_S`, :data:`MAX_FIELD_CHARS`.
        """
        found = []
        if not 1 <= self.n_channels <= MAX_CHANNELS:
            found.append(f"{self.n_channels:,} channels (at most {MAX_CHANNELS:,})")
        rate = self.sfreq_hz
        if not math.isfinite(rate) or rate < 0:
            found.append(f"nominal rate {rate!r} Hz (a finite number >= 0 is needed)")
        elif rate > MAX_SRATE_HZ:
            found.append(f"nominal rate {rate:g} Hz (at most {MAX_SRATE_HZ:g} Hz)")
        elif self.n_channels * rate > MAX_VALUES_PER_S and self.n_channels <= MAX_CHANNELS:
            found.append(f"{self.n_channels * rate:,.0f} values/s (at most {MAX_VALUES_PER_S:,})")
        if self.channel_format == "string" and 1 <= self.n_channels <= MAX_CHANNELS:
            if self.n_channels > MAX_STRING_CHANNELS:
                found.append(f"a string stream of {self.n_channels} channels (at most {MAX_STRING_CHANNELS})")
            elif math.isfinite(rate) and self.n_channels * rate > MAX_STRING_VALUES_PER_S:
                found.append(f"a string stream of {self.n_channels * rate:,.0f} values/s "
                             f"(at most {MAX_STRING_VALUES_PER_S})")
        if self.channel_format not in FORMAT_NAMES.values():
            found.append(f"channel format '{safe_text(self.channel_format, 16)}'")
        for field in ("name", "type", "source_id", "hostname"):
            length = len(getattr(self, field))
            if length > MAX_FIELD_CHARS:
                found.append(f"a {field} of {length:,} characters (at most {MAX_FIELD_CHARS})")
        return tuple(found)

    def check_openable(self) -> None:
        """Raise :class:`devices.errors.StreamMismatchError` (one line) when :attr:`problems` is not empty."""
        problems = self.problems
        if problems:
            raise StreamMismatchError(f"stream {self.summary()} is refused: {'; '.join(problems)}")

    def identity_predicate(self) -> str:
        """The liblsl query that finds this stream again after its outlet is recreated.

        By ``source_id`` when the outlet set one (the persistent identity), else by name, type and host.

        Raises
        ------
        BadInputError
            No source id and a name or type that an LSL query cannot quote.
        """
        if self.source_id:
            return build_predicate(source_id=self.source_id)
        return build_predicate(self.name, self.type) + f" and hostname={_xpath_literal(self.hostname, 'hostname')}"

    def summary(self) -> str:
        """One line for messages: ``'Polar H10 ECG' (ECG, 1 ch, 130 Hz, float32, source_id 'x', host 'h')``.

        Display-safe: control characters replaced and each field cut to 64 characters (see
        :func:`devices.lsl_meta.safe_text`); HTML is left as text.
        """
        rate = f"{self.sfreq_hz:g} Hz" if self.is_regular or not math.isfinite(self.sfreq_hz) else "irregular"
        name, type_, source_id, host = (
            safe_text(v, _SHOWN_CHARS) for v in (self.name, self.type, self.source_id, self.hostname)
        )
        return (
            f"'{name}' ({type_}, {self.n_channels} ch, {rate}, {self.channel_format}, "
            f"source_id '{source_id}', host '{host}')"
        )


def list_streams(wait_s: float = 1.0) -> list[StreamDescription]:
    """List the LSL streams visible within ``wait_s`` seconds, sorted by name, type and source id.

    Parameters
    ----------
    wait_s : float
        How long to listen for outlets' answers, in s. Outlets answer within a few hundred ms on one machine.

    Returns
    -------
    streams : list of StreamDescription
        One entry per outlet instance (duplicates by ``uid`` removed).
    """
    wait_s = ensure_positive(wait_s, "wait_s")
    found = {info.uid(): StreamDescription.from_info(info) for info in pylsl.resolve_streams(wait_time=wait_s)}
    return sorted(found.values(), key=lambda d: (d.name, d.type, d.source_id, d.uid))


def parse_selector(text: str) -> dict[str, str]:
    """Parse ``"KEY=VALUE"`` (several joined by ``;``) into a selector dict.

    Parameters
    ----------
    text : str
        E.g. ``"name=Polar H10 ECG"``, ``"type=ECG"``, ``"type=ECG; name=Polar H10"``. Keys are ``name``,
        ``type`` and ``source_id`` (case-insensitive); values keep their inner spaces.

    Returns
    -------
    selector : dict
        Key → value, e.g. ``{"name": "Polar H10 ECG"}``; ready for ``resolve_stream(**selector)``.

    Raises
    ------
    BadInputError
        A part without ``=``, an unknown key, an empty value or a repeated key.
    """
    if not isinstance(text, str) or not text.strip():
        raise BadInputError(f"stream selector {text!r} is empty; use KEY=VALUE with KEY one of {list(SELECTOR_KEYS)}")
    selector: dict[str, str] = {}
    for part in _SPLIT_RE.split(text.strip()):
        key, sep, value = part.partition("=")
        key, value = key.strip().lower(), value.strip()
        if not sep or key not in SELECTOR_KEYS:
            raise BadInputError(f"stream selector {text!r} must be KEY=VALUE with KEY one of {list(SELECTOR_KEYS)}")
        if not value:
            raise BadInputError(f"stream selector {text!r} gives {key}= no value")
        if key in selector:
            raise BadInputError(f"stream selector {text!r} gives {key}= twice")
        selector[key] = value
    return selector


def format_query(name: str | None = None, type: str | None = None, source_id: str | None = None) -> str:
    """The query as a user would type it: ``name='Polar H10 ECG' type='ECG'`` (``'any stream'`` if empty)."""
    parts = [f"{k}={v!r}" for k, v in zip(SELECTOR_KEYS, (name, type, source_id)) if v is not None]
    return " ".join(parts) if parts else "any stream"


def _xpath_literal(value: str, key: str) -> str:
    # XPath 1.0 has no escapes: quote with whichever quote character the value lacks.
    if "'" not in value:
        return f"'{value}'"
    if '"' not in value:
        return f'"{value}"'
    raise BadInputError(f"stream {key} {value!r} contains both quote characters; LSL queries cannot express it")


def build_predicate(name: str | None = None, type: str | None = None, source_id: str | None = None) -> str:
    """The liblsl XPath predicate for a query, e.g. ``name='A' and type='ECG'`` ('' matches every stream)."""
    terms = []
    for key, value in zip(SELECTOR_KEYS, (name, type, source_id)):
        if value is not None:
            terms.append(f"{key}={_xpath_literal(value, key)}")
    return " and ".join(terms)


def _listing(descriptions: Iterable[StreamDescription]) -> str:
    items = [d.summary() for d in descriptions]
    if not items:
        return "none"
    extra = len(items) - _MAX_LISTED
    shown = "; ".join(items[:_MAX_LISTED])
    return shown + (f"; and {extra} more" if extra > 0 else "")


def resolve_stream(
    name: str | None = None,
    type: str | None = None,
    source_id: str | None = None,
    timeout_s: float = 5.0,
    *,
    confirm_s: float = 0.6,
) -> pylsl.StreamInfo:
    """Find the one LSL stream matching every given field.

    Parameters
    ----------
    name, type, source_id : str or None
        Fields to match exactly; ``None`` matches anything. With none given, the only visible stream matches.
    timeout_s : float
        How long to wait for a first match, in s.
    confirm_s : float
        After a first match, how long to listen for a second one (liblsl answers the first match before all
        outlets have replied), in s. 0 skips the ambiguity check.

    Returns
    -------
    info : pylsl.StreamInfo
        The resolved info (no channel description: open an inlet and call ``inlet.info()`` for that).

    Raises
    ------
    BadInputError
        Nothing matches within ``timeout_s`` (the message lists what is visible), or several streams match
        (the message lists them and says how to pick one).
    """
    for key, value in zip(SELECTOR_KEYS, (name, type, source_id)):
        if value is not None and not isinstance(value, str):
            raise TypeError(f"'{key}' must be an instance of str, None, got {value.__class__.__name__} instead.")
    timeout_s = ensure_positive(timeout_s, "timeout_s")
    confirm_s = ensure_positive(confirm_s, "confirm_s", allow_zero=True)
    query = format_query(name, type, source_id)
    predicate = build_predicate(name, type, source_id)

    def _find(minimum: int, wait_s: float) -> dict[str, pylsl.StreamInfo]:
        if predicate:
            infos = pylsl.resolve_bypred(predicate, minimum, wait_s)
        else:
            infos = pylsl.resolve_streams(wait_time=wait_s)
        return {info.uid(): info for info in infos}

    found = _find(1, timeout_s)
    if len(found) == 1 and confirm_s > 0:
        found.update(_find(2, confirm_s))
    if not found:
        visible = list_streams(wait_s=0.5)
        raise BadInputError(f"no LSL stream matches {query} within {timeout_s:g} s; visible: {_listing(visible)}")
    if len(found) > 1:
        matches = sorted((StreamDescription.from_info(i) for i in found.values()), key=lambda d: (d.name, d.uid))
        raise BadInputError(
            f"{len(matches)} LSL streams match {query}: {_listing(matches)}; add name=, type= or source_id= to pick one"
        )
    info = next(iter(found.values()))
    logger.debug("Resolved %s to %s", query, StreamDescription.from_info(info).summary())
    return info


def resolve_description(description: StreamDescription, timeout_s: float = 5.0) -> pylsl.StreamInfo:
    """Find the outlet a :class:`StreamDescription` describes: that very outlet (its uid), else its successor.

    The description is what crosses process boundaries (it pickles; a ``pylsl.StreamInfo`` does not), so a
    stream picked in one process is opened in another by this. The outlet with the described ``uid`` is looked
    for first, so another outlet with the same name or source id (a stale one, or an impostor) is never taken for
    it while it is visible. When it is gone (its outlet was recreated), a stream with its identity (see
    ``identity_predicate``) from the same host takes its place.

    Raises
    ------
    BadInputError
        Nothing with that identity is visible within ``timeout_s``, or only streams from other hosts.
    """
    timeout_s = ensure_positive(timeout_s, "timeout_s")
    uid_wait_s = min(timeout_s, _UID_WAIT_S)
    if description.uid:
        try:
            found = pylsl.resolve_bypred(f"uid={_xpath_literal(description.uid, 'uid')}", 1, uid_wait_s)
        except BadInputError:
            found = []
        exact = [i for i in found if i.uid() == description.uid]
        if exact:
            return exact[0]
    infos = pylsl.resolve_bypred(description.identity_predicate(), 1, max(0.1, timeout_s - uid_wait_s))
    if not infos:
        raise BadInputError(f"stream {description.summary()} is not visible within {timeout_s:g} s")
    choice = pick_successor(description, [StreamDescription.from_info(i) for i in infos])
    if choice is None:
        hosts = sorted({safe_text(i.hostname(), _SHOWN_CHARS) for i in infos})
        raise BadInputError(
            f"stream {description.summary()} is not visible within {timeout_s:g} s; streams with its identity from "
            f"other hosts ({', '.join(hosts)}) are not taken for it"
        )
    return infos[choice]


def pick_successor(old: StreamDescription, candidates: Sequence[StreamDescription]) -> int | None:
    """Index of the candidate that may stand in for ``old`` (its outlet lost or recreated), or None.

    Only candidates from the same host, with the same name and type: liblsl writes the host name of the machine an
    outlet runs on, so a stream with the same source id published from another machine is not taken for the one
    that went away; nor is another stream of the same machine that shares its source id (pylsl's example outlets
    all use one), which would fail the layout check and end the recovery. Among them a new outlet (another
    ``uid``) first, since a resolver may still list the lost one for a few seconds; else the very outlet, back
    after a network drop. (An outlet on the same machine, or a program that speaks the LSL protocol itself, can
    still claim the same identity: LSL is unauthenticated.)
    """
    alike = [k for k, c in enumerate(candidates)
             if (c.hostname, c.name, c.type) == (old.hostname, old.name, old.type)]
    fresh = [k for k in alike if candidates[k].uid != old.uid]
    return (fresh or alike or [None])[0]


def resolve_selector(selector: str | Mapping[str, str], timeout_s: float = 5.0) -> pylsl.StreamInfo:
    """Resolve a selector given as ``"KEY=VALUE"`` text or a dict (see :func:`parse_selector`)."""
    if isinstance(selector, str):
        selector = parse_selector(selector)
    unknown = set(selector) - set(SELECTOR_KEYS)
    if unknown:
        raise BadInputError(f"stream selector keys {sorted(unknown)} are unknown; use {list(SELECTOR_KEYS)}")
    return resolve_stream(**dict(selector), timeout_s=timeout_s)
