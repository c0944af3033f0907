"""Physiological simulators: a latent state timeline driving paired ECG, PPG, EEG, EMG, respiration and motion.

Live use goes through :class:`PhysioSimulator` (``next_block``); offline datasets through
:func:`simulate_session`, which returns a :class:`~devices.recording.Recording`.
"""

from devices.simulate.generator import PhysioSimulator, SimBlock, resolve_profiles
from devices.simulate.scenarios import SCENARIO_TABLES, SCENARIOS, Physio, Scenario, StateSpec, scenario_states
from devices.simulate.session import STATE_STREAM_NAME, block_streams, simulate_session, source_id, stream_name
from devices.simulate.subject import SubjectParams

__all__ = [
    "PhysioSimulator",
    "SimBlock",
    "resolve_profiles",
    "SCENARIOS",
    "SCENARIO_TABLES",
    "Physio",
    "Scenario",
    "StateSpec",
    "scenario_states",
    "STATE_STREAM_NAME",
    "simulate_session",
    "block_streams",
    "source_id",
    "stream_name",
    "SubjectParams",
]
