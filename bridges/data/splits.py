"""Subject-wise splits into train / val / pair / test (the paper's protocol: no subject in two splits)."""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from bridges.data.windows import SPLITS
from devices.errors import BadInputError

#: The paper's split sizes (train, val, pair, test) by the data set's subject count.
PAPER_COUNTS: dict[int, tuple[int, int, int, int]] = {15: (5, 2, 5, 3), 99: (33, 11, 33, 22)}
#: Fractions used when the subject count matches no paper set (WESAD's proportions).
DEFAULT_FRACTIONS = (5 / 15, 2 / 15, 5 / 15, 3 / 15)


def _proportional(n: int, fractions: Sequence[float]) -> list[int]:
    """Apportion ``n`` subjects to the fractions by largest remainder; an empty split takes one from the largest."""
    weights = np.asarray(fractions, dtype=np.float64)
    if len(weights) != len(SPLITS) or (weights < 0).any() or not np.isfinite(weights).all() or weights.sum() <= 0:
        raise BadInputError(f"split fractions must be {len(SPLITS)} non-negative numbers, got {list(fractions)}")
    exact = weights / weights.sum() * n
    counts = np.floor(exact).astype(int)
    order = np.argsort(-(exact - counts), kind="stable")
    counts[order[: n - counts.sum()]] += 1
    for k in np.flatnonzero(counts == 0):
        counts[np.argmax(counts)] -= 1
        counts[k] = 1
    return [int(c) for c in counts]


def split_subjects(
    subjects: Sequence[str | int],
    counts: Sequence[int] | Sequence[float] | None = None,
    random_state: int | None = 0,
) -> dict[str, list[str]]:
    """Assign subjects to the splits ``train``, ``val``, ``pair`` and ``test`` at random.

    Parameters
    ----------
    subjects : sequence of str or int
        Distinct subject ids (at least 4).
    counts : sequence of 4 int, or of 4 float, optional
        Subjects per split in :data:`~bridges.data.windows.SPLITS` order: integers summing to the number of
        subjects, or fractions (each split gets at least one subject). Default: the paper's sizes when the count
        matches WESAD (15 → 5/2/5/3) or ISRUC subgroup 1 (99 → 33/11/33/22), else WESAD's proportions.
    random_state : int or None
        Seed of the permutation.

    Returns
    -------
    dict of str to list of str
        Split name → sorted subject ids (as str); the splits are disjoint and cover ``subjects``.
    """
    ids = [str(s) for s in subjects]
    if len(set(ids)) != len(ids):
        raise BadInputError(f"subject ids repeat: {sorted({s for s in ids if ids.count(s) > 1})}")
    n = len(ids)
    if n < len(SPLITS):
        raise BadInputError(f"need at least {len(SPLITS)} subjects for {list(SPLITS)} splits, got {n}: {ids}")
    if counts is None:
        sizes = list(PAPER_COUNTS[n]) if n in PAPER_COUNTS else _proportional(n, DEFAULT_FRACTIONS)
    elif all(isinstance(c, (int, np.integer)) and not isinstance(c, bool) for c in counts):
        sizes = [int(c) for c in counts]
        if len(sizes) != len(SPLITS) or min(sizes) < 0 or sum(sizes) != n:
            raise BadInputError(
                f"split counts {sizes} must be {len(SPLITS)} non-negative integers summing to {n} subjects"
            )
    else:
        sizes = _proportional(n, [float(c) for c in counts])
    order = np.random.default_rng(random_state).permutation(n)
    out, start = {}, 0
    for name, size in zip(SPLITS, sizes, strict=True):
        out[name] = sorted((ids[k] for k in order[start:start + size]), key=_natural)
        start += size
    return out


def _natural(subject: str) -> list[tuple[int, int | str]]:
    """Sort key putting S2 before S10 (digit runs compare as numbers)."""
    return [(0, int(part)) if part.isdigit() else (1, part) for part in re.split(r"(\d+)", subject) if part]
