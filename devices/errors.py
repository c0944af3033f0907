"""Exceptions for bad input. The CLI turns each into a one-line message and exit code 2.

Raise them where input enters (files, streams, bundles, configs, command-line values) for what the user can fix,
with a message naming the thing and the problem. Any other exception, a plain ``ValueError`` included, is taken
for a bug in biostream: exit code 1, the traceback in a crash log (:mod:`biostream.crashlog`).
"""

from __future__ import annotations


class BadInputError(ValueError):
    """Input the user can fix: a malformed file, a wrong stream, a mismatched setting.

    The message is one line and names the file or stream and the problem.
    """


class RecordingFormatError(BadInputError):
    """A recording file that is unknown, truncated, of the wrong format or missing what it needs."""


class UnsafePickleError(RecordingFormatError):
    """A pickle asked for something other than numpy arrays and builtins; it was refused unread."""


class StreamMismatchError(BadInputError):
    """A live stream whose layout (channel count, rate, format) is not what the consumer needs."""
