"""How each smoothing setting trades steadiness for lag, measured through the live frame processor.

Steady face: one FER2013 face, 150 px, held still in front of a camera for STEADY_FRAMES frames: every frame it
moves by up to 2 px, its brightness flickers by up to 3 % and the sensor adds noise; the detector's box jitters
by up to 2 px (a stub detector returns it, so only the classifier and the smoothing are measured). Counted: label
changes per second at 30 frames/s. Change: face A for CHANGE_FRAMES frames, then face B of another expression at
the same place (a cut: the fastest change there is); counted: frames until the shown label is B's (the label the
unsmoothed processor shows most often on B's frames), and how many changes are not followed within CHANGE_FRAMES.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import cv2
import numpy as np

from ..faces.detector import Detection, FaceDetector, FaceDetectorOptions
from ..inference.analyzer import FaceAnalyzer
from ..video.processor import SMOOTHING, VideoProcessor
from .bench_scenes import background

FPS = 30.0
STEADY_FRAMES = 90
CHANGE_FRAMES = 60
FACE_BOX = (245, 165, 150, 150)
FRAME_SIZE = (640, 480)


class FixedBoxDetector(FaceDetector):
    """Returns one known box, jittered by up to 2 px, as a detector would draw it around a still face."""

    name = "fixed"

    def __init__(self, box, seed: int):
        super().__init__(FaceDetectorOptions())
        self.box, self._rng = box, np.random.default_rng(seed)

    def _stages(self, frame):
        return [(self._look, 0.0)]

    def _look(self):
        return [Detection(tuple(int(v) for v in np.add(self.box, self._rng.integers(-2, 3, size=4))), 0.9)]


def _clip(crop: np.ndarray, frames: int, rng: np.random.Generator) -> list[np.ndarray]:
    """`frames` camera frames of one 48x48 face on a textured background (movement, flicker, sensor noise)."""
    x, y, w, h = FACE_BOX
    base = background(rng, *FRAME_SIZE)
    face = cv2.cvtColor(cv2.resize(crop, (w, h), interpolation=cv2.INTER_CUBIC), cv2.COLOR_GRAY2BGR)
    out = []
    for _ in range(frames):
        dx, dy = rng.integers(-2, 3, size=2)
        frame = base.copy()
        frame[y + dy : y + dy + h, x + dx : x + dx + w] = face
        gain = rng.uniform(0.97, 1.03)
        noisy = frame.astype(np.float32) * gain + rng.normal(0, 4, size=frame.shape)
        out.append(np.clip(noisy, 0, 255).astype(np.uint8))
    return out


def _labels(engine, frames: list[np.ndarray], smoothing: float, seed: int) -> list[str]:
    processor = VideoProcessor(FaceAnalyzer(FixedBoxDetector(FACE_BOX, seed), engine), smoothing=smoothing,
                               detect_every=1)
    return [processor.process(frame, draw=False).faces[0].shown_label for frame in frames]


@dataclass(frozen=True)
class SmoothingRow:
    setting: str
    weight: float
    changes_per_s: float  # label changes per second on a steady face (30 frames/s)
    delay_frames: float  # mean frames to follow a change of expression (capped at the change clip's length)
    not_followed: int  # changes not followed within the change clip
    changes: int  # changes measured

    @property
    def delay_ms(self) -> float:
        return 1000.0 * self.delay_frames / FPS


def measure_smoothing(engine, crops: list[np.ndarray], settings=tuple(SMOOTHING), seed: int = 0,
                      steady_frames: int = STEADY_FRAMES, change_frames: int = CHANGE_FRAMES) -> list[SmoothingRow]:
    """One row per setting: every crop as a steady face, and consecutive crops as changes (where their
    unsmoothed labels differ)."""
    steady_clips = [_clip(crop, steady_frames, np.random.default_rng(seed + i)) for i, crop in enumerate(crops)]
    change_clips = []
    for i in range(len(crops) - 1):
        rng = np.random.default_rng(seed + 1000 + i)
        before, after = _clip(crops[i], change_frames, rng), _clip(crops[i + 1], change_frames, rng)
        target = Counter(_labels(engine, after, 0.0, seed + i)).most_common(1)[0][0]
        if target != Counter(_labels(engine, before, 0.0, seed + i)).most_common(1)[0][0]:
            change_clips.append((before + after, target))
    rows = []
    for setting in settings:
        weight = SMOOTHING[setting]
        flips = sum(sum(a != b for a, b in zip(labels, labels[1:]))
                    for labels in (_labels(engine, clip, weight, seed + i) for i, clip in enumerate(steady_clips)))
        delays = []
        for i, (clip, target) in enumerate(change_clips):
            after = _labels(engine, clip, weight, seed + i)[change_frames:]
            delays.append(next((k for k, label in enumerate(after) if label == target), change_frames))
        seconds = len(steady_clips) * steady_frames / FPS
        rows.append(SmoothingRow(setting, weight, flips / seconds, float(np.mean(delays)) if delays else 0.0,
                                 sum(d == change_frames for d in delays), len(delays)))
    return rows


def format_rows(rows: list[SmoothingRow]) -> str:
    lines = [f"{'smoothing':<10} {'weight':>6} {'changes/s steady':>17} {'delay frames':>13} {'delay ms':>9} "
             f"{'not followed':>13}"]
    for r in rows:
        lines.append(f"{r.setting:<10} {r.weight:>6.2f} {r.changes_per_s:>17.2f} {r.delay_frames:>13.1f} "
                     f"{r.delay_ms:>9.0f} {r.not_followed:>6}/{r.changes:<6}")
    return "\n".join(lines)
