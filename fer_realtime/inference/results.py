"""Typed results: one face's box, label, confidence and every class's probability."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class FaceResult(NamedTuple):
    box: tuple[int, int, int, int]  # x, y, w, h in frame pixels
    label: str
    confidence: float
    scores: dict[str, float]  # every class -> probability; sums to 1
    track_id: int | None = None  # set in video mode


def results_from_probabilities(boxes, probabilities: np.ndarray, classes, track_ids=None) -> list[FaceResult]:
    results = []
    for i, (box, probs) in enumerate(zip(boxes, probabilities)):
        probs = np.asarray(probs, dtype=np.float64)
        probs = probs / probs.sum() if probs.sum() > 0 else np.full(len(classes), 1.0 / len(classes))
        best = int(np.argmax(probs))
        results.append(
            FaceResult(
                box=tuple(int(v) for v in box),
                label=classes[best],
                confidence=float(probs[best]),
                scores={name: float(p) for name, p in zip(classes, probs)},
                track_id=None if track_ids is None else track_ids[i],
            )
        )
    return results
