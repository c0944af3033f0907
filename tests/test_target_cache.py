"""The bridge's target cache: rows in RAM or in an unlinked temporary file read per batch give the same tensors."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from bridges.target_cache import TargetCache


def _rows(n: int, seed: int) -> torch.Tensor:
    return torch.randn(n, 7, 5, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("on_disk", [False, True])
def test_rows_come_back_exactly_by_index(tmp_path, on_disk):
    expected = torch.cat([_rows(4, 0), _rows(3, 1), _rows(6, 2)])
    with TargetCache(tmp_path if on_disk else None) as cache:
        for part in (expected[:4], expected[4:7], expected[7:]):
            cache.append(part)
        assert cache.shape == (13, 7, 5) and len(cache) == 13 and cache.on_disk is on_disk
        assert cache.resident_bytes == (0 if on_disk else expected.nbytes)
        index = torch.tensor([12, 0, 5, 5, 9])
        torch.testing.assert_close(cache[index], expected[index], rtol=0, atol=0)
        torch.testing.assert_close(cache[np.arange(13)], expected, rtol=0, atol=0)
        # The file is created unlinked: nothing appears in the folder, even while it is open.
        assert os.listdir(tmp_path) == []


def test_build_runs_the_function_in_batches_without_grad(tmp_path):
    x = torch.randn(10, 3)
    weight = torch.randn(3, 4, requires_grad=True)
    seen = []

    def fn(batch: torch.Tensor) -> torch.Tensor:
        seen.append(len(batch))
        return (batch @ weight)[:, None, :]

    cache = TargetCache.build(fn, x, batch_size=4, directory=tmp_path)
    assert seen == [4, 4, 2]
    out = cache[torch.arange(10)]
    assert not out.requires_grad
    torch.testing.assert_close(out, (x @ weight).detach()[:, None, :])
    cache.close()
    assert len(cache) == 0


def test_mismatched_rows_are_refused(tmp_path):
    with TargetCache(tmp_path) as cache:
        cache.append(_rows(2, 0))
        with pytest.raises(ValueError, match=r"\(7, 5\)"):
            cache.append(torch.zeros(2, 7, 6))
