"""Untrained bundles for the benchmarks: the real pipeline (preprocess → new-FM prefix → bridge → old-FM suffix →
head) at small FM sizes with random weights, exported and checked like a trained one.

They load, match streams and run exactly as a trained bundle does, so they exercise the runtime (resampling,
channel selection, ONNX Runtime) at realistic cost; their predictions mean nothing and their manifests say so.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from bridges.bridge import BridgeConfig, PrototypeBridge
from bridges.export import export_bundle
from bridges.fm.base import FoundationModel
from bridges.fm.hubert_ecg import HubertECG, tiny_config
from bridges.fm.labram import Labram, LabramConfig
from bridges.fm.papagei import Papagei, PapageiConfig
from bridges.manifest import BridgeInfo, FMInfo, InputInfo, Manifest, Provenance, TaskInfo
from bridges.models import BridgedModel, make_head
from bridges.preprocess import preprocess_for


def untrained_bundle(
    path: Path, new_fm: FoundationModel, old_fm: FoundationModel, *, i: int, j: int,
    channel_labels: Sequence[str], class_names: Sequence[str], hop_s: float, seed: int = 0,
) -> Path:
    """Export ``new_fm[..i] → bridge → old_fm[j..] → head`` with random weights to ``path``; return ``path``."""
    generator = torch.Generator().manual_seed(seed)
    n_tokens, d_out = old_fm.layer_shapes()[j - 1] if j > 0 else old_fm.layer_shapes()[0]
    config = BridgeConfig(d_in=new_fm.layer_shapes()[i][1], n_tokens=n_tokens, d_out=d_out, rank=4,
                          n_prototypes=8, init="rand_P")
    bridge = PrototypeBridge(config, generator=generator)
    head = make_head(old_fm.layer_shapes()[-1][1], len(class_names), generator=generator)
    spec = new_fm.input_spec
    preprocess = preprocess_for(spec)
    model = BridgedModel(preprocess, new_fm, bridge, old_fm, head, i=i, j=j).eval()
    manifest = Manifest(
        task=TaskInfo(name="untrained", class_names=tuple(class_names)),
        input=InputInfo(
            modality=spec.modality, channel_labels=tuple(channel_labels), sfreq_hz=spec.sfreq_hz,
            window_s=spec.window_s, hop_s=hop_s, units=tuple([spec.unit or "a.u."] * spec.n_channels),
            preprocessing=tuple(preprocess.spec.steps()),
        ),
        provenance=Provenance(
            old_fm=FMInfo(old_fm.name), new_fm=FMInfo(new_fm.name), layer_i=i, layer_j=j,
            bridge=BridgeInfo.from_config(config),
            training_data={"source": "none: random weights, for benchmarking the runtime only"},
            metrics={}, trainable_parameters=config.n_parameters,
        ),
    )
    export_bundle(path, model, manifest, bridge)
    return path


def ecg_bundle(path: Path, hop_s: float = 2.0) -> Path:
    """Single-lead ECG (HuBERT-ECG, tiny) bridged into PaPaGei (small), 8-s windows."""
    new = HubertECG.from_config(tiny_config(), window_s=8.0, seed=1)
    old = Papagei.from_config(PapageiConfig.small(), window_s=8.0, random_state=2)
    return untrained_bundle(path, new, old, i=0, j=3, channel_labels=["ECG"],
                            class_names=["baseline", "stress", "amusement"], hop_s=hop_s, seed=3)


def eeg_bundle(path: Path, channels: Sequence[str], hop_s: float = 2.0) -> Path:
    """EEG on ``channels`` (LaBraM, small), bridged into HuBERT-ECG (tiny), 10-s windows."""
    new = Labram.from_config(LabramConfig.small(), channels=tuple(channels), window_s=10.0, random_state=4)
    old = HubertECG.from_config(tiny_config(), window_s=10.0, seed=5)
    return untrained_bundle(path, new, old, i=0, j=1, channel_labels=channels,
                            class_names=["wake", "N1", "N2", "N3", "REM"], hop_s=hop_s, seed=6)
