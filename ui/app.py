"""Start the desktop app: ``biostream gui``, ``biostream demo`` and ``biostream monitor`` with a display.

``gui`` opens the window on a fresh session, ``demo`` on the demo session, ``monitor`` on the given streams and
bundle.

The plots take the desktop theme's colours (light or dark), and antialiasing stays off for scrolling speed.
"""

from __future__ import annotations

import sys
import uuid

import pyqtgraph as pg
from PySide6 import QtCore, QtWidgets

from biostream.runtime.demo import DEMO_DWELL_SCALE, DEMO_HOP_S, DEMO_SEED
from biostream.runtime.headless import default_streams
from biostream.runtime.session import MonitorSession
from bridges.bundle import demo_bundle_path, read_bundle
from ui.controller import SessionController
from ui.main_window import MainWindow
from ui.sources import Source


def application() -> QtWidgets.QApplication:
    """The QApplication (made once), with pyqtgraph following the desktop palette."""
    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication(sys.argv[:1])
    app.setApplicationName("biostream")
    app.setOrganizationName("biostream")
    palette = app.palette()
    pg.setConfigOptions(background=palette.base().color(), foreground=palette.text().color(), antialias=False)
    return app


def run_gui() -> int:
    """``biostream gui``: the main window on a fresh session; returns the exit code."""
    app = application()
    window = MainWindow()
    window.after_start(window.reopen_last_bundle)
    window.show()
    window.start()
    return app.exec()


def demo_window(seed: int = DEMO_SEED, settings: QtCore.QSettings | None = None) -> MainWindow:
    """The main window on the demo session.

    The simulated wearer's ECG (what the model was trained on) beside the PPG it now reads, the predictions under
    them with the true states, health and events; the demo bundle open in the Model panel.
    """
    window = MainWindow(settings=settings)
    window.setWindowTitle("biostream demo: a stress model trained on chest ECG, reading a PPG wristband")

    def attach(source: Source) -> None:
        ecg, ppg, states = source.stream_names
        controller = window.controller
        window.timeline.set_truth_stream(states)
        controller.add_stream(f"name={ppg}", bundle=demo_bundle_path(), hop_s=DEMO_HOP_S)
        controller.add_stream(f"name={ecg}")
        controller.add_stream(f"name={states}")
        window.open_bundle(demo_bundle_path())
        window.say("demo: a stress model trained on chest ECG now reads the PPG wristband; the states change "
                   "about every minute (the truth track under the predictions shows them)")

    def populate() -> None:
        window.sources.simulate("stress", ("ecg", "ppg"), seed=seed, dwell_scale=DEMO_DWELL_SCALE,
                                suffix=f" (demo {uuid.uuid4().hex[:4]})", then=attach)

    window.after_start(populate)
    return window


def run_demo(duration_s: float | None = None, seed: int = DEMO_SEED) -> int:
    """``biostream demo`` with a display: the demo window (closing by itself after ``duration_s`` if given)."""
    app = application()
    window = demo_window(seed)
    window.show()
    window.start()
    if duration_s is not None:
        QtCore.QTimer.singleShot(int(duration_s * 1000), window.close)
    return app.exec()


def run_monitor_window(
    *, bundle: str, selectors: list[str], hop_s: float | None = None, channel_map: dict[str, str] | None = None,
    record_path: str | None = None, duration_s: float | None = None, ray_address: str | None = None,
    device: str = "auto",
) -> int:
    """``biostream monitor`` with a display: the window on the given streams with the bundle on them.

    The bundle is read (and a bad one refused) before the window opens; streams that do not fit are said in the
    window's status area.
    """
    read = read_bundle(bundle)
    chosen = list(selectors) or default_streams(read.manifest.input.modality)
    app = application()
    session = MonitorSession(ray_address=ray_address, device=device, display_s=300.0)
    window = MainWindow(SessionController(session))

    def populate() -> None:
        window.model.show_bundle(read)
        for selector in chosen:
            window.controller.add_stream(selector, bundle=read, hop_s=hop_s, channel_map=channel_map)
        if record_path is not None:
            window.start_recording(record_path)

    window.after_start(populate)
    window.show()
    window.start()
    if duration_s is not None:
        QtCore.QTimer.singleShot(int(duration_s * 1000), window.close)
    return app.exec()
