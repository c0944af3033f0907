"""Stream ↔ bundle matching: whether a live stream carries what a bundle's model takes, and on which channels.

A bundle names a modality, channel labels, a rate and units (:class:`bridges.bundle.InputInfo`); a stream has an
LSL type, a rate and, when its outlet wrote a description, channel labels, types and units. Real tools disagree
on all of these (facts read from their sources, 2026):

* **types**: PPG is typed ``PPG`` by muselsl, BlueMuse and the gwusk E4 bridge, ``BVP`` by the HectorCarral E4
  bridge; BrainFlow bridges use ``EXG``; the OpenBCI GUI types every stream ``EEG`` (FFT and band power too);
  case varies (``ECG``/``ecg``, ``Accelerometer``);
* **labels**: muselsl PPG is ``PPG1, PPG2, PPG3`` (ambient, infrared, red), Muse EEG ``TP9, AF7, AF8, TP10,
  Right AUX``; Polar bridges (markspan) write ``<name>`` instead of ``<label>`` (read as the label here);
  the OpenBCI GUI, pylsl's ``SendData`` and the E4 bridges often write no description at all; BlueMuse can append
  channels typed ``timestamp``; EEG montages use old and new 10-20 names (``T3``/``T7``) and reference suffixes
  (``F3-A2``);
* **rates and units**: the E4 sends BVP at 64 Hz, Muse PPG 64 Hz, Polar ECG 130 Hz; EEG in ``uV`` or
  ``microvolts``, WESAD ECG in ``mV``.

So matching is lenient where it is safe and strict where a guess would feed garbage to a model: a type is
compared through :data:`MODALITY_TYPES` (any case), a single-channel model takes the one channel of its modality
(or the preferred one of several, e.g. the infrared ``PPG2`` of a Muse), a multi-channel model needs every label
(through 10-20 aliases and reference suffixes), never positional guesses. The stream's rate must carry the model's
band. Voltages are rescaled to the bundle's unit. Anything else is a :class:`devices.errors.StreamMismatchError`
that says what is missing; ``--channel BUNDLE_LABEL=STREAM_LABEL`` overrides the channel choice (and, with it,
the type check: the user vouches for the signal).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from bridges.bundle import InputInfo
from devices.errors import StreamMismatchError

#: LSL types (lower case) accepted for each bundle modality.
MODALITY_TYPES: dict[str, tuple[str, ...]] = {
    "ppg": ("ppg", "bvp", "pleth", "pulse", "optics"),
    "ecg": ("ecg", "ekg"),
    "eeg": ("eeg",),
    "emg": ("emg",),
    "resp": ("resp", "respiration", "rsp"),
    "acc": ("acc", "accelerometer", "accel"),
    "eda": ("eda", "gsr"),
}
#: Types that say "some biopotential" (BrainFlow bridges): accepted when the channel labels settle the question.
GENERIC_TYPES = ("exg", "")
#: For a one-channel model, labels preferred among several channels of its modality, best first.
PREFERRED_LABELS: dict[str, tuple[str, ...]] = {
    "ppg": ("bvp", "ppg", "ppg2", "ir", "pleth", "ppg3", "ppg1"),  # Muse: PPG2 is infrared, PPG1 ambient light
    "ecg": ("ecg", "ekg", "ii", "lead ii", "ecg1"),
    "resp": ("resp", "respiration"),
}
#: Channel types that are not signals (BlueMuse's secondary timestamps).
_NOT_SIGNAL = ("timestamp",)
#: Old and new names of the same 10-20 positions.
_TEN_TWENTY_ALIASES = {"t3": "t7", "t4": "t8", "t5": "p7", "t6": "p8"}
_VOLTS = {
    "v": 1.0, "volt": 1.0, "volts": 1.0, "mv": 1e-3, "millivolt": 1e-3, "millivolts": 1e-3,
    "uv": 1e-6, "µv": 1e-6, "μv": 1e-6, "microvolt": 1e-6, "microvolts": 1e-6, "nv": 1e-9,
}
# Below this fraction of the model's rate a stream cannot carry its input when the bundle declares no band.
_MIN_RATE_FRACTION = 0.25


@dataclass(frozen=True)
class StreamMatch:
    """How a stream's channels feed a bundle's input.

    Attributes
    ----------
    indices : tuple of int
        Stream channel index for each bundle channel, in the bundle's order.
    stream_labels : tuple of str
        The stream channels chosen.
    scales : tuple of float
        Factor per chosen channel that converts the stream's unit to the bundle's (1.0 when no conversion).
    notes : tuple of str
        Choices a user should know about (which of several channels, an assumed unit).
    """

    indices: tuple[int, ...]
    stream_labels: tuple[str, ...]
    scales: tuple[float, ...]
    notes: tuple[str, ...] = ()

    def describe(self, bundle_labels: Sequence[str]) -> str:
        """``"BVP <- PPG2"`` pairs, one per bundle channel."""
        return ", ".join(f"{b} <- {s}" for b, s in zip(bundle_labels, self.stream_labels))


def _norm(label: str) -> str:
    return label.strip().lower()


def _electrode(label: str) -> str:
    """A label's 10-20 position: lower case, without an ``EEG `` prefix or a reference (``F3-A2`` → ``f3``)."""
    name = _norm(label)
    name = re.sub(r"^(eeg|ecg|emg)[\s_:]+", "", name)
    name = re.split(r"[-_/\s]", name, maxsplit=1)[0] or name
    return _TEN_TWENTY_ALIASES.get(name, name)


