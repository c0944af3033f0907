"""Device profiles: what real wearables and rigs stream (channels, units, rates, LSL types).

A :class:`DeviceProfile` is data only. Outlets write a profile's channel metadata into the LSL stream
description (``desc/channels/channel/{label,unit,type}``) so that inlets and recordings can read it back.
"""

from __future__ import annotations

from dataclasses import dataclass

from devices._checks import check_value


@dataclass(frozen=True)
class StreamProfile:
    """One LSL stream a device emits.

    Parameters
    ----------
    name : str
        Stream name suffix (the outlet is named ``"<device name> <name>"``).
    lsl_type : str
        LSL content type (``"ECG"``, ``"PPG"``, ``"EEG"``, ``"EMG"``, ``"Resp"``, ``"ACC"``, ...).
    sfreq_hz : float
        Nominal sampling rate in Hz.
    channel_labels : tuple of str
        Channel labels, in stream order.
    channel_units : tuple of str
        One unit per channel (``"uV"``, ``"a.u."``, ``"g"``, ...).
    channel_types : tuple of str
        One type per channel; defaults to ``lsl_type`` for every channel.
    """

    name: str
    lsl_type: str
    sfreq_hz: float
    channel_labels: tuple[str, ...]
    channel_units: tuple[str, ...]
    channel_types: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        n = len(self.channel_labels)
        if len(self.channel_units) != n:
            raise ValueError(f"profile stream '{self.name}': {len(self.channel_units)} units for {n} channels")
        if not self.channel_types:
            object.__setattr__(self, "channel_types", (self.lsl_type,) * n)
        elif len(self.channel_types) != n:
            raise ValueError(f"profile stream '{self.name}': {len(self.channel_types)} types for {n} channels")

    @property
    def n_channels(self) -> int:
        """Number of channels."""
        return len(self.channel_labels)


@dataclass(frozen=True)
class DeviceProfile:
    """A wearable or rig: a name, its maker, and the streams it emits."""

    key: str
    name: str
    manufacturer: str
    streams: tuple[StreamProfile, ...]

    def stream(self, lsl_type: str) -> StreamProfile:
        """Return the stream of content type ``lsl_type``; raise naming the types it has."""
        for s in self.streams:
            if s.lsl_type.lower() == lsl_type.lower():
                return s
        raise ValueError(
            f"device '{self.key}' has no {lsl_type!r} stream; it has {[s.lsl_type for s in self.streams]}"
        )


def _uniform(labels: tuple[str, ...], unit: str) -> tuple[str, ...]:
    return (unit,) * len(labels)


_TEN_TWENTY_PSG = ("F3-A2", "C3-A2", "O1-A2", "F4-A1", "C4-A1", "O2-A1")
_CYTON = ("Fp1", "Fp2", "C3", "C4", "P7", "P8", "O1", "O2")
_MUSE = ("TP9", "AF7", "AF8", "TP10")
# The FOG data set's rig (Zhang et al. 2022): of its EEG, the six channels BioX-Bridge feeds LaBraM, in LaBraM's ISRUC
# order; its three EMG muscles, the left and right tibialis anterior and the right gastrocnemius.
_FOG_EEG = ("F3", "C3", "O1", "F4", "C4", "O2")
_FOG_EMG = ("TA_L", "TA_R", "GS_R")
_XYZ = ("X", "Y", "Z")

