"""Two models on the same faces: their accuracies and log-losses, the faces only one of them gets right, and
McNemar's exact test of whether the difference is more than chance.

Two models that differ by a point on one split may differ only in which borderline faces they happen to get
right. Counting the faces each gets right alone separates a real difference from that noise better than the two
accuracies, whose standard errors (near a point on FER2013's splits) ignore that the models agree on most faces.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from math import comb

import numpy as np


@dataclass(frozen=True)
class PairedComparison:
    n: int
    accuracy_a: float
    accuracy_b: float
    log_loss_a: float  # mean -log(probability of the true class): finer than accuracy, lower is better
    log_loss_b: float
    only_a_right: int  # faces model A classifies correctly and model B does not
    only_b_right: int
    p_value: float  # McNemar's exact test, two-sided: how likely a split this uneven is if neither model is better

    def to_dict(self) -> dict:
        return asdict(self)

    def format_text(self, name_a: str = "A", name_b: str = "B") -> str:
        width = max(len(name_a), len(name_b))
        return "\n".join([
            f"{name_a:<{width}}  accuracy {self.accuracy_a:.4f}  log-loss {self.log_loss_a:.4f}",
            f"{name_b:<{width}}  accuracy {self.accuracy_b:.4f}  log-loss {self.log_loss_b:.4f}",
            f"faces only {name_a} gets right: {self.only_a_right}; only {name_b}: {self.only_b_right}; n={self.n}",
            f"McNemar exact two-sided p = {self.p_value:.3g}",
        ])


def mcnemar_exact_p(only_a_right: int, only_b_right: int) -> float:
    """Two-sided p-value of the split of discordant faces under 'each is as likely to go either way'."""
    discordant = only_a_right + only_b_right
    if discordant == 0:
        return 1.0
    smaller = min(only_a_right, only_b_right)
    tail = sum(comb(discordant, k) for k in range(smaller + 1)) / 2**discordant
    return min(1.0, 2.0 * tail)


def mean_log_loss(true: np.ndarray, probabilities: np.ndarray, floor: float = 1e-7) -> float:
    if len(true) == 0:
        return 0.0
    return float(-np.log(np.clip(probabilities[np.arange(len(true)), true], floor, 1.0)).mean())


def compare_predictions(true: np.ndarray, probabilities_a: np.ndarray, probabilities_b: np.ndarray) -> PairedComparison:
    """`true` (N,) class indices; `probabilities_a`/`_b` (N, K) each model's class probabilities for the same faces."""
    true = np.asarray(true, dtype=np.int64)
    probabilities_a, probabilities_b = np.asarray(probabilities_a), np.asarray(probabilities_b)
    if true.ndim != 1 or probabilities_a.shape != probabilities_b.shape or probabilities_a.shape[:1] != true.shape:
        raise ValueError("true labels (N,) and both models' probabilities (N, K) must cover the same faces")
    right_a = probabilities_a.argmax(axis=1) == true
    right_b = probabilities_b.argmax(axis=1) == true
    only_a, only_b = int(np.sum(right_a & ~right_b)), int(np.sum(right_b & ~right_a))
    n = len(true)
    return PairedComparison(
        n=n,
        accuracy_a=float(right_a.mean()) if n else 0.0,
        accuracy_b=float(right_b.mean()) if n else 0.0,
        log_loss_a=mean_log_loss(true, probabilities_a),
        log_loss_b=mean_log_loss(true, probabilities_b),
        only_a_right=only_a,
        only_b_right=only_b,
        p_value=mcnemar_exact_p(only_a, only_b),
    )
