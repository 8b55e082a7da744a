"""Test-time augmentation: each face is classified in several views (its mirror image, small rotations) and the
class probabilities of the views are averaged.

The engine puts all views of all faces of a frame into its one batched call. Which views a model uses is chosen
on the model's selection split (carved from its training data), never on held-out data, and stored in its
metadata (`flip_tta`, `tta_rotations`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from ..core.model_file import ModelMetadata

Predict = Callable[[np.ndarray], np.ndarray]  # (N, H, W, C) float32 -> (N, K) class probabilities


def rotate(batch: np.ndarray, degrees: float) -> np.ndarray:
    """Every image of (N, H, W, C) turned by `degrees` (counter-clockwise) about its centre; the edge pixels
    are repeated into the corners, as the training augmentation fills them."""
    if not degrees or batch.shape[0] == 0:
        return batch
    height, width, channels = batch.shape[1:]
    matrix = cv2.getRotationMatrix2D(((width - 1) / 2, (height - 1) / 2), float(degrees), 1.0)

    def turn(image):
        return cv2.warpAffine(image, matrix, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)

    if channels == 1:
        return np.stack([turn(image[:, :, 0]) for image in batch])[..., None]
    return np.stack([turn(image) for image in batch])


@dataclass(frozen=True)
class TestTimeAugmentation:
    """The views a face is classified in: upright and turned by each of `rotations` degrees, each of them also
    mirrored when `flip`."""

    __test__ = False  # not a pytest test class, despite the name

    flip: bool = False
    rotations: tuple[float, ...] = ()

    @classmethod
    def of(cls, metadata: ModelMetadata) -> TestTimeAugmentation:
        """The views a model file records (`flip_tta`, `tta_rotations`)."""
        return cls(flip=metadata.flip_tta, rotations=metadata.tta_rotations)

    @property
    def views(self) -> int:
        return (1 + len(self.rotations)) * (2 if self.flip else 1)

    @property
    def name(self) -> str:
        parts = (["flip"] if self.flip else []) + (
            ["rotate " + "/".join(f"{a:+g}" for a in self.rotations)] if self.rotations else [])
        return " + ".join(parts) or "none"

    def describe(self) -> str:
        if self.views == 1:
            return "off (the face alone)"
        upright = "the face" + (f" upright and turned {', '.join(f'{a:+g}°' for a in self.rotations)}"
                                if self.rotations else "")
        mirrored = (", each with its mirror image" if self.rotations else " and its mirror image") if self.flip else ""
        return f"on: {upright}{mirrored} ({self.views} views in the same call, averaged)"

    @property
    def view_keys(self) -> tuple[tuple[float, bool], ...]:
        """(angle, mirrored) of every view, in the order `expand` lays them out."""
        angles = (0.0, *self.rotations)
        return tuple((a, False) for a in angles) + (tuple((a, True) for a in angles) if self.flip else ())

    def expand(self, batch: np.ndarray) -> np.ndarray:
        """(N, H, W, C) -> (views * N, H, W, C), view by view."""
        if self.views == 1:
            return batch
        turned = {0.0: batch, **{a: rotate(batch, a) for a in self.rotations}}
        return np.concatenate([turned[a][:, :, ::-1] if mirrored else turned[a] for a, mirrored in self.view_keys])

    def combine(self, probabilities: np.ndarray, n: int) -> np.ndarray:
        """(views * N, K) predictions of `expand`ed faces -> (N, K), the mean over the views."""
        if self.views == 1:
            return probabilities
        return probabilities.reshape(self.views, n, -1).mean(axis=0)

    def predict(self, predict: Predict, x: np.ndarray) -> np.ndarray:
        """Averaged probabilities for many faces, one view at a time (for evaluation; the engine uses expand)."""
        return _ViewCache(predict, x).average(self)


class _ViewCache:
    """Predictions per view, computed once and shared by the candidates being compared."""

    def __init__(self, predict: Predict, x: np.ndarray):
        self._predict, self._x, self._done = predict, x, {}

    def view(self, angle: float, mirrored: bool) -> np.ndarray:
        key = (float(angle), mirrored)
        if key not in self._done:
            turned = rotate(self._x, angle)
            self._done[key] = self._predict(np.ascontiguousarray(turned[:, :, ::-1] if mirrored else turned))
        return self._done[key]

    def average(self, tta: TestTimeAugmentation) -> np.ndarray:
        return sum(self.view(a, m) for a, m in tta.view_keys) / tta.views


NO_TTA = TestTimeAugmentation()
# The candidates by their command-line names, cheapest first; the rotations are within the range of the training
# augmentation (±18°).
PRESETS = {
    "none": NO_TTA,
    "flip": TestTimeAugmentation(flip=True),
    "flip+rotate": TestTimeAugmentation(flip=True, rotations=(8.0, -8.0)),
}
CANDIDATES = tuple(PRESETS.values())


def preset_candidates(name: str) -> tuple[TestTimeAugmentation, ...]:
    """`auto`: all candidates, to be chosen from; a preset's name: that one alone."""
    return CANDIDATES if name == "auto" else (PRESETS[name],)


@dataclass(frozen=True)
class TTAChoice:
    chosen: TestTimeAugmentation
    accuracy: dict[str, float]  # candidate name -> selection accuracy
    probabilities: np.ndarray  # the chosen candidate's averaged probabilities on the selection faces


def choose(predict: Predict, x: np.ndarray, y: np.ndarray,
           candidates: Sequence[TestTimeAugmentation] = CANDIDATES) -> TTAChoice:
    """The candidate with the highest accuracy on the selection faces `x`, `y`; on a tie the earlier (cheaper)."""
    cache = _ViewCache(predict, x)
    best, best_accuracy, best_p, accuracy = None, -1.0, None, {}
    for candidate in candidates:
        p = cache.average(candidate)
        accuracy[candidate.name] = float(np.mean(p.argmax(axis=1) == y))
        if accuracy[candidate.name] > best_accuracy:
            best, best_accuracy, best_p = candidate, accuracy[candidate.name], p
    return TTAChoice(chosen=best, accuracy=accuracy, probabilities=best_p)


def candidates_for(flip: bool | None) -> tuple[TestTimeAugmentation, ...]:
    """The candidates a training config allows: `flip` False means no test-time augmentation at all, True that
    mirror-image averaging is always on, None that anything may be chosen."""
    if flip is None:
        return CANDIDATES
    return tuple(c for c in CANDIDATES if c.flip) if flip else (NO_TTA,)