PROFILES: dict[str, DeviceProfile] = {
    p.key: p
    for p in (
        DeviceProfile(
            "polar_h10", "Polar H10", "Polar",
            (StreamProfile("ECG", "ECG", 130.0, ("ECG",), ("uV",)),),
        ),
        DeviceProfile(
            "empatica_e4", "Empatica E4", "Empatica",
            (
                StreamProfile("BVP", "PPG", 64.0, ("BVP",), ("a.u.",)),
                StreamProfile("ACC", "ACC", 32.0, _XYZ, _uniform(_XYZ, "g")),
                StreamProfile("EDA", "EDA", 4.0, ("EDA",), ("uS",)),
                StreamProfile("TEMP", "TEMP", 4.0, ("TEMP",), ("degC",)),
            ),
        ),
        DeviceProfile(
            "muse", "Muse headband", "Interaxon",
            (StreamProfile("EEG", "EEG", 256.0, _MUSE, _uniform(_MUSE, "uV")),),
        ),
        DeviceProfile(
            "openbci_cyton", "OpenBCI Cyton", "OpenBCI",
            (StreamProfile("EEG", "EEG", 250.0, _CYTON, _uniform(_CYTON, "uV")),),
        ),
        DeviceProfile(
            "isruc_psg", "PSG montage (ISRUC-like)", "generic",
            (
                StreamProfile("EEG", "EEG", 200.0, _TEN_TWENTY_PSG, _uniform(_TEN_TWENTY_PSG, "uV")),
                StreamProfile("ECG", "ECG", 200.0, ("X2",), ("uV",)),
            ),
        ),
        DeviceProfile(
            "wesad_chest", "RespiBAN (WESAD chest)", "PLUX",
            (
                StreamProfile(
                    "chest", "Chest", 700.0,
                    ("ACC_X", "ACC_Y", "ACC_Z", "ECG", "EDA", "EMG", "Resp", "Temp"),
                    ("g", "g", "g", "mV", "uS", "mV", "%", "degC"),
                    ("ACC", "ACC", "ACC", "ECG", "EDA", "EMG", "Resp", "TEMP"),
                ),
            ),
        ),
        DeviceProfile(
            "wesad_wrist", "Empatica E4 (WESAD wrist)", "Empatica",
            (
                StreamProfile("BVP", "PPG", 64.0, ("BVP",), ("a.u.",)),
                StreamProfile("ACC", "ACC", 32.0, _XYZ, _uniform(_XYZ, "g")),
                StreamProfile("EDA", "EDA", 4.0, ("EDA",), ("uS",)),
                StreamProfile("TEMP", "TEMP", 4.0, ("TEMP",), ("degC",)),
            ),
        ),
        DeviceProfile(
            "fog_rig", "Freezing-of-gait rig (EEG + EMG)", "generic",
            (
                StreamProfile("EEG", "EEG", 500.0, _FOG_EEG, _uniform(_FOG_EEG, "uV")),
                StreamProfile("EMG", "EMG", 500.0, _FOG_EMG, _uniform(_FOG_EMG, "uV")),
            ),
        ),
        DeviceProfile(
            "resp_belt", "Respiration belt", "generic",
            (StreamProfile("Resp", "Resp", 50.0, ("Resp",), ("a.u.",)),),
        ),
        DeviceProfile(
            "imu", "Wrist IMU", "generic",
            (StreamProfile("ACC", "ACC", 50.0, _XYZ, _uniform(_XYZ, "g")),),
        ),
    )
}

#: Which device a simulated modality plays by default.
SIMULATED_DEVICE = {
    "ecg": ("polar_h10", "ECG"),
    "ppg": ("empatica_e4", "PPG"),
    "eeg": ("muse", "EEG"),
    "emg": ("fog_rig", "EMG"),
    "resp": ("resp_belt", "Resp"),
    "acc": ("imu", "ACC"),
}
MODALITIES = tuple(SIMULATED_DEVICE)


def get_profile(key: str) -> DeviceProfile:
    """Return the profile called ``key``; raise naming the known ones."""
    check_value(key, PROFILES, "device")
    return PROFILES[key]


def simulated_stream_profile(modality: str, device: str | None = None) -> StreamProfile:
    """Return the stream profile a simulated ``modality`` uses, from ``device`` or the default device."""
    check_value(modality, MODALITIES, "modality")
    default_device, lsl_type = SIMULATED_DEVICE[modality]
    return get_profile(device or default_device).stream(lsl_type)
