"""A fixed-size ring of multichannel samples with one timestamp per sample.

Samples are addressed two ways: "the newest ``n``" (:meth:`RingBuffer.latest`) and by *absolute sample index*
(:meth:`RingBuffer.get`), the position of a sample in everything pushed since construction or the last
:meth:`RingBuffer.reset` (the first sample ever pushed is index 0). Storage is preallocated once; a push copies
at most two contiguous slices, so it costs O(chunk) and never reallocates.

The ring is not thread-safe: one owner (an inlet thread or an actor, which serialises calls) pushes and reads.
"""

from __future__ import annotations

import logging

import numpy as np

from devices._checks import ensure_int
from devices.errors import BadInputError, StreamMismatchError

logger = logging.getLogger(__name__)


class RingBuffer:
    """Preallocated ring of ``(capacity_samples, n_channels)`` samples plus a float64 timestamp ring.

    Parameters
    ----------
    capacity_samples : int
        Number of samples kept; older samples are overwritten. At least 1.
    n_channels : int
        Number of channels every pushed chunk must have. At least 1.
    dtype : numpy dtype
        Storage dtype of the samples (timestamps are always float64, in seconds).
    name : str
        Stream name used in error messages.
    """

    def __init__(
        self, capacity_samples: int, n_channels: int, dtype: np.dtype | type = np.float32, *, name: str = "ring"
    ) -> None:
        self.capacity_samples = ensure_int(capacity_samples, "capacity_samples", minimum=1)
        self.n_channels = ensure_int(n_channels, "n_channels", minimum=1)
        self.name = str(name)
        self._data = np.zeros((self.capacity_samples, self.n_channels), dtype=dtype)
        self._timestamps = np.zeros(self.capacity_samples, dtype=np.float64)
        self._n_pushed = 0

    # ------------------------------------------------------------------ counters
    @property
    def dtype(self) -> np.dtype:
        """Storage dtype of the samples."""
        return self._data.dtype

    @property
    def n_pushed(self) -> int:
        """Samples pushed since construction or the last :meth:`reset` (including any since overwritten)."""
        return self._n_pushed

    @property
    def n_available(self) -> int:
        """Samples currently held (``min(n_pushed, capacity_samples)``)."""
        return min(self._n_pushed, self.capacity_samples)

    @property
    def n_overwritten(self) -> int:
        """Samples pushed that are no longer held: overwritten, or dropped from a chunk larger than the ring."""
        return self._n_pushed - self.n_available

    @property
    def first_index(self) -> int:
        """Absolute index of the oldest sample held (equals :attr:`n_pushed` when the ring is empty)."""
        return self.n_overwritten

    # ------------------------------------------------------------------ writing
    def push(self, data: np.ndarray, timestamps: np.ndarray) -> None:
        """Append a chunk; when it is longer than the ring, only its newest ``capacity_samples`` are stored.

        Parameters
        ----------
        data : array of shape (n_samples, n_channels)
            Samples, cast to the ring's dtype. A 1-D array is accepted for a single-channel ring.
        timestamps : array of shape (n_samples,)
            Sample times in seconds.

        Raises
        ------
        StreamMismatchError
            If the chunk's channel count differs from the ring's.
        BadInputError
            If the chunk is not 2-D or the number of timestamps differs from the number of samples.
        """
        data = np.asarray(data)
        if data.ndim == 1 and self.n_channels == 1:
            data = data.reshape(-1, 1)
        if data.ndim != 2:
            raise BadInputError(
                f"stream '{self.name}': a chunk must be 2-D (n_samples, n_channels), got shape {data.shape}"
            )
        if data.shape[1] != self.n_channels:
            raise StreamMismatchError(f"stream '{self.name}': expected {self.n_channels} channels, got {data.shape[1]}")
        timestamps = np.asarray(timestamps, dtype=np.float64).reshape(-1)
        n = data.shape[0]
        if timestamps.shape[0] != n:
            raise BadInputError(f"stream '{self.name}': {n} samples but {timestamps.shape[0]} timestamps")
        if n == 0:
            return
        skipped = max(0, n - self.capacity_samples)
        if skipped:
            # Only the newest samples can survive; copying the rest would just be overwritten.
            data = data[skipped:]
            timestamps = timestamps[skipped:]
        self._write(data, timestamps, self._n_pushed + skipped)
        self._n_pushed += n

    def push_fill(self, n: int, value: float, first_timestamp_s: float, period_s: float) -> None:
        """Append ``n`` samples all equal to ``value``, stamped ``first_timestamp_s + k * period_s``.

        Only the newest ``capacity_samples`` of them are written, so the cost does not grow with ``n`` (a long
        gap's placeholders).
        """
        n = ensure_int(n, "n", minimum=0)
        kept = min(n, self.capacity_samples)
        skipped = n - kept
        data = np.full((kept, self.n_channels), value, dtype=self._data.dtype)
        self._write(data, first_timestamp_s + period_s * np.arange(skipped, n), self._n_pushed + skipped)
        self._n_pushed += n

    def _write(self, data: np.ndarray, timestamps: np.ndarray, start_index: int) -> None:
        """Copy ``data`` (at most capacity rows) so that its first row lands at absolute ``start_index``."""
        n = data.shape[0]
        pos = start_index % self.capacity_samples
        first = min(n, self.capacity_samples - pos)
        self._data[pos : pos + first] = data[:first]
        self._timestamps[pos : pos + first] = timestamps[:first]
        rest = n - first
        if rest:
            self._data[:rest] = data[first:]
            self._timestamps[:rest] = timestamps[first:]

    def reset(self) -> None:
        """Forget every sample and zero the counters (storage is kept)."""
        self._n_pushed = 0

    # ------------------------------------------------------------------ reading
    def get(self, start_index: int, stop_index: int) -> tuple[np.ndarray, np.ndarray]:
        """Return the samples with absolute indices ``[start_index, stop_index)``, in time order.

        Parameters
        ----------
        start_index, stop_index : int
            Absolute sample indices (see the module docstring); the range must be held by the ring.

        Returns
        -------
        data : array of shape (stop_index - start_index, n_channels)
            A contiguous copy.
        timestamps : array of shape (stop_index - start_index,)
            Sample times in seconds.

        Raises
        ------
        IndexError
            If part of the range was overwritten or has not been pushed yet.
        """
        if start_index > stop_index or start_index < self.first_index or stop_index > self._n_pushed:
            raise IndexError(
                f"ring '{self.name}': samples [{start_index}, {stop_index}) requested, "
                f"but [{self.first_index}, {self._n_pushed}) are held"
            )
        n = stop_index - start_index
        out = np.empty((n, self.n_channels), dtype=self._data.dtype)
        out_ts = np.empty(n, dtype=np.float64)
        pos = start_index % self.capacity_samples
        first = min(n, self.capacity_samples - pos)
        out[:first] = self._data[pos : pos + first]
        out_ts[:first] = self._timestamps[pos : pos + first]
        if n > first:
            out[first:] = self._data[: n - first]
            out_ts[first:] = self._timestamps[: n - first]
        return out, out_ts

    def latest(self, n: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Return the newest ``n`` samples (all held samples when ``n`` is None), oldest first.

        Parameters
        ----------
        n : int or None
            How many samples; at most :attr:`n_available`.

        Returns
        -------
        data : array of shape (n, n_channels)
            A contiguous copy in time order.
        timestamps : array of shape (n,)
            Sample times in seconds.

        Raises
        ------
        ValueError
            If ``n`` is negative or more than the ring holds.
        """
        if n is None:
            n = self.n_available
        n = ensure_int(n, "n", minimum=0)
        if n > self.n_available:
            raise ValueError(f"ring '{self.name}': {n} samples requested, but only {self.n_available} are held")
        return self.get(self._n_pushed - n, self._n_pushed)

    def __len__(self) -> int:
        return self.n_available

    def __repr__(self) -> str:
        return (
            f"RingBuffer(name={self.name!r}, capacity_samples={self.capacity_samples}, n_channels={self.n_channels}, "
            f"n_pushed={self._n_pushed}, n_available={self.n_available})"
        )
