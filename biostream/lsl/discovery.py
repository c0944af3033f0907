"""Finding LSL streams: list what is visible, resolve one stream from a query, parse ``KEY=VALUE`` selectors.

A *selector* is the user's way to name a stream (``--stream name=Polar H10 ECG``): a dict with any of the keys
``name``, ``type`` and ``source_id``. :func:`resolve_stream` turns it into exactly one ``pylsl.StreamInfo`` or
raises :class:`devices.errors.BadInputError` with a one-line message naming the query and what is visible.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import pylsl

from devices._checks import ensure_positive
from devices.errors import BadInputError
from devices.lsl_meta import FORMAT_NAMES

logger = logging.getLogger(__name__)

#: Keys a selector may use, in the order messages list them.
SELECTOR_KEYS = ("name", "type", "source_id")

#: How many visible streams an error message lists before "and N more".
_MAX_LISTED = 8

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
        """A readable identity for logs and UIs: the name, with the source id when there is one."""
        return f"{self.name} [{self.source_id}]" if self.source_id else self.name

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
        """One line for messages: ``'Polar H10 ECG' (ECG, 1 ch, 130 Hz, float32, source_id 'x', host 'h')``."""
        rate = f"{self.sfreq_hz:g} Hz" if self.is_regular else "irregular"
        return (
            f"'{self.name}' ({self.type}, {self.n_channels} ch, {rate}, {self.channel_format}, "
            f"source_id '{self.source_id}', host '{self.hostname}')"
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
    """Find the outlet a :class:`StreamDescription` describes (by its identity, see ``identity_predicate``).

    The description is what crosses process boundaries (it pickles; a ``pylsl.StreamInfo`` does not), so a
    stream picked in one process is opened in another by this.

    Raises
    ------
    BadInputError
        Nothing with that identity is visible within ``timeout_s``.
    """
    timeout_s = ensure_positive(timeout_s, "timeout_s")
    infos = pylsl.resolve_bypred(description.identity_predicate(), 1, timeout_s)
    if not infos:
        raise BadInputError(f"stream {description.summary()} is not visible within {timeout_s:g} s")
    # Several outlets may share a source id (a stale one lingering): prefer the very instance described.
    return next((i for i in infos if i.uid() == description.uid), infos[0])


def resolve_selector(selector: str | Mapping[str, str], timeout_s: float = 5.0) -> pylsl.StreamInfo:
    """Resolve a selector given as ``"KEY=VALUE"`` text or a dict (see :func:`parse_selector`)."""
    if isinstance(selector, str):
        selector = parse_selector(selector)
    unknown = set(selector) - set(SELECTOR_KEYS)
    if unknown:
        raise BadInputError(f"stream selector keys {sorted(unknown)} are unknown; use {list(SELECTOR_KEYS)}")
    return resolve_stream(**dict(selector), timeout_s=timeout_s)
