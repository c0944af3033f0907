"""The bridge's alignment targets, held in RAM or in a temporary file read one batch at a time.

Bridge training reads, per step, the cached old-FM targets of a batch of paired windows (``(B, T, d)``). For a
WESAD-sized pair set these are the largest thing training holds (2,000 windows × 46 tokens × 512 × 4 bytes
≈ 180 MiB for HuBERT-ECG-S; 360 MiB at j = 2 with 92 tokens), far more than the per-step working set of the
bridge and the old FM's suffix. Kept in a file, they cost page cache (which the OS may drop and re-read) instead
of process memory, and each step reads only its batch: the same trade the reference makes by streaming batches
from its data set.

The file is anonymous (created unlinked, :func:`tempfile.TemporaryFile`), so nothing is left on disk if the
process dies, and it is read with plain ``readinto`` calls, not memory-mapped: mapped pages that a step touched
would count as the process's resident memory again.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch

from bridges._batching import iter_batches

__all__ = ["TargetCache"]


class TargetCache:
    """Per-window float32 tensors of one shape ``(T, d)``, appended in order and read back by index.

    Parameters
    ----------
    directory : str or Path, optional
        Keep the rows in an unlinked temporary file in this directory; None keeps them in RAM.
    """

    def __init__(self, directory: str | Path | None = None) -> None:
        self._file: BinaryIO | None = None
        self._parts: list[torch.Tensor] = []
        self._tensor: torch.Tensor | None = None
        self._row_shape: tuple[int, ...] | None = None
        self._n = 0
        if directory is not None:
            path = Path(directory).expanduser()
            path.mkdir(parents=True, exist_ok=True)
            self._file = tempfile.TemporaryFile(dir=path, prefix="bridge-targets-")

    @classmethod
    def build(
        cls,
        fn: Callable[[torch.Tensor], torch.Tensor],
        x: np.ndarray | torch.Tensor,
        batch_size: int,
        directory: str | Path | None = None,
    ) -> TargetCache:
        """Run ``fn`` (no grad) over ``x`` ``(N, ...)`` in batches and keep its outputs ``(N, T, d)``."""
        cache = cls(directory)
        try:
            for out in iter_batches(fn, x, batch_size):
                cache.append(out)
        except BaseException:
            cache.close()
            raise
        return cache

    @property
    def on_disk(self) -> bool:
        """Whether the rows live in a file (else in RAM)."""
        return self._file is not None

    @property
    def shape(self) -> tuple[int, ...]:
        """``(N, T, d)``."""
        if self._row_shape is None:
            raise ValueError("the target cache is empty")
        return (self._n, *self._row_shape)

    @property
    def resident_bytes(self) -> int:
        """Bytes of rows held in process memory (0 when they are in a file)."""
        return 0 if self.on_disk else self._n * self._row_bytes

    def __len__(self) -> int:
        return self._n

    @property
    def _row_bytes(self) -> int:
        return int(np.prod(self._row_shape)) * 4 if self._row_shape is not None else 0

    def append(self, rows: torch.Tensor) -> None:
        """Append ``rows`` ``(B, T, d)`` (converted to float32 on the CPU)."""
        rows = rows.detach().to("cpu", torch.float32).contiguous()
        if self._row_shape is None:
            self._row_shape = tuple(rows.shape[1:])
        elif tuple(rows.shape[1:]) != self._row_shape:
            raise ValueError(f"rows of shape {tuple(rows.shape[1:])} appended to a cache of {self._row_shape}")
        if self._file is not None:
            self._file.seek(self._n * self._row_bytes)
            self._file.write(rows.numpy().tobytes())
        else:
            self._parts.append(rows)
            self._tensor = None
        self._n += len(rows)

    def __getitem__(self, index: torch.Tensor | np.ndarray | slice) -> torch.Tensor:
        """Rows ``index`` as a float32 tensor ``(B, T, d)`` (a fresh copy when read from the file)."""
        if self._file is None:
            if self._tensor is None:
                self._tensor = torch.cat(self._parts) if len(self._parts) > 1 else self._parts[0]
                self._parts = [self._tensor]
            return self._tensor[index]
        rows = np.atleast_1d(np.arange(self._n)[index] if isinstance(index, slice) else np.asarray(index))
        out = np.empty((len(rows), *self.shape[1:]), dtype=np.float32)
        for k, row in enumerate(rows):
            self._file.seek(int(row) * self._row_bytes)
            if self._file.readinto(memoryview(out[k]).cast("B")) != self._row_bytes:
                raise OSError(f"short read of target row {row} from the cache file")
        return torch.from_numpy(out)

    def close(self) -> None:
        """Release the rows (the file disappears with it)."""
        if self._file is not None:
            self._file.close()
            self._file = None
        self._parts, self._tensor, self._n = [], None, 0

    def __enter__(self) -> TargetCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
