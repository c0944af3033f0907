"""Showing text that came from the network (stream names, channel labels, marker strings) in Qt widgets.

Qt renders a string as rich text (HTML) wherever a widget guesses it is: a ``QLabel`` set to rich text, a tooltip
that starts with a tag (``Qt.mightBeRichText``), a pyqtgraph plot title (a ``QGraphicsTextItem`` fed with HTML).
A stream named ``<img src=...>`` or ``<h1>`` would then be laid out as markup. Anything from a stream goes
through :func:`html_text` before it is put into HTML, and tooltips are built by :func:`tooltip`, which always
makes them rich text with the content escaped, so no guess is involved. Both also drop control characters and
cut long text (:func:`devices.lsl_meta.safe_text`).
"""

from __future__ import annotations

import html

from devices.lsl_meta import safe_text

#: Characters of a stream name or label shown in tables, titles and labels (the full text is in tooltips).
SHOWN_CHARS = 80
#: Characters shown in a tooltip.
TIP_CHARS = 2000


def shown(text: object, limit: int = SHOWN_CHARS) -> str:
    """Plain text for a widget that shows text as it is (table cells, list items): one line, cut to ``limit``."""
    return safe_text(text, limit)


def html_text(text: object, limit: int = SHOWN_CHARS) -> str:
    """Text to put inside HTML: one line, cut to ``limit``, every ``<``, ``>``, ``&`` and quote escaped."""
    return html.escape(safe_text(text, limit))


def tooltip(text: object, limit: int = TIP_CHARS) -> str:
    """A tooltip that shows ``text`` literally (rich text with the content escaped)."""
    return f"<p>{html.escape(safe_text(text, limit))}</p>"
