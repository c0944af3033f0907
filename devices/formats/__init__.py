"""Recording formats: readers for XDF, EDF/BDF, CSV, WESAD and ISRUC, and an append-only XDF writer.

Every reader returns a :class:`devices.recording.Recording`; errors are
:class:`devices.errors.RecordingFormatError` with one-line messages naming the file.
"""

from devices.formats.csv_reader import read_csv
from devices.formats.edf import read_bdf, read_edf
from devices.formats.isruc import read_isruc, read_isruc_path
from devices.formats.registry import EXTENSIONS, FORMAT_NAMES, READERS, detect_format, read_recording
from devices.formats.safe_pickle import RestrictedUnpickler, load_untrusted_pickle
from devices.formats.wesad import read_wesad
from devices.formats.xdf_reader import read_xdf
from devices.formats.xdf_writer import XdfWriter, write_xdf

__all__ = [
    "EXTENSIONS",
    "FORMAT_NAMES",
    "READERS",
    "RestrictedUnpickler",
    "XdfWriter",
    "detect_format",
    "load_untrusted_pickle",
    "read_bdf",
    "read_csv",
    "read_edf",
    "read_isruc",
    "read_isruc_path",
    "read_recording",
    "read_wesad",
    "read_xdf",
    "write_xdf",
]
