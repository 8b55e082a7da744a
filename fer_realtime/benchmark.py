"""Speed benchmark: 640x480 frames of real faces through `analyze`, the live video path and the model alone.

Frames are built from face crops of a class-folder dataset (FER2013 `val/` by default), upscaled onto a
textured background, 1 or 4 faces per frame. Reported per detector: p50/p90 ms per frame, frames/s, and faces
found / faces present (a face counts as found when a detection's centre lies inside its pasted box and the
boxes overlap by IoU >= 0.3).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from .datasets import IMAGE_SUFFIXES, class_folders
from .errors import DatasetError

FRAME_WIDTH, FRAME_HEIGHT = 640, 480
DEFAULT_DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "datasets" / "fer2013" / "val"
Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class BenchFrame:
    image: np.ndarray  # HxWx3 uint8 BGR
    faces: tuple[Box, ...]  # where the faces were pasted


@dataclass(frozen=True)
class BenchRow:
    mode: str  # "analyze" (independent frames), "video" (VideoProcessor on a moving sequence) or "model"
    detector: str
    faces: int  # faces per frame, or the batch size for mode "model"
    p50_ms: float
    p90_ms: float
    fps: float  # frames (model: faces) per second at the mean time
    found: int  # faces found that were present (0 for mode "model")
    present: int
    frames: int

    @property
    def ms_per_face(self) -> float:
        return self.p50_ms / max(1, self.faces)


def load_face_crops(data_dir: str | Path, count: int = 240, seed: int = 0) -> list[np.ndarray]:
    """`count` grayscale face crops sampled evenly over the class folders of `data_dir`."""
    folders, _ = class_folders(Path(data_dir))
    paths = sorted(
        p for folder_list in folders.values() for folder in folder_list for p in folder.iterdir()
        if p.suffix.lower() in IMAGE_SUFFIXES
    )
    if not paths:
        raise DatasetError(f"No face images found in class folders of {data_dir}.")
    rng = np.random.default_rng(seed)
    crops = []
    for index in rng.permutation(len(paths)):
        image = cv2.imread(str(paths[index]), cv2.IMREAD_GRAYSCALE)
        if image is not None:
            crops.append(image)
        if len(crops) == count:
            break
    return crops


def _background(rng: np.random.Generator) -> np.ndarray:
    """A smooth coloured 'room' with some fine noise, so detectors see texture rather than a flat colour."""
    coarse = rng.integers(40, 200, size=(6, 8, 3), dtype=np.uint8)
    image = cv2.resize(coarse, (FRAME_WIDTH, FRAME_HEIGHT), interpolation=cv2.INTER_CUBIC)
    noise = rng.normal(0, 6, size=image.shape)
    return np.clip(image + noise, 0, 255).astype(np.uint8)


def _paste(frame: np.ndarray, crop: np.ndarray, x: int, y: int, size: int) -> Box:
    face = cv2.resize(crop, (size, size), interpolation=cv2.INTER_CUBIC)
    frame[y : y + size, x : x + size] = face[..., None]
    return x, y, size, size


def _slots(faces: int) -> list[tuple[int, int, int, int]]:
    """Regions (x, y, w, h) a face may be placed in: the whole frame, or its quadrants."""
    if faces == 1:
        return [(0, 0, FRAME_WIDTH, FRAME_HEIGHT)]
    cols = int(np.ceil(np.sqrt(faces)))
    rows = int(np.ceil(faces / cols))
    w, h = FRAME_WIDTH // cols, FRAME_HEIGHT // rows
    return [((i % cols) * w, (i // cols) * h, w, h) for i in range(faces)]


def make_frames(crops: list[np.ndarray], faces: int, count: int, seed: int = 0) -> list[BenchFrame]:
    """Independent frames, each with `faces` different faces of 110-170 px at random places."""
    rng = np.random.default_rng(seed)
    frames = []
    for _ in range(count):
        frame = _background(rng)
        boxes = []
        for sx, sy, sw, sh in _slots(faces):
            size = int(rng.integers(110, min(170, sw - 8, sh - 8) + 1))
            x = sx + int(rng.integers(0, sw - size + 1))
            y = sy + int(rng.integers(0, sh - size + 1))
            boxes.append(_paste(frame, crops[int(rng.integers(len(crops)))], x, y, size))
        frames.append(BenchFrame(frame, tuple(boxes)))
    return frames


def make_sequence(crops: list[np.ndarray], faces: int, count: int, seed: int = 0) -> list[BenchFrame]:
    """A moving-camera-like clip: the same faces drift smoothly (a few pixels per frame) across their slots."""
    rng = np.random.default_rng(seed)
    background = _background(rng)
    people = []
    for sx, sy, sw, sh in _slots(faces):
        size = int(rng.integers(110, min(170, sw - 8, sh - 8) + 1))
        people.append((crops[int(rng.integers(len(crops)))], sx, sy, sw - size, sh - size, size,
                       rng.uniform(0, 2 * np.pi), rng.uniform(0, 2 * np.pi)))
    frames = []
    for t in range(count):
        frame = background.copy()
        boxes = []
        for crop, sx, sy, free_w, free_h, size, phase_x, phase_y in people:
            x = sx + int(round(free_w * (0.5 + 0.5 * np.sin(phase_x + t / 45))))
            y = sy + int(round(free_h * (0.5 + 0.5 * np.sin(phase_y + t / 60))))
            boxes.append(_paste(frame, crop, x, y, size))
        frames.append(BenchFrame(frame, tuple(boxes)))
    return frames


def _iou(a: Box, b: Box) -> float:
    ix = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    union = a[2] * a[3] + b[2] * b[3] - ix * iy
    return ix * iy / union if union else 0.0


def count_found(truth: tuple[Box, ...], detected: list[Box]) -> int:
    found = 0
    remaining = list(detected)
    for box in truth:
        for candidate in remaining:
            cx, cy = candidate[0] + candidate[2] / 2, candidate[1] + candidate[3] / 2
            inside = box[0] <= cx <= box[0] + box[2] and box[1] <= cy <= box[1] + box[3]
            if inside and _iou(box, candidate) >= 0.3:
                found += 1
                remaining.remove(candidate)
                break
    return found


def _timed(step: Callable[[BenchFrame], list[Box]], frames: list[BenchFrame], runs: int, warmup: int = 5):
    for frame in frames[:warmup]:
        step(frame)
    times, found, present = [], 0, 0
    for i in range(runs):
        frame = frames[i % len(frames)]
        start = time.perf_counter()
        boxes = step(frame)
        times.append((time.perf_counter() - start) * 1000.0)
        found += count_found(frame.faces, boxes)
        present += len(frame.faces)
    return np.asarray(times), found, present


def _row(mode: str, detector: str, faces: int, times: np.ndarray, found: int, present: int) -> BenchRow:
    return BenchRow(mode=mode, detector=detector, faces=faces, p50_ms=float(np.median(times)),
                    p90_ms=float(np.percentile(times, 90)), fps=float(1000.0 / times.mean()),
                    found=found, present=present, frames=len(times))


def bench_analyze(recognizer, frames: list[BenchFrame], runs: int, detector: str, faces: int) -> BenchRow:
    times, found, present = _timed(lambda f: [r.box for r in recognizer.analyze(f.image)], frames, runs)
    return _row("analyze", detector, faces, times, found, present)


def bench_video(recognizer, frames: list[BenchFrame], detector: str, faces: int, **processor_options) -> BenchRow:
    """The live path: one VideoProcessor fed the clip in order, drawing included, as the page does."""
    processor = recognizer.video_processor(**processor_options)
    times, found, present = _timed(lambda f: [r.box for r in processor.process(f.image).faces], frames,
                                   runs=len(frames), warmup=0)
    return _row("video", detector, faces, times, found, present)


def bench_model(engine, crops: list[np.ndarray], batch: int, runs: int) -> BenchRow:
    """The network alone on `batch` real faces already at input size (ms per call; ms_per_face divides)."""
    from .preprocessing import model_input

    height, width = engine.metadata.input_size
    faces = np.stack([cv2.resize(c, (width, height), interpolation=cv2.INTER_AREA) for c in crops[:batch]])
    x = model_input(faces, engine.metadata)
    for _ in range(5):
        engine.predict(x)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        engine.predict(x)
        times.append((time.perf_counter() - start) * 1000.0)
    times = np.asarray(times)
    return BenchRow(mode="model", detector="-", faces=batch, p50_ms=float(np.median(times)),
                    p90_ms=float(np.percentile(times, 90)), fps=float(1000.0 * batch / times.mean()),
                    found=0, present=0, frames=runs)


def run_benchmark(data_dir: str | Path = DEFAULT_DATA, detectors=("mediapipe", "haar"), face_counts=(1, 4),
                  runs: int = 200, video_frames: int = 300, model=None, batches=(1, 4, 8, 16),
                  detect_every: int | None = None, progress: Callable[[str], None] | None = None) -> list[BenchRow]:
    from .recognizer import EmotionRecognizer, get_engine

    crops = load_face_crops(data_dir)
    rows: list[BenchRow] = []
    for detector in detectors:
        recognizer = EmotionRecognizer(detector=detector, model=model)
        try:
            for faces in face_counts:
                if progress:
                    progress(f"{detector}: {faces} face(s) per frame")
                rows.append(bench_analyze(recognizer, make_frames(crops, faces, 100, seed=faces), runs, detector, faces))
                rows.append(bench_video(recognizer, make_sequence(crops, faces, video_frames, seed=faces), detector, faces,
                                        detect_every=detect_every))
        finally:
            recognizer.close()
    engine = get_engine(model)
    for batch in batches:
        rows.append(bench_model(engine, crops, batch, runs))
    return rows


def format_rows(rows: list[BenchRow]) -> str:
    lines = [f"{'mode':8} {'detector':10} {'faces':>5} {'p50 ms':>8} {'p90 ms':>8} {'frames/s':>9} {'found':>11}"]
    for r in rows:
        if r.mode == "model":
            lines.append(f"{'model':8} {'batch':10} {r.faces:>5} {r.p50_ms:>8.2f} {r.p90_ms:>8.2f} {r.fps:>9.0f} "
                         f"{r.ms_per_face:>6.2f} ms/face")
        else:
            lines.append(f"{r.mode:8} {r.detector:10} {r.faces:>5} {r.p50_ms:>8.2f} {r.p90_ms:>8.2f} {r.fps:>9.1f} "
                         f"{r.found:>5}/{r.present:<5}")
    return "\n".join(lines)


def rows_as_dicts(rows: list[BenchRow]) -> list[dict]:
    return [{**asdict(r), "ms_per_face": r.ms_per_face} for r in rows]
