"""Contrastive (SimCLR NT-Xent) pretraining of an FM adapter on unlabeled windows: tiny HuBERT-ECG, 5-s windows."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bridges.fm.hubert_ecg import HubertECG, tiny_config
from bridges.preprocess import preprocess_for
from bridges.pretrain import AugmentConfig, augment, nt_xent, pretrain_contrastive
from devices.errors import BadInputError

WINDOW_S = 5.0


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def unlabeled_windows(n: int, seed: int) -> np.ndarray:
    """``n`` raw 100-Hz windows ``(n, 1, 500)``, each with its own rhythm rate, shape and noise (no labels)."""
    rng = np.random.default_rng(seed)
    t = np.arange(round(100 * WINDOW_S)) / 100.0
    rate_hz = rng.uniform(0.7, 3.0, (n, 1))
    phase = rng.uniform(0, 2 * np.pi, (n, 1))
    square = rng.uniform(0, 1, (n, 1)) * np.sign(np.sin(2 * np.pi * 2.3 * rate_hz * t))
    x = np.sin(2 * np.pi * rate_hz * t + phase) + 0.5 * square + 0.2 * rng.standard_normal((n, t.size))
    return (50.0 * x[:, None]).astype(np.float32)  # signal units, not z-scored: the preprocessing does that


def fm() -> HubertECG:
    return HubertECG.from_config(tiny_config(), window_s=WINDOW_S, seed=0)


@torch.no_grad()
def view_similarity(model: HubertECG, preprocess, x: np.ndarray) -> tuple[float, float]:
    """Mean cosine similarity of pooled features (centred over windows): same window's two views, different windows."""
    generator = torch.Generator().manual_seed(123)
    inputs = preprocess(torch.from_numpy(x))
    a = model(augment(inputs, AugmentConfig(), generator))
    b = model(augment(inputs, AugmentConfig(), generator))
    a, b = a - a.mean(0), b - b.mean(0)  # random-init features share a large common offset
    similarity = F.normalize(a, dim=1) @ F.normalize(b, dim=1).T
    n = len(x)
    positive = float(similarity.diag().mean())
    negative = float((similarity.sum() - similarity.diag().sum()) / (n * n - n))
    return positive, negative


def test_pretraining_learns_view_invariant_features():
    model = fm()
    preprocess = preprocess_for(model.input_spec)
    train, held_out = unlabeled_windows(64, 0), unlabeled_windows(32, 1)
    before = [p.detach().clone() for p in model.parameters()]
    flags = [p.requires_grad for p in model.parameters()]
    pos_before, neg_before = view_similarity(model, preprocess, held_out)

    result = pretrain_contrastive(model, preprocess, train, epochs=6, lr=1e-3, batch_size=16, random_state=0,
                                  progress=False)

    assert len(result.loss) == 6
    assert result.loss[-1] < result.loss[0] - 0.1
    assert result.seconds > 0 and result.n_windows == 64 and result.n_trainable > 0
    changed = [not torch.equal(p, q) for p, q in zip(model.parameters(), before, strict=True)]
    assert sum(changed) > 0.9 * len(changed)  # (nearly) every FM parameter moved
    assert not model.training
    assert [p.requires_grad for p in model.parameters()] == flags
    pos_after, neg_after = view_similarity(model, preprocess, held_out)
    assert pos_after > neg_after + 0.2  # two views of one window are closer than two different windows ...
    assert pos_after - neg_after > (pos_before - neg_before) + 0.1  # ... and more so than before pretraining


def test_pretraining_is_reproducible():
    windows = unlabeled_windows(24, 2)
    results = []
    for _ in range(2):
        model = fm()
        result = pretrain_contrastive(model, None, windows, epochs=1, lr=1e-3, batch_size=8, random_state=7,
                                      progress=False)
        results.append((result.loss, [p.detach().clone() for p in model.parameters()]))
    assert results[0][0] == results[1][0]
    assert all(torch.equal(p, q) for p, q in zip(results[0][1], results[1][1], strict=True))


def test_augment_shapes_and_effects():
    x = torch.randn(8, 2, 400)
    generator = torch.Generator().manual_seed(0)
    view = augment(x, AugmentConfig(max_shift_frac=0.0, scale_range=0.0, noise_frac=0.0, mask_frac=0.0), generator)
    torch.testing.assert_close(view, x)  # all off: the identity
    shifted = augment(x, AugmentConfig(max_shift_frac=0.25, scale_range=0.0, noise_frac=0.0, mask_frac=0.0),
                      generator)
    assert shifted.shape == x.shape and not torch.equal(shifted, x)
    masked = augment(x, AugmentConfig(max_shift_frac=0.0, scale_range=0.0, noise_frac=0.0, mask_frac=0.5),
                     generator)
    zeros = (masked == 0).all(dim=1).sum(dim=1)  # masked span is shared by every channel
    assert (zeros <= 200).all() and zeros.sum() > 0


def test_nt_xent_prefers_matching_views():
    z = torch.randn(6, 4)
    assert float(nt_xent(z, z, 0.1)) < float(nt_xent(z, z.roll(1, dims=0), 0.1))


def test_bad_input_is_refused():
    model = fm()
    with pytest.raises(BadInputError, match=r"must be \(N, 1, 500\)"):
        pretrain_contrastive(model, None, np.zeros((4, 1, 300), np.float32), epochs=1, lr=1e-3, batch_size=2)
    bad = unlabeled_windows(4, 0)
    bad[1, 0, 7] = np.nan
    with pytest.raises(BadInputError, match="NaN"):
        pretrain_contrastive(model, None, bad, epochs=1, lr=1e-3, batch_size=2)
    with pytest.raises(BadInputError, match="at least 2 windows"):
        pretrain_contrastive(model, None, unlabeled_windows(1, 0), epochs=1, lr=1e-3, batch_size=2)
    with pytest.raises(BadInputError, match="mask_frac"):
        AugmentConfig(mask_frac=1.5)
