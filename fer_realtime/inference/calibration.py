"""Calibrated confidence: a temperature fitted on the selection split, and the expected calibration error.

A network trained with label smoothing and class weights, read through several averaged views, says "70 %" for
faces it gets right more (or less) often than 70 % of the time. One temperature T, fitted by minimising the
log-loss on the selection split (never on held-out data), turns the averaged probabilities p into p^(1/T),
renormalised: the same as dividing log-probabilities by T. It never changes which class is on top.
"""

from __future__ import annotations

import numpy as np

from ..core.model_file import MAX_TEMPERATURE, MIN_TEMPERATURE

ECE_BINS = 15


def apply_temperature(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    """p^(1/T) per row, renormalised; T = 1 returns the input unchanged."""
    if temperature == 1.0:
        return probabilities
    logits = np.log(np.clip(np.asarray(probabilities, dtype=np.float64), 1e-12, None)) / temperature
    logits -= logits.max(axis=1, keepdims=True)
    scaled = np.exp(logits)
    return (scaled / scaled.sum(axis=1, keepdims=True)).astype(np.float32)


def log_loss(probabilities: np.ndarray, labels: np.ndarray) -> float:
    picked = np.asarray(probabilities, dtype=np.float64)[np.arange(len(labels)), labels]
    return float(-np.mean(np.log(np.clip(picked, 1e-12, None))))


def fit_temperature(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """The temperature in [0.05, 20] with the lowest log-loss on (probabilities, labels): a golden-section search
    over log T (the log-loss is convex in 1/T)."""
    labels = np.asarray(labels, dtype=np.int64)
    if not len(labels):
        return 1.0
    loss = lambda log_t: log_loss(apply_temperature(probabilities, float(np.exp(log_t))), labels)  # noqa: E731
    low, high = np.log(MIN_TEMPERATURE), np.log(MAX_TEMPERATURE)
    ratio = (np.sqrt(5) - 1) / 2
    a, b = high - ratio * (high - low), low + ratio * (high - low)
    loss_a, loss_b = loss(a), loss(b)
    for _ in range(60):
        if loss_a < loss_b:
            high, b, loss_b = b, a, loss_a
            a = high - ratio * (high - low)
            loss_a = loss(a)
        else:
            low, a, loss_a = a, b, loss_b
            b = low + ratio * (high - low)
            loss_b = loss(b)
    return float(round(np.exp((low + high) / 2), 4))


def expected_calibration_error(probabilities: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> float:
    """Mean |accuracy - confidence| over equal-width bins of the top probability, weighted by the bins' sizes."""
    probabilities = np.asarray(probabilities)
    if not len(probabilities):
        return 0.0
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == np.asarray(labels)
    which = np.minimum((confidence * bins).astype(np.int64), bins - 1)
    error = 0.0
    for b in range(bins):
        members = which == b
        if members.any():
            error += members.mean() * abs(correct[members].mean() - confidence[members].mean())
    return float(error)
