"""When to turn a tilted face upright before it is read: accuracy through the detector path per smallest turn.

The crop path turns a face by its eye line (Detection.roll) when the tilt is at least faces.crops.MIN_UPRIGHT_TURN.
The eye line is measured from keypoints, which jitter, and faces in the training data were never levelled: they
carry their own natural tilt. So a small turn may move a face away from what the model learned as often as
towards it. Here the model's own selection faces, upscaled into camera frames and tilted by a known angle (or
left as they are), go through a detector (its photo search, or video mode's look around a tracked face) and are
read with each candidate smallest turn; a turn below it is not made.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from ..faces.crops import crop_faces
from ..faces.detector import FaceDetector
from ..faces.detectors import create_detector, still_image_options
from .framing import FRAME_SIZE, face_at, face_in_frame, predict_in_chunks

DEFAULT_MIN_TURNS = (4.0, 8.0, 12.0, 16.0, 90.0)  # 90: never turn (MAX_UPRIGHT_TURN is less)
SOURCES = ("photo", "video")  # detect() with the full search; detect_video() around the face's known box


@dataclass(frozen=True)
class UprightScores:
    detector: str
    source: str  # one of SOURCES
    face_size: int  # px wide, in 640x480 frames
    tilt: float  # faces turned by a random angle in [-tilt, tilt] degrees (0: as they are)
    n: int
    found: int
    by_min_turn: dict[float, float]  # accuracy on the faces found when turns below this are not made
    roll_error: float  # median |measured tilt - applied tilt| in degrees (faces' natural tilt included)


def tilted_face_frame(face: np.ndarray, face_size: int, angle: float,
                      rng: np.random.Generator) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """`face` upscaled into the middle of a camera frame and turned by `angle` degrees (counter-clockwise, as
    OpenCV turns) about its centre; the frame and the face's (unturned) box."""
    frame, (x, y) = face_in_frame(face, face_size, rng)
    if angle:
        matrix = cv2.getRotationMatrix2D((x + face_size / 2, y + face_size / 2), angle, 1.0)
        frame = cv2.warpAffine(frame, matrix, FRAME_SIZE, borderMode=cv2.BORDER_REPLICATE)
    return frame, (x, y, face_size, face_size)


def upright_scores(engine, faces: np.ndarray, labels: np.ndarray, detector: str, face_size: int, tilt: float = 0.0,
                   min_turns: Sequence[float] = DEFAULT_MIN_TURNS, seed: int = 0) -> list[UprightScores]:
    """For each source: accuracy of `engine` on grayscale `faces` found by `detector`, per smallest turn."""
    rng = np.random.default_rng(seed)
    metadata = engine.metadata
    with create_detector(still_image_options(detector)) as finder:
        # a detector without a video mode of its own (haar) finds the same faces both ways
        sources = SOURCES if type(finder).detect_video is not FaceDetector.detect_video else SOURCES[:1]
        found = {source: ([], [], [], [], []) for source in sources}  # crop turned, as found, roll, label, angle
        for face, label in zip(faces, labels):
            angle = float(rng.uniform(-tilt, tilt)) if tilt else 0.0
            frame, box = tilted_face_frame(face, face_size, angle, rng)
            for source in sources:
                detections = finder.detect(frame) if source == "photo" else finder.detect_video(frame, 0, [box])
                best = face_at(detections, box)
                if best is not None:
                    for kept, value in zip(found[source], (
                            crop_faces(frame, [best.box], metadata, [best.roll], detector, min_turn=0.0),
                            crop_faces(frame, [best.box], metadata, [0.0], detector), best.roll, label, angle)):
                        kept.append(value)
    scores = []
    for source, (turned, straight, rolls, truth, angles) in found.items():
        by_min_turn = {float(t): 0.0 for t in sorted(min_turns)}
        if rolls:
            right_turned = predict_in_chunks(engine, np.concatenate(turned)).argmax(1) == np.asarray(truth)
            right_straight = predict_in_chunks(engine, np.concatenate(straight)).argmax(1) == np.asarray(truth)
            for t in by_min_turn:
                by_min_turn[t] = float(np.mean(np.where(np.abs(rolls) >= t, right_turned, right_straight)))
        # OpenCV turns counter-clockwise for a positive angle; in image coordinates (y down) the eye line's angle
        # then falls by as much.
        errors = np.abs(np.asarray(rolls) + np.asarray(angles))
        scores.append(UprightScores(detector, source, face_size, tilt, len(faces), len(rolls), by_min_turn,
                                    float(np.median(errors)) if len(errors) else 0.0))
    return scores


def format_scores(scores: Sequence[UprightScores]) -> str:
    turns = sorted(scores[0].by_min_turn) if scores else []
    lines = [f"{'detector':10} {'source':6} {'face':>5} {'tilt':>5} {'found':>11} {'roll err':>8}  accuracy when "
             "turned from (degrees): " + "  ".join(f"{t:>6g}" for t in turns)]
    for s in scores:
        lines.append(f"{s.detector:10} {s.source:6} {s.face_size:>5} {s.tilt:>5g} {s.found:>5}/{s.n:<5} "
                     f"{s.roll_error:>8.1f}  {'':33}" + "  ".join(f"{s.by_min_turn[t]:>6.4f}" for t in turns))
    return "\n".join(lines)
