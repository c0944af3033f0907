"""The window's parts on their own (real widgets, offscreen, no runtime): the signal rows, the predictions
timeline, the health table and the bundle view."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
import pytest

from biostream.runtime.records import Latency, Marker, Prediction, StreamHealth
from bridges.bundle import read_bundle
from ui.health_view import HealthTable
from ui.panels import bundle_html
from ui.signals_view import SignalsView
from ui.timeline import NO_PREDICTION, PredictionTimeline

CLASSES = ("baseline", "stress", "amusement")
LATENCY = Latency(*([0.0] * len(Latency.__dataclass_fields__)))


def _snapshot(data: np.ndarray, t0: float = 100.0, rate: float = 250.0, unit: str = "uV") -> dict:
    n, n_ch = data.shape
    return {"t": t0 + np.arange(n) / rate, "data": data, "labels": [f"E{c + 1}" for c in range(n_ch)],
            "units": [unit] * n_ch}


def test_channels_sit_on_their_rows_and_gaps_are_not_bridged(qtbot):
    view = SignalsView()
    qtbot.addWidget(view)
    view.t0 = 100.0
    view.add_stream("eeg", "EEG")
    rng = np.random.default_rng(0)
    data = np.stack([50 * np.sin(np.linspace(0, 20, 1000)) + 400, 5 * rng.normal(size=1000)], axis=1)
    data[300:340, 1] = np.nan  # a hole in the second channel
    view.show_snapshots({"eeg": _snapshot(data)}, now_s=4.0)
    x, y = view.plots["eeg"].curve.getData()
    first, second = y[:1000], y[1001:2001]
    assert np.isnan(y[1000]) and np.isnan(y[-1])  # rows are separated, so never joined to each other
    assert abs(np.nanmedian(first) - 1.0) < 0.15 and abs(np.nanmedian(second)) < 0.15  # top row 1, bottom row 0
    assert np.nanmax(first) - np.nanmin(first) < 1.0  # a channel stays within its row
    assert np.isnan(second[300:340]).all() and np.isfinite(second[:300]).all()  # the hole stays a hole
    assert x[0] == pytest.approx(0.0) and x[999] == pytest.approx(999 / 250.0)  # session seconds
    ticks = [text for _, text in view.plots["eeg"]._ticks]
    assert ticks[0].startswith("E1 ±") and ticks[0].endswith(" uV")


def test_fixed_scaling_uses_the_stream_types_range_in_its_unit(qtbot):
    view = SignalsView()
    qtbot.addWidget(view)
    view.t0 = 0.0
    view.add_stream("eeg", "EEG")
    view.set_scaling("fixed")
    view.show_snapshots({"eeg": _snapshot(np.full((500, 1), 0.0), unit="mV")}, now_s=2.0)
    assert view.plots["eeg"].half_ranges == [pytest.approx(0.1)]  # ±100 µV, said in mV
    assert view.plots["eeg"]._ticks[0][1] == "E1 ±0.1 mV"


def _prediction(t_end: float, probs=None, reason: str = "", codes=()) -> Prediction:
    label = -1 if probs is None else int(np.argmax(probs))
    return Prediction(stream="wrist", task="stress", t_start=t_end - 10.0, t_end=t_end,
                      probabilities=None if probs is None else tuple(probs), label=label, class_names=CLASSES,
                      reason=reason, codes=tuple(codes), latency=LATENCY)


def test_timeline_shows_bands_no_prediction_reasons_truth_and_the_current_state(qtbot):
    timeline = PredictionTimeline()
    qtbot.addWidget(timeline)
    timeline.t0 = 1000.0
    timeline.set_truth_stream("states")
    timeline.add_stream("wrist", "stress", CLASSES)
    timeline.add_predictions([_prediction(1010.0, (0.7, 0.2, 0.1)), _prediction(1012.0, (0.1, 0.8, 0.1))])
    row = timeline.rows["wrist"]
    assert len(row.bars) == 3  # one stacked band per class
    timeline.add_markers([Marker("states", 1000.5, "baseline"), Marker("states", 1005.0, "baseline"),
                          Marker("other", 1006.0, "stress"), Marker("states", 1011.0, "stress")])
    assert list(timeline.truth) == [(1000.5, "baseline"), (1011.0, "stress")]  # repeats folded, others ignored
    assert timeline.truth_at(1010.0) == "baseline" and timeline.truth_at(1012.0) == "stress"
    state = row.state.text()
    assert "stress" in state and "80%" in state and "✓" in state
    timeline.add_predictions([_prediction(1014.0, reason="dropout of 2.0 s (longer than 0.1 s)", codes=("gap",))])
    texts = [item.toPlainText() for item in row.texts]
    assert texts == ["gap"]
    assert "no prediction" in row.state.text() and "dropout" in row.state.text()
    grey = row.bars[-1]
    assert pg.mkBrush(NO_PREDICTION).color().name() == grey.opts["brush"].color().name()
    assert timeline.n_windows("wrist") == 3


def test_health_rows_are_coloured_by_level(qtbot):
    table = HealthTable()
    qtbot.addWidget(table)
    counts = dict.fromkeys(("samples", "gaps", "missing_samples", "jumps", "disconnects", "reconnects",
                            "nonfinite_samples", "windows", "predictions", "rejected", "dropped", "errors"), 0)
    base = dict(name="wrist", type="PPG", nominal_rate_hz=64.0, effective_rate_hz=63.9, rate_measured=True,
                clock_offset_s=0.0002, jitter_s=0.0, lag_s=0.0, latency_p50_ms=20.0, latency_p99_ms=31.0,
                provider="CPUExecutionProvider", **counts)
    table.update_health([StreamHealth(stream="wrist", state="connected", level="green", message="", **base),
                         StreamHealth(stream="strap", state="lost", level="red", message="lost: no data for 10 s",
                                      **{**base, "name": "strap"})])
    assert table.levels == {"wrist": "green", "strap": "red"}
    cells = [table.item(1, c).text() for c in range(table.columnCount())]
    assert cells[0] == "wrist" and cells[2] == "63.9 / 64 Hz" and cells[8] == "20 / 31 ms"
    assert table.item(0, 0).text() == "strap" and table.item(0, 1).text() == "lost: no data for 10 s"


def test_the_bundle_view_shows_metrics_in_words():
    bundle = read_bundle("demo")
    html = bundle_html(bundle)
    f1 = bundle.manifest.provenance.metrics["bridge_test"]["f1_macro"]
    assert 0.5 < f1 < 1.0 and f"macro-F1 {f1:.3f}" in html and "baseline" in html and "<table>" in html


def test_layout_span_scaling_and_last_bundle_persist_between_runs(qtbot, tmp_path):
    from PySide6 import QtCore

    from ui.main_window import MainWindow

    settings = QtCore.QSettings(str(tmp_path / "biostream.ini"), QtCore.QSettings.Format.IniFormat)
    first = MainWindow(settings=settings)
    qtbot.addWidget(first)
    first.span.setCurrentText("60 s")
    first.scaling.setCurrentText("fixed")
    bundle = read_bundle("demo")
    first._on_bundle_read(str(bundle.path), bundle)
    first.close()  # never started: closing saves and stops nothing

    second = MainWindow(settings=settings)
    qtbot.addWidget(second)
    assert second.span.currentText() == "60 s" and second.signals.span_s == 60.0
    assert second.scaling.currentText() == "fixed" and second.signals.scaling == "fixed"
    assert settings.value("last_bundle") == str(bundle.path)
    second.close()
