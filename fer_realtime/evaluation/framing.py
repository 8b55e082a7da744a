"""How a detector's box should be grown into the model's crop: accuracy through the detector path per crop margin.

A model learns faces framed one way (FER2013's faces were cut at about the box of OpenCV's frontal face detector)
and reads live faces cut from a detector's box grown by the model's crop margin. When the two framings differ, the
faces the model reads are larger or smaller in the crop than any it was trained on. Here the model's own selection
faces, upscaled into camera-sized frames, go through a detector, are cropped at each candidate margin and read
as the engine reads live faces; for each detector the margin that reads them best across face sizes is the one to
keep (BlazeFace's boxes are tighter than Haar's, and small faces' boxes less exact, so they want more), and where the
best margin differs between face sizes, the best one of each size, by the width of the detector's boxes. The faces
read directly (no detector) are the ceiling.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from ..core.errors import FerError
from ..core.model_file import MAX_CROP_MARGIN, ModelMetadata
from ..core.preprocessing import model_input
from ..faces.crops import crop_faces
from ..faces.detectors import create_detector, still_image_options
from .bench_scenes import background

FRAME_SIZE = (640, 480)  # width, height: the live page's camera frames
DEFAULT_FACE_SIZE = 160  # px: a face near a 640x480 camera
DEFAULT_FACE_SIZES = (32, 48, 96, DEFAULT_FACE_SIZE)  # small faces (FER2013 is 48 px), a middle and a near one
DEFAULT_MARGINS = (0.0, 0.05, 0.1, 0.15)


@dataclass(frozen=True)
class FramingScores:
    detector: str
    face_size: int  # px wide, in 640x480 frames
    n: int  # faces shown to the detector
    found: int  # faces it found
    direct: float  # accuracy on the faces found, read directly at the model's input size
    by_margin: dict[float, float]  # accuracy on the faces found, cut from the detector's box with each margin
    box_width: float = 0.0  # px: the median width of the detector's boxes of the faces found

    def to_dict(self) -> dict:
        return {"detector": self.detector, "face_size": self.face_size, "n": self.n, "found": self.found,
                "box_width": round(self.box_width, 1), "direct": round(self.direct, 4),
                "by_margin": {f"{m:g}": round(a, 4) for m, a in self.by_margin.items()}}


def checked_margins(margins: Sequence[float]) -> tuple[float, ...]:
    margins = tuple(sorted(set(float(m) for m in margins)))
    if not margins or any(not 0.0 <= m <= MAX_CROP_MARGIN for m in margins):
        raise FerError(f"Crop margins must lie in [0, {MAX_CROP_MARGIN}], got {list(margins)}.")
    return margins


def face_in_frame(face: np.ndarray, face_size: int, rng: np.random.Generator) -> tuple[np.ndarray, tuple[int, int]]:
    """A grayscale face upscaled to `face_size` px in the middle of a textured BGR camera-sized frame, and where its
    top-left corner is."""
    width, height = FRAME_SIZE
    frame = background(rng, width, height)
    x, y = (width - face_size) // 2, (height - face_size) // 2
    frame[y : y + face_size, x : x + face_size] = cv2.resize(face, (face_size, face_size),
                                                              interpolation=cv2.INTER_CUBIC)[..., None]
    return frame, (x, y)


def framing_scores(engine, faces: np.ndarray, labels: np.ndarray, detector: str,
                   margins: Sequence[float] = DEFAULT_MARGINS, face_size: int = DEFAULT_FACE_SIZE,
                   seed: int = 0) -> FramingScores:
    """Accuracy of `engine` on grayscale `faces` found by `detector` in camera frames, per crop margin. Tilted
    faces are turned upright by their eyes, as the live path does."""
    margins = checked_margins(margins)
    rng = np.random.default_rng(seed)
    metadata: ModelMetadata = engine.metadata
    found_frames, found_boxes, found_angles, found_index = [], [], [], []
    with create_detector(still_image_options(detector)) as finder:
        for i, face in enumerate(faces):
            frame, (x, y) = face_in_frame(face, face_size, rng)
            best = face_at(finder.detect(frame), (x, y, face_size, face_size))
            if best is not None:
                found_frames.append(frame)
                found_boxes.append(best.box)
                found_angles.append(best.roll if best.keypoints else 0.0)
                found_index.append(i)
    truth = np.asarray(labels)[found_index]
    direct = _accuracy(predict_in_chunks(engine, model_input(faces[found_index], metadata)), truth)
    by_margin = {}
    for margin in margins:
        framed = dataclasses.replace(metadata, preprocessing=dataclasses.replace(
            metadata.preprocessing, crop_margin=margin, detector_margins=()))
        crops = [crop_faces(frame, [box], framed, [angle])
                 for frame, box, angle in zip(found_frames, found_boxes, found_angles)]
        by_margin[margin] = _accuracy(predict_in_chunks(engine, np.concatenate(crops)) if crops else None, truth)
    box_width = float(np.median([box[2] for box in found_boxes])) if found_boxes else 0.0
    return FramingScores(detector, face_size, len(faces), len(found_index), direct, by_margin, box_width)


def face_at(detections, box):
    """The largest detection whose centre lies within half the box's size of the box's centre (the face placed
    there), or None."""
    x, y, w, h = box
    near = [d for d in detections if abs(d.box[0] + d.box[2] / 2 - x - w / 2) < w / 2
            and abs(d.box[1] + d.box[3] / 2 - y - h / 2) < h / 2]
    return max(near, key=lambda d: d.box[2] * d.box[3]) if near else None


def best_margin(scores: Sequence[FramingScores]) -> float:
    """The margin with the highest mean accuracy over the scores (detectors, face sizes) whose faces were found;
    the smaller margin on a tie."""
    useful = [s for s in scores if s.found]
    if not useful:
        raise FerError("No detector found any of the faces, so no crop margin can be chosen.")
    margins = sorted(useful[0].by_margin)
    return max(margins, key=lambda m: (np.mean([s.by_margin[m] for s in useful]), -m))


def predict_in_chunks(engine, batch: np.ndarray, size: int = 256) -> np.ndarray | None:
    if not len(batch):
        return None
    return np.concatenate([engine.predict(batch[start : start + size]) for start in range(0, len(batch), size)])


def _accuracy(probabilities: np.ndarray | None, truth: np.ndarray) -> float:
    if probabilities is None or not len(truth):
        return 0.0
    return float(np.mean(probabilities.argmax(axis=1) == truth))


def best_margins(scores: Sequence[FramingScores]) -> tuple[float, dict[str, float]]:
    """(the best margin over all scores, the best margin of each detector that found faces)."""
    detectors = dict.fromkeys(s.detector for s in scores if s.found)
    return best_margin(scores), {name: best_margin([s for s in scores if s.detector == name]) for name in detectors}


def margins_by_width(scores: Sequence[FramingScores]) -> dict[str, tuple[tuple[float, float], ...]]:
    """For each detector whose best margin differs between the face sizes it found: (median box width, the best
    margin at that size) per size, widths ascending. The crop path interpolates between them."""
    curves = {}
    for name in dict.fromkeys(s.detector for s in scores if s.found):
        points = sorted((round(s.box_width, 1), best_margin([s])) for s in scores if s.detector == name and s.found)
        widths = [width for width, _ in points]
        if len({margin for _, margin in points}) > 1 and len(set(widths)) == len(widths) and widths[0] > 0:
            curves[name] = tuple(points)
    return curves
