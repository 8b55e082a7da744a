"""Typed results: one face's box, label, confidence and every class's probability."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

UNCERTAIN = "uncertain"  # what is shown instead of the label of a face whose confidence is below the caller's bar


class FaceResult(NamedTuple):
    box: tuple[int, int, int, int]  # x, y, w, h in frame pixels
    label: str  # the most probable class
    confidence: float
    scores: dict[str, float]  # every class -> probability; sums to 1
    track_id: int | None = None  # set in video mode
    uncertain: bool = False  # the confidence is below the bar the caller set (video mode's `uncertain_below`)

    @property
    def shown_label(self) -> str:
        """The label to show a person: "uncertain" for an uncertain face, else the label."""
        return UNCERTAIN if self.uncertain else self.label

    def to_dict(self) -> dict:
        """The face as `predict --json` prints it."""
        return {
            "box": list(self.box),
            "label": self.label,
            "confidence": round(self.confidence, 6),
            "scores": {k: round(v, 6) for k, v in self.scores.items()},
        }


def results_from_probabilities(boxes, probabilities: np.ndarray, classes, track_ids=None,
                               uncertain_below: float | None = None) -> list[FaceResult]:
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
                uncertain=uncertain_below is not None and float(probs[best]) < uncertain_below,
            )
        )
    return results
