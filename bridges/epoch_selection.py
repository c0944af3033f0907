"""Which scored epoch a training run keeps: three criteria on the validation pairs, one of them in charge.

The bridge and the distillation baseline are scored on the validation split every ``eval_every`` epochs. Its
windows are *paired*, so two criteria need no label at all, and a third (the paper's) needs the new modality's
true labels, which a user transferring a model to an unlabeled modality does not have:

- ``"loss"``: the method's own training loss on the held-out pairs, lower is better. For the bridge the
  alignment loss (:func:`bridges.train_loop.bridge_loss`, the same target as in training); for distillation
  ``T² · KL`` to the teacher's soft predictions (:func:`bridges.distill.distillation_loss`, the same ``T``).
- ``"agreement"``: macro-F1 of the new-modality predictions against the old model's predictions on the paired
  old-modality windows (its pseudo-labels), higher is better. Macro-F1 rather than accuracy: a model that
  predicts the majority pseudo-class for every window scores its share in accuracy but at most ``1 / K`` here.
- ``"labels"``: macro-F1 against the true labels (what the paper selects by), higher is better.

Every scored epoch records all three (and the test metrics, for the record only), so one run tells which epoch
each criterion would have kept. Ties go to the earliest epoch; a NaN score is never preferred.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from devices._checks import check_value

__all__ = ["DEFAULT_SELECT_BY", "SELECT_BY", "best_index", "check_select_by"]

#: The accepted ``select_by`` values.
SELECT_BY = ("loss", "agreement", "labels")

#: The criterion a run selects by unless told otherwise, set from the experiment in ``bench/TRANSFER.md``
#: ("Model selection without labels"): "labels" was best on average over 24 runs, "agreement" 0.001 behind it (the
#: choice without labels), "loss" 0.026 behind.
DEFAULT_SELECT_BY = "labels"

#: Whether a larger value of the criterion is better.
_HIGHER_IS_BETTER = {"loss": False, "agreement": True, "labels": True}


def check_select_by(value: str) -> str:
    """Return ``value`` if it is one of :data:`SELECT_BY`, else raise ValueError naming the accepted ones."""
    return check_value(value, SELECT_BY, "select_by")


def best_index(values: Sequence[float], criterion: str) -> int:
    """Index of the best of ``values`` (one per scored epoch) under ``criterion``: the earliest on ties.

    NaN counts as the worst possible score, so a diverged epoch is kept only when every epoch diverged (then the
    first).
    """
    check_select_by(criterion)
    if not values:
        raise ValueError("no scored epoch to choose from")
    sign = 1.0 if _HIGHER_IS_BETTER[criterion] else -1.0
    keys = [-math.inf if math.isnan(v) else sign * v for v in values]
    return max(range(len(keys)), key=lambda k: (keys[k], -k))
