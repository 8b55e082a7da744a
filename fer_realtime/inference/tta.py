"""Test-time augmentation: each face is classified in several views (its mirror image, small rotations, or for a
network that sees the centre crop of the face, the face shifted so that it sees the corner crops) and the class
probabilities of the views are averaged.

The engine puts all views of all faces of a frame into its one batched call. Which views a model uses is chosen
on the model's selection split (carved from its training data), never on held-out data, and stored in its
metadata (`flip_tta`, `tta_rotations`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from ..core.errors import FerError
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


def shift(batch: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """Every image of (N, H, W, C) moved `dy` pixels down and `dx` right, the edge pixels repeated into the gap.
    A network that sees the centre crop of its input, `margin` pixels in from each side, sees the corner crop
    at (margin - dy, margin - dx) of the face moved by (dy, dx), with none of the repeated pixels in it."""
    if not (dy or dx) or batch.shape[0] == 0:
        return batch
    height, width = batch.shape[1:3]
    rows = np.clip(np.arange(height) - dy, 0, height - 1)
    columns = np.clip(np.arange(width) - dx, 0, width - 1)
    return batch[:, rows][:, :, columns]


def corner_shifts(margin: int) -> tuple[tuple[int, int], ...]:
    """The shifts that show a centre-crop network with `margin` pixels on each side its four corner crops."""
    return tuple((dy, dx) for dy in (margin, -margin) for dx in (margin, -margin))


def crop_margin(model) -> int:
    """Pixels on each side of the input that a network built with a centre crop (a `CenterCrop` layer, such as
    build_cnn's "crop") leaves out; 0 for a network that sees its whole input. Looks into nested models
    (ensembles of such networks)."""
    margins = [0]
    for layer in getattr(model, "layers", ()):
        if type(layer).__name__ == "CenterCrop":
            margins.append(min(model.input_shape[1] - layer.height, model.input_shape[2] - layer.width) // 2)
        elif getattr(layer, "layers", None):
            margins.append(crop_margin(layer))
    return max(margins)


@dataclass(frozen=True)
class TestTimeAugmentation:
    """The views a face is classified in: as it is, turned by each of `rotations` degrees and moved by each of
    `shifts` (dy, dx) pixels, each of them also mirrored when `flip`."""

    __test__ = False  # not a pytest test class, despite the name

    flip: bool = False
    rotations: tuple[float, ...] = ()
    shifts: tuple[tuple[int, int], ...] = ()

    @classmethod
    def of(cls, metadata: ModelMetadata) -> TestTimeAugmentation:
        """The views a model file records (`flip_tta`, `tta_rotations`, `tta_shifts`)."""
        return cls(flip=metadata.flip_tta, rotations=metadata.tta_rotations, shifts=metadata.tta_shifts)

    def metadata_fields(self) -> dict:
        """The ModelMetadata fields that record these views."""
        return {"flip_tta": self.flip, "tta_rotations": self.rotations, "tta_shifts": self.shifts}

    @property
    def views(self) -> int:
        return (1 + len(self.rotations) + len(self.shifts)) * (2 if self.flip else 1)

    @property
    def name(self) -> str:
        parts = (["flip"] if self.flip else []) + (
            ["rotate " + "/".join(f"{a:+g}" for a in self.rotations)] if self.rotations else []) + (
            [_shifts_name(self.shifts)] if self.shifts else [])
        return " + ".join(parts) or "none"

    def describe(self) -> str:
        if self.views == 1:
            return "off (the face alone)"
        changed = [f"turned {', '.join(f'{a:+g}°' for a in self.rotations)}"] if self.rotations else []
        changed += [f"moved {', '.join(f'({dy:+d}, {dx:+d}) px' for dy, dx in self.shifts)}"] if self.shifts else []
        upright = "the face" + (f" upright and {' and '.join(changed)}" if changed else "")
        mirrored = (", each with its mirror image" if changed else " and its mirror image") if self.flip else ""
        return f"on: {upright}{mirrored} ({self.views} views in the same call, averaged)"

    @property
    def view_keys(self) -> tuple[tuple[float, tuple[int, int], bool], ...]:
        """(angle, shift, mirrored) of every view, in the order `expand` lays them out."""
        moves = ((0.0, (0, 0)), *((a, (0, 0)) for a in self.rotations), *((0.0, s) for s in self.shifts))
        return tuple((a, s, False) for a, s in moves) + (tuple((a, s, True) for a, s in moves) if self.flip else ())

    def expand(self, batch: np.ndarray) -> np.ndarray:
        """(N, H, W, C) -> (views * N, H, W, C), view by view."""
        if self.views == 1:
            return batch
        return np.concatenate([_view(batch, *key) for key in self.view_keys])

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

    def view(self, angle: float, moved: tuple[int, int], mirrored: bool) -> np.ndarray:
        key = (float(angle), tuple(moved), mirrored)
        if key not in self._done:
            self._done[key] = self._predict(np.ascontiguousarray(_view(self._x, *key)))
        return self._done[key]

    def average(self, tta: TestTimeAugmentation) -> np.ndarray:
        return sum(self.view(*key) for key in tta.view_keys) / tta.views


def _shifts_name(shifts: tuple[tuple[int, int], ...]) -> str:
    margin = abs(shifts[0][0])
    if set(shifts) == set(corner_shifts(margin)):
        return f"corner crops ±{margin}"
    return "shift " + "/".join(f"{dy:+d},{dx:+d}" for dy, dx in shifts)


def _view(batch: np.ndarray, angle: float, moved: tuple[int, int], mirrored: bool) -> np.ndarray:
    changed = shift(rotate(batch, angle), *moved)
    return changed[:, :, ::-1] if mirrored else changed


NO_TTA = TestTimeAugmentation()
# The candidates by their command-line names, cheapest first; the rotations are within the range of the training
# augmentation (±18°).
PRESETS = {
    "none": NO_TTA,
    "flip": TestTimeAugmentation(flip=True),
    "flip+rotate": TestTimeAugmentation(flip=True, rotations=(8.0, -8.0)),
}
CANDIDATES = tuple(PRESETS.values())
# For a network that sees the centre crop of the face: the centre and four corner crops, each also mirrored (the
# "10-crop" evaluation of the FER2013 networks near 73 %). Its shifts depend on the network's margin.
CROPS = "flip+crops"


def ten_crops(margin: int) -> TestTimeAugmentation:
    return TestTimeAugmentation(flip=True, shifts=corner_shifts(margin))


def preset_candidates(name: str, margin: int = 0) -> tuple[TestTimeAugmentation, ...]:
    """`auto`: all candidates for a network with this crop `margin`, to be chosen from; a preset's name: that one
    alone. FerError for the crops of a network without a crop."""
    if name == "auto":
        return candidates_for(None, margin)
    if name == CROPS:
        if not margin:
            raise FerError(f"--tta {CROPS} needs a network that sees the centre crop of the face; this one sees all "
                           "of it.")
        return (ten_crops(margin),)
    return (PRESETS[name],)


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


def candidates_for(flip: bool | None, margin: int = 0) -> tuple[TestTimeAugmentation, ...]:
    """The candidates a training config allows: `flip` False means no test-time augmentation at all, True that
    mirror-image averaging is always on, None that anything may be chosen. A network with a crop `margin` also
    has its ten crops to choose from."""
    if flip is False:
        return (NO_TTA,)
    candidates = CANDIDATES + ((ten_crops(margin),) if margin else ())
    return tuple(c for c in candidates if c.flip) if flip else candidates
