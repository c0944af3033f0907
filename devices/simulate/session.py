"""Offline simulation: a whole session as a :class:`~devices.recording.Recording`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from devices.recording import Recording, Stream
from devices.simulate._validate import positive
from devices.simulate.generator import PhysioSimulator, SimBlock

#: Name of the marker stream carrying the true state.
STATE_STREAM_NAME = "Sim states"
#: Manufacturer written into simulated streams' metadata.
MANUFACTURER = "biostream simulator"


def stream_name(profile_name: str) -> str:
    """Return the name of the simulated stream for a profile stream name (``"ECG"`` -> ``"Sim ECG"``)."""
    return f"Sim {profile_name}"


def source_id(seed: int, modality: str) -> str:
    """Return the LSL source id of a simulated modality (stable for a seed)."""
    return f"biostream-sim-{seed}-{modality}"


def simulate_session(
    scenario: str,
    modalities: Sequence[str],
    duration_s: float,
    seed: int = 0,
    devices: Mapping[str, str] | None = None,
    artefacts: bool = True,
    t0_s: float = 0.0,
    dwell_scale: float = 1.0,
) -> Recording:
    """Simulate a session of ``duration_s`` seconds: one stream per modality plus a marker stream of states.

    Parameters
    ----------
    scenario : str
        ``"stress"``, ``"sleep"`` or ``"gait"``.
    modalities : sequence of str
        Modalities from :data:`devices.profiles.MODALITIES`.
    duration_s : float
        Length (s), > 0.
    seed : int
        Fixes the subject, the timeline and the signals (the same as :class:`PhysioSimulator` with that seed).
    devices : mapping of str to str, optional
        Device profile per modality overriding the defaults.
    artefacts : bool
        Add wander, motion, powerline and lead-off artefacts.
    t0_s : float
        Time of the first sample (s); sample ``k`` of a stream at rate ``r`` is stamped ``t0_s + k / r``.
    dwell_scale : float
        Factor on the duration of every state episode (as for the live simulation).

    Returns
    -------
    Recording
        Streams named ``"Sim <profile stream>"`` with data of shape (n, n_channels) float32 in the profile's
        units, and the marker stream ``"Sim states"`` (type ``"Markers"``) with one marker per state change,
        the first at ``t0_s``; :func:`devices.recording.labels_at` gives the state at any time. ``info`` holds
        ``scenario``, ``seed``, ``modalities``, ``devices``, ``artefacts``, ``duration_s`` and ``format``.
    """
    duration_s = positive(duration_s, "duration_s")
    sim = PhysioSimulator(scenario, modalities, seed=seed, devices=devices, artefacts=artefacts,
                          dwell_scale=dwell_scale)
    streams = block_streams(sim, sim.next_block(duration_s), t0_s=t0_s)
    info = {
        "format": "simulated", "scenario": sim.scenario, "seed": sim.seed, "modalities": list(sim.modalities),
        "devices": dict(sim.devices), "artefacts": sim.artefacts, "duration_s": duration_s, "t0_s": float(t0_s),
    }
    return Recording(streams, info)


def block_streams(sim: PhysioSimulator, block: SimBlock, t0_s: float = 0.0) -> list[Stream]:
    """Return one :class:`Stream` per modality of ``block`` plus the ``"Sim states"`` marker stream.

    Sample ``k`` (counted from the simulation start) of a stream at rate ``r`` is stamped ``t0_s + k / r``; the
    marker stream holds the state changes that fall in the block (possibly none).
    """
    streams = []
    for m, profile in sim.stream_profiles.items():
        streams.append(Stream(
            name=stream_name(profile.name),
            type=profile.lsl_type,
            data=block.data[m],
            timestamps=t0_s + block.timestamps(m),
            nominal_srate=profile.sfreq_hz,
            channel_labels=list(profile.channel_labels),
            channel_units=list(profile.channel_units),
            channel_types=list(profile.channel_types),
            channel_format="float32",
            source_id=source_id(sim.seed, m),
            metadata={"manufacturer": MANUFACTURER, "device": sim.devices[m], "modality": m},
        ))
    times = np.array([t for t, _ in block.events], dtype=np.float64)
    labels = np.array([[label] for _, label in block.events], dtype=object).reshape(-1, 1)
    streams.append(Stream(
        name=STATE_STREAM_NAME,
        type="Markers",
        data=labels,
        timestamps=t0_s + times,
        nominal_srate=0.0,
        channel_labels=["state"],
        channel_units=[""],
        channel_types=["Markers"],
        channel_format="string",
        source_id=source_id(sim.seed, "states"),
        metadata={"manufacturer": MANUFACTURER, "scenario": sim.scenario},
    ))
    return streams
