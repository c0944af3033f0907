"""Reading HuBERT-ECG checkpoints without running pickled code, and mapping their keys onto ``HubertModel``.

Published layouts (github Edoar-do/HuBERT-ECG, huggingface Edoardo-BS):

* Hugging Face directory: ``config.json`` (``model_type`` ``"hubert_ecg"``) + ``model.safetensors`` (or shards,
  or ``pytorch_model.bin``). Keys are ``HubertModel``'s plus ``final_proj.*`` / ``label_embedding.*``.
* Original ``.pt``: ``{"model_state_dict": ..., "model_config": HuBERTECGConfig | HubertConfig, ...}``.
  ``torch.load(weights_only=True)`` refuses the config object. We first list the pickle's globals by
  disassembling it (nothing runs), then let only config classes through, each read as an inert
  :class:`~bridges.fm.checkpoints.PickledRecord` (its attribute dict); no transformers or HuBERT-ECG code is
  imported or called for it. Every other global (``os.system``, ...) is still refused.
* Fine-tuned models wrap the backbone as ``hubert_ecg.*`` next to ``classifier.*``; ``module.`` (DataParallel)
  prefixes also occur.

The positional conv is weight-normalised; older files store ``weight_g``/``weight_v``, newer
``parametrizations.weight.original0/1``. Both are renamed to what the installed ``HubertModel`` uses.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch

from bridges.fm.checkpoints import (
    CheckpointError,
    PickledRecord,
    load_safetensors,
    load_torch_checkpoint,
    load_torch_state,
    pickled_globals,
)

logger = logging.getLogger(__name__)

__all__ = ["backbone_shape", "normalise_hubert_keys", "read_hubert_checkpoint"]

# Class names (last dotted part) of config objects pickled into original checkpoints.
_CONFIG_CLASSES = frozenset({"HubertConfig", "HuBERTECGConfig", "HuBERTECGClassificationConfig"})
# Wrappers around the backbone: DataParallel, the fine-tuning model, transformers' task models.
_WRAPPER_PREFIXES = ("module.", "hubert_ecg.", "hubert.")
# Pre-training / fine-tuning heads and the SpecAugment vector: not part of the encoder's forward pass.
_DROPPED = ("final_proj.", "label_embedding.", "classifier.", "masked_spec_embed")
_POS_CONV = "encoder.pos_conv_embed.conv."
_WEIGHT_NORM = {"weight_g": "parametrizations.weight.original0", "weight_v": "parametrizations.weight.original1"}


def _check_tensors(state: Any, what: str) -> dict[str, torch.Tensor]:
    if not isinstance(state, Mapping) or not state:
        raise CheckpointError(f"Checkpoint {what} holds no state dict (got {type(state).__name__}).")
    bad = [str(k) for k, v in state.items() if not (isinstance(k, str) and isinstance(v, torch.Tensor))]
    if bad:
        raise CheckpointError(f"Checkpoint {what} has non-tensor entries in its state dict: {', '.join(bad[:6])}.")
    return dict(state)


def _config_attributes(config: Any, what: str) -> dict[str, Any] | None:
    if config is None:
        return None
    if isinstance(config, PickledRecord):
        return config.as_dict()
    if isinstance(config, Mapping):
        return dict(config)
    if hasattr(config, "to_dict"):  # a real config object, from a trust_pickle load
        return dict(config.to_dict())
    raise CheckpointError(f"Checkpoint {what} has a 'model_config' of unknown type {type(config).__name__}.")


def _read_hf_directory(path: Path, trust_pickle: bool) -> tuple[dict[str, torch.Tensor], dict[str, Any] | None]:
    arch = None
    config_file = path / "config.json"
    if config_file.is_file():
        try:
            arch = json.loads(config_file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise CheckpointError(f"Config '{config_file}' is not valid JSON: {err}.") from None
        if not isinstance(arch, dict):
            raise CheckpointError(f"Config '{config_file}' is not a JSON object.")
    single = path / "model.safetensors"
    index = path / "model.safetensors.index.json"
    if single.is_file():
        return load_safetensors(single), arch
    if index.is_file():
        try:
            shards = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, AttributeError):
            raise CheckpointError(f"Shard index '{index}' is not a valid safetensors index.") from None
        state: dict[str, torch.Tensor] = {}
        for shard in shards:
            state.update(load_safetensors(path / shard))
        return state, arch
    legacy = path / "pytorch_model.bin"
    if legacy.is_file():
        return load_torch_state(legacy, trust_pickle), arch
    raise CheckpointError(f"Checkpoint directory '{path}' has no model.safetensors (or shards, or pytorch_model.bin).")


def _read_torch_file(path: Path, trust_pickle: bool) -> tuple[dict[str, torch.Tensor], dict[str, Any] | None]:
    what = f"'{path}'"
    records = [name for name in pickled_globals(path) if name.rsplit(".", 1)[-1] in _CONFIG_CLASSES]
    obj = load_torch_checkpoint(path, trust_pickle=trust_pickle, records=records)
    if isinstance(obj, Mapping) and "model_state_dict" in obj:
        return _check_tensors(obj["model_state_dict"], what), _config_attributes(obj.get("model_config"), what)
    if isinstance(obj, Mapping) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return _check_tensors(obj, what), None
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model"):
            if isinstance(obj.get(key), Mapping):
                return _check_tensors(obj[key], what), _config_attributes(obj.get("config"), what)
        top = ", ".join(repr(k) for k in list(obj)[:6])
        raise CheckpointError(f"Checkpoint {what} has no 'model_state_dict'; its top-level keys are {top}.")
    raise CheckpointError(f"Checkpoint {what} holds a {type(obj).__name__}, not a HuBERT-ECG checkpoint.")


def read_hubert_checkpoint(
    path: str | Path, *, trust_pickle: bool = False
) -> tuple[dict[str, torch.Tensor], dict[str, Any] | None]:
    """Read the tensors and, when the file has one, the config of a HuBERT-ECG checkpoint.

    Parameters
    ----------
    path : str or Path
        Hugging Face directory, ``.safetensors`` file, or ``.pt``/``.pth``/``.bin`` file.
    trust_pickle : bool
        Allow full unpickling of torch files.

    Returns
    -------
    state : dict of str to Tensor
        The raw state dict, keys as stored (see :func:`normalise_hubert_keys`).
    arch : dict or None
        The stored config's attributes, or None when the file holds no config.
    """
    path = Path(path).expanduser()
    if path.is_dir():
        return _read_hf_directory(path, trust_pickle)
    if not path.is_file():
        raise CheckpointError(f"Checkpoint '{path}' does not exist.")
    if path.suffix == ".safetensors":
        return load_safetensors(path), None
    return _read_torch_file(path, trust_pickle)


def _strip_wrappers(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = dict(state)
    changed = True
    while changed:
        changed = False
        for prefix in _WRAPPER_PREFIXES:
            if any(k.startswith(prefix + "feature_extractor.") for k in out):
                # Keys outside the wrapped backbone are the wrapper's heads (classifier, ...): not ours.
                outside = [k for k in out if not k.startswith(prefix)]
                if outside:
                    logger.info(
                        "Dropping %d keys outside '%s' (task heads), e.g. %s.", len(outside), prefix, outside[0]
                    )
                out = {k[len(prefix) :]: v for k, v in out.items() if k.startswith(prefix)}
                changed = True
    return out


def normalise_hubert_keys(state: Mapping[str, torch.Tensor], target_keys: Iterable[str]) -> dict[str, torch.Tensor]:
    """Map a published HuBERT-ECG state dict onto ``HubertModel`` key names.

    Strips wrapper prefixes (``module.``, ``hubert_ecg.``, ``hubert.``), drops the heads (``final_proj``,
    ``label_embedding``, ``classifier``) and ``masked_spec_embed``, and renames the positional conv's weight-norm
    tensors to the style of ``target_keys`` (a plain ``weight`` is split into magnitude and direction). Anything
    else is left for :func:`~bridges.fm.checkpoints.check_state_keys` to report.

    Parameters
    ----------
    state : mapping of str to Tensor
        State dict as stored.
    target_keys : iterable of str
        ``HubertModel(config).state_dict().keys()`` of the installed transformers.

    Returns
    -------
    dict of str to Tensor
        Renamed state dict (tensors shared).
    """
    targets = set(target_keys)
    out = {k: v for k, v in _strip_wrappers(state).items() if not k.startswith(_DROPPED)}
    renames = {**_WEIGHT_NORM, **{new: old for old, new in _WEIGHT_NORM.items()}}
    for key in [k for k in out if k.startswith(_POS_CONV)]:
        suffix = key[len(_POS_CONV) :]
        if suffix in renames and key not in targets and _POS_CONV + renames[suffix] in targets:
            out[_POS_CONV + renames[suffix]] = out.pop(key)
    plain = _POS_CONV + "weight"
    if plain in out and plain not in targets:
        weight = out.pop(plain)
        if _POS_CONV + "weight_g" in targets:
            g_key, v_key = "weight_g", "weight_v"
        else:
            g_key, v_key = _WEIGHT_NORM["weight_g"], _WEIGHT_NORM["weight_v"]
        # Weight norm over dim 2: one magnitude per kernel position, the norm over (out, in) channels.
        out[_POS_CONV + g_key] = weight.norm(dim=(0, 1), keepdim=True)
        out[_POS_CONV + v_key] = weight
    return out


def backbone_shape(state: Mapping[str, torch.Tensor], what: str) -> tuple[int, int]:
    """Width and number of encoder layers of a stored backbone, from its tensors (for files with no config).

    Raises
    ------
    CheckpointError
        The state dict has no feature projection to read the width from.
    """
    keys = _strip_wrappers(state)
    projection = keys.get("feature_projection.projection.weight")
    if projection is None:
        raise CheckpointError(f"Checkpoint {what} has no 'feature_projection.projection.weight'; pass size=.")
    n_layers = len({m.group(1) for k in keys if (m := re.match(r"encoder\.layers\.(\d+)\.", k))})
    return int(projection.shape[0]), n_layers
