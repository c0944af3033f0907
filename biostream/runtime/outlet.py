"""The prediction stream of one monitored stream: an LSL outlet any LSL app (LabRecorder included) can consume.

Type ``Predictions``, irregular rate (a sample per window, none for a window dropped under load), float32: one
channel per class probability (``p_<class>``, unit ``probability``) and a last channel ``label`` holding the index
of the predicted class (-1 and NaN probabilities for "no prediction"). Each sample is stamped with its window's
end time in the LSL clock, so it lines up with the raw stream in any recording. The description names the
bundle (SHA-256, task, window and hop) and the source stream (name, type, source_id, uid).

Names carry the session's short id, so two monitors on one machine never publish streams of the same name.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pylsl

from biostream.lsl import StreamDescription
from biostream.runtime.pipeline import ModelInput
from devices.lsl_meta import make_stream_info

#: The LSL type of prediction streams.
PREDICTION_TYPE = "Predictions"


def prediction_stream_name(source: StreamDescription, task: str, session_id: str) -> str:
    """``"<source name> <task> predictions [<session>]"``."""
    return f"{source.name} {task} predictions [{session_id[:6]}]"


class PredictionOutlet:
    """Publish a stream's predictions over LSL.

    Parameters
    ----------
    source : StreamDescription
        The monitored stream.
    model : ModelInput
        The bundle attached to it.
    session_id : str
        The monitor session's id (in the name and source id).
    """

    def __init__(self, source: StreamDescription, model: ModelInput, session_id: str) -> None:
        classes = list(model.class_names)
        self.name = prediction_stream_name(source, model.task, session_id)
        self.source_id = f"biostream-{session_id}-{source.source_id or source.name}-{model.bundle_key[:12]}"
        info = make_stream_info(
            self.name,
            PREDICTION_TYPE,
            0.0,
            [f"p_{c}" for c in classes] + ["label"],
            ["probability"] * len(classes) + ["class index"],
            ["probability"] * len(classes) + ["label"],
            channel_format="float32",
            source_id=self.source_id,
            manufacturer="biostream",
            extra={
                "bundle_sha256": model.bundle_key,
                "task": model.task,
                "class_names": ",".join(classes),
                "window_s": f"{model.spec.window_s:g}",
                "hop_s": f"{model.hop_s:g}",
                "source_name": source.name,
                "source_type": source.type,
                "source_id": source.source_id,
                "source_uid": source.uid,
                "session_id": session_id,
            },
        )
        self._outlet = pylsl.StreamOutlet(info, chunk_size=1)
        self._n_classes = len(classes)
        self.description = StreamDescription.from_info(self._outlet.get_info())

    def push(self, probabilities: Sequence[float] | None, label: int, t_end: float) -> float:
        """Push one window's outcome stamped ``t_end`` (None: no prediction); return the local time it went out."""
        if probabilities is None:
            values = [math.nan] * self._n_classes + [-1.0]
        else:
            values = [float(p) for p in probabilities] + [float(label)]
        self._outlet.push_sample(values, t_end)
        return pylsl.local_clock()

    def close(self) -> None:
        """Drop the outlet (it vanishes from the network)."""
        self._outlet = None