def min_rate_hz(spec: InputInfo) -> float:
    """Lowest stream rate that carries the model's input.

    Twice the top of the band-pass the bundle declares, else a quarter of the model's rate.
    """
    tops = [float(step["high_hz"]) for step in spec.preprocessing if "high_hz" in step and step["high_hz"]]
    return 2.0 * max(tops) if tops else _MIN_RATE_FRACTION * spec.sfreq_hz


def _volt_factor(unit: str) -> float | None:
    return _VOLTS.get(_norm(unit).replace(" ", ""))


def match_stream(
    spec: InputInfo,
    *,
    stream_name: str,
    stream_type: str,
    sfreq_hz: float,
    labels: Sequence[str],
    types: Sequence[str],
    units: Sequence[str],
    overrides: Mapping[str, str] | None = None,
) -> StreamMatch:
    """Match a stream to a bundle's input (see the module docstring).

    Parameters
    ----------
    spec : InputInfo
        The bundle's input contract.
    stream_name, stream_type : str
        The stream's LSL name and type.
    sfreq_hz : float
        Its nominal rate (Hz).
    labels, types, units : sequence of str
        Its channel labels, channel types and units (generic ``ch1``... labels, the stream type and '' where it
        has no description).
    overrides : mapping of str to str, optional
        Bundle channel label → stream channel label, from ``--channel``.

    Returns
    -------
    StreamMatch

    Raises
    ------
    StreamMismatchError
        One line naming the stream, the bundle's need and what is missing.
    """
    overrides = dict(overrides or {})
    modality = spec.modality.lower()
    accepted = MODALITY_TYPES.get(modality, (modality,))
    need = f"{spec.modality.upper()} ({', '.join(spec.channel_labels)}) at >= {min_rate_hz(spec):g} Hz"
    prefix = (
        f"stream '{stream_name}' ({stream_type or 'no type'}, {len(labels)} ch, {sfreq_hz:g} Hz) does not fit "
        f"a model that takes {need}"
    )

    unknown = sorted(set(overrides) - set(spec.channel_labels))
    if unknown:
        raise StreamMismatchError(
            f"--channel names {unknown}, but the model's channels are {list(spec.channel_labels)}"
        )
    if sfreq_hz <= 0:
        raise StreamMismatchError(f"{prefix}: it has no regular rate")
    if sfreq_hz < min_rate_hz(spec):
        raise StreamMismatchError(f"{prefix}: its rate is too low to carry the model's band")

    signal = [k for k, t in enumerate(types) if _norm(t) not in _NOT_SIGNAL]
    by_label = {_norm(labels[k]): k for k in reversed(signal)}  # first occurrence wins
    by_electrode = {_electrode(labels[k]): k for k in reversed(signal)}
    of_modality = [k for k in signal if _norm(types[k]) in accepted]
    type_ok = _norm(stream_type) in accepted or bool(of_modality)

    type_error = StreamMismatchError(
        f"{prefix}: its type '{stream_type}' is not {spec.modality.upper()} (accepted: "
        f"{', '.join(t.upper() for t in accepted)}); if it is, say which channel with --channel"
    )
    if not (type_ok or overrides or _norm(stream_type) in GENERIC_TYPES):
        raise type_error
    notes: list[str] = []
    chosen: list[int] = []
    missing: list[str] = []
    for label in spec.channel_labels:
        if label in overrides:
            wanted = _norm(overrides[label])
            if wanted not in by_label:
                raise StreamMismatchError(
                    f"{prefix}: --channel {label}={overrides[label]} names no channel of the stream; it has "
                    f"{[labels[k] for k in signal]}"
                )
            chosen.append(by_label[wanted])
        elif _norm(label) in by_label:
            chosen.append(by_label[_norm(label)])
        elif spec.n_channels > 1 and _electrode(label) in by_electrode:
            chosen.append(by_electrode[_electrode(label)])
        elif spec.n_channels == 1:
            pick = _single_channel(modality, labels, signal, of_modality, type_ok)
            if pick is None:
                missing.append(label)
                continue
            chosen.append(pick)
            if len(of_modality or signal) > 1:
                notes.append(
                    f"using channel '{labels[pick]}' of {[labels[k] for k in (of_modality or signal)]}; "
                    f"choose another with --channel {label}=<label>"
                )
        else:
            missing.append(label)
    if missing:
        available = [labels[k] for k in signal]
        raise StreamMismatchError(
            f"{prefix}: channel(s) {missing} not found among {available}; map them with --channel LABEL=STREAM_LABEL"
        )
    # A generic type (EXG) passes when the labels say what the channels are.
    named = {_norm(spec.channel_labels[0]), *PREFERRED_LABELS.get(modality, ())}
    labels_found = spec.n_channels > 1 or _norm(labels[chosen[0]]) in named
    if not (type_ok or overrides or labels_found):
        raise type_error

    scales = []
    for label, unit_wanted, k in zip(spec.channel_labels, spec.units, chosen):
        want, have = _volt_factor(unit_wanted), _volt_factor(units[k] if k < len(units) else "")
        if want is not None and have is not None:
            scales.append(have / want)
        else:
            scales.append(1.0)
            if want is not None:
                notes.append(f"channel '{labels[k]}' declares no voltage unit; taken as {unit_wanted} for {label}")
    return StreamMatch(tuple(chosen), tuple(labels[k] for k in chosen), tuple(scales), tuple(notes))


def _single_channel(
    modality: str, labels: Sequence[str], signal: list[int], of_modality: list[int], type_ok: bool
) -> int | None:
    """The channel a one-channel model takes: preferred label, the only one of its modality, or None."""
    pool = of_modality or (signal if type_ok else [])
    for preferred in PREFERRED_LABELS.get(modality, ()):
        for k in pool:
            if _norm(labels[k]) == preferred:
                return k
    return pool[0] if len(pool) == 1 else None  # several and none preferred: the user must choose
