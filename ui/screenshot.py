"""Take a screenshot of the real demo window after it has run for a while (the README's picture).

Run under a virtual display: ``xvfb-run -a -s "-screen 0 1600x1000x24" python -m ui.screenshot --seconds 75
--span 30 --out docs/demo-window.png`` (``scripts/screenshot.sh`` does exactly that).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from PySide6 import QtCore, QtGui

from ui.app import application, demo_window


def dark_palette() -> QtGui.QPalette:
    """A dark desktop theme's palette (what a dark GNOME/KDE/macOS/Windows theme gives Qt)."""
    palette = QtGui.QPalette()
    roles = QtGui.QPalette.ColorRole
    for role, colour in ((roles.Window, "#2b2b2b"), (roles.WindowText, "#e6e6e6"), (roles.Base, "#1e1e1e"),
                         (roles.AlternateBase, "#2b2b2b"), (roles.Text, "#e6e6e6"), (roles.Button, "#353535"),
                         (roles.ButtonText, "#e6e6e6"), (roles.Highlight, "#2a82da"),
                         (roles.HighlightedText, "#ffffff"), (roles.ToolTipBase, "#353535"),
                         (roles.ToolTipText, "#e6e6e6")):
        palette.setColor(role, QtGui.QColor(colour))
    return palette


def main() -> None:
    """Run the demo window for ``--seconds``, save a picture of it to ``--out``, close it."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--out", default="docs/demo-window.png")
    parser.add_argument("--size", default="1600x1000")
    parser.add_argument("--span", type=int, default=30, help="seconds of signal on screen (one of the window's spans)")
    parser.add_argument("--dark", action="store_true", help="as on a desktop with a dark theme")
    args = parser.parse_args()
    app = application()
    if args.dark:
        app.setStyle("Fusion")
        app.setPalette(dark_palette())
        application()  # the plots take the new palette's colours
    # A fresh settings file: the picture shows the default layout, not the last one a user left.
    settings_dir = tempfile.TemporaryDirectory()
    settings = QtCore.QSettings(str(Path(settings_dir.name) / "biostream.ini"), QtCore.QSettings.Format.IniFormat)
    window = demo_window(settings=settings)
    width, height = (int(v) for v in args.size.split("x"))
    window.resize(width, height)
    window.span.setCurrentText(f"{args.span} s")
    window.show()
    window.start()

    def shoot() -> None:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        window.grab().save(args.out)
        print(f"saved {args.out}")
        window.close()

    QtCore.QTimer.singleShot(int(args.seconds * 1000), shoot)
    app.exec()


if __name__ == "__main__":
    main()
