"""LaBraM's channel-position table: which row of ``pos_embed`` each 10-20 electrode name uses."""

from __future__ import annotations

from devices.errors import BadInputError

__all__ = ["ISRUC_CHANNELS", "LABRAM_POSITIONS", "labram_position"]

# The electrode names of LaBraM's channel-position table, in row order (row i + 1 of ``pos_embed``; row 0 is cls).
# This is the first 128 entries of ``standard_1020`` in the LaBraM repository's utils.py; that list goes on with 8
# more bipolar names that would index past the table's 129 rows, so they are not usable and not listed here.
# Names are upper-cased (the repository spells FTT9h etc.) because labels are matched case-insensitively.
LABRAM_POSITIONS: tuple[str, ...] = (
    "FP1", "FPZ", "FP2",
    "AF9", "AF7", "AF5", "AF3", "AF1", "AFZ", "AF2", "AF4", "AF6", "AF8", "AF10",
    "F9", "F7", "F5", "F3", "F1", "FZ", "F2", "F4", "F6", "F8", "F10",
    "FT9", "FT7", "FC5", "FC3", "FC1", "FCZ", "FC2", "FC4", "FC6", "FT8", "FT10",
    "T9", "T7", "C5", "C3", "C1", "CZ", "C2", "C4", "C6", "T8", "T10",
    "TP9", "TP7", "CP5", "CP3", "CP1", "CPZ", "CP2", "CP4", "CP6", "TP8", "TP10",
    "P9", "P7", "P5", "P3", "P1", "PZ", "P2", "P4", "P6", "P8", "P10",
    "PO9", "PO7", "PO5", "PO3", "PO1", "POZ", "PO2", "PO4", "PO6", "PO8", "PO10",
    "O1", "OZ", "O2", "O9", "CB1", "CB2",
    "IZ", "O10", "T3", "T5", "T4", "T6", "M1", "M2", "A1", "A2",
    "CFC1", "CFC2", "CFC3", "CFC4", "CFC5", "CFC6", "CFC7", "CFC8",
    "CCP1", "CCP2", "CCP3", "CCP4", "CCP5", "CCP6", "CCP7", "CCP8",
    "T1", "T2", "FTT9H", "TTP7H", "TPP9H", "FTT10H", "TPP8H", "TPP10H",
    "FP1-F7", "F7-T7", "T7-P7", "P7-O1", "FP2-F8", "F8-T8", "T8-P8", "P8-O2",
)  # fmt: skip
_POSITION_ROW = {name: i + 1 for i, name in enumerate(LABRAM_POSITIONS)}

#: The six EEG channels of ISRUC-Sleep used in the paper (10-20 names, reference stripped).
ISRUC_CHANNELS: tuple[str, ...] = ("F3", "C3", "O1", "F4", "C4", "O2")


def labram_position(label: str) -> int:
    """Row of LaBraM's channel-position table for an EEG channel label (1-based; row 0 is the cls token).

    Labels are matched case-insensitively, after dropping an ``"EEG "`` prefix. A label that is not itself in
    the table but names a referenced derivation (``"F3-A2"``, ``"F3_M2"``) maps to its first electrode (``F3``).

    Parameters
    ----------
    label : str
        A channel label as a recording names it.

    Returns
    -------
    int
        Index into ``pos_embed``'s second axis, in ``1..128``.

    Raises
    ------
    BadInputError
        The label names no electrode of the table.
    """
    name = label.strip().upper()
    if name.startswith("EEG "):
        name = name[4:].strip()
    if name in _POSITION_ROW:
        return _POSITION_ROW[name]
    first = name.replace("_", "-").split("-")[0].strip()
    if first in _POSITION_ROW:
        return _POSITION_ROW[first]
    raise BadInputError(
        f"EEG channel {label!r} is not one of LaBraM's {len(LABRAM_POSITIONS)} 10-20 electrode names "
        "(e.g. 'F3', 'C4', 'O2'; 'F3-A2' maps to 'F3')."
    )
