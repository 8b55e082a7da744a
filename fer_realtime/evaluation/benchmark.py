"""Speed benchmark: frames of real faces through `analyze`, the live video path and the model alone.

Frames are built from face crops of a class-folder dataset (FER2013 `val/` by default) and from skimage
photographs (bench_scenes.py) on a textured background. Scenes:
  faces          640x480, 1 or 4 FER2013 faces upscaled to 110-170 px (the near-camera case)
  small          1280x720, 6 FER2013 faces of 24-48 px (a person 2-3 m from a 720p camera, a classroom)
  small photo    1280x720, 6 astronaut heads and shoulders, faces 24-48 px
(small and small photo also as video: 60 frames of each scene, panning slowly, then a cut)
  tilted         640x480, 4 FER2013 faces of 110-170 px turned by 15-30 degrees either way
  tilted photo   640x480, 4 astronauts tilted by 15-30 degrees either way, faces 60-85 px
  profile        640x480, 2 cameramen (three-quarter profile), facing either way, faces 70-110 px
  group          1280x720, 12 astronauts, faces 50-90 px (a group photo)
Reported per detector: p50/p90 ms per frame, frames/s, faces found / faces present (a face counts as found when
a detection's centre lies inside its box and the boxes overlap by IoU >= 0.3) and, for FER2013 faces, the
accuracy of the labels of the faces found, beside the accuracy of the same faces read directly (upright, at the
model's input size), and how many different faces those readings come from (in video, a face found once is
tracked and read in every frame after, so a few faces can make most of the readings).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from ..core.errors import DatasetError
from ..data.class_folders import IMAGE_SUFFIXES, class_folders
from ..faces.boxes import box_iou
from . import bench_scenes

FRAME_WIDTH, FRAME_HEIGHT = 640, 480
DEFAULT_DATA = Path(__file__).resolve().parents[3] / "shared" / "datasets" / "fer2013" / "val"
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
    scene: str = "faces"
    accuracy: float | None = None  # labelled scenes: of the faces found, the share labelled right
    reference_accuracy: float | None = None  # the same faces read directly: upright, at the model's input size
    distinct_faces: int | None = None  # labelled scenes: how many different faces those readings come from

    @property
    def ms_per_face(self) -> float:
        return self.p50_ms / max(1, self.faces)


def load_face_crops(data_dir: str | Path, count: int = 240, seed: int = 0) -> list[np.ndarray]:
    """`count` grayscale face crops sampled evenly over the class folders of `data_dir`."""
    return load_labelled_crops(data_dir, count, seed)[0]


def load_labelled_crops(data_dir: str | Path, count: int = 240, seed: int = 0) -> tuple[list[np.ndarray], list[str]]:
    """`count` grayscale face crops sampled evenly over the class folders of `data_dir`, and their class names."""
    folders, _ = class_folders(Path(data_dir))
    paths = sorted(
        (p, name) for name, folder_list in folders.items() for folder in folder_list for p in folder.iterdir()
        if p.suffix.lower() in IMAGE_SUFFIXES
    )
    if not paths:
        raise DatasetError(f"No face images found in class folders of {data_dir}.")
    rng = np.random.default_rng(seed)
    crops, names = [], []
    for index in rng.permutation(len(paths)):
        image = cv2.imread(str(paths[index][0]), cv2.IMREAD_GRAYSCALE)
        if image is not None:
            crops.append(image)
            names.append(paths[index][1])
        if len(crops) == count:
            break
    return crops, names


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
        frame = bench_scenes.background(rng, FRAME_WIDTH, FRAME_HEIGHT)
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
    room = bench_scenes.background(rng, FRAME_WIDTH, FRAME_HEIGHT)
    people = []
    for sx, sy, sw, sh in _slots(faces):
        size = int(rng.integers(110, min(170, sw - 8, sh - 8) + 1))
        people.append((crops[int(rng.integers(len(crops)))], sx, sy, sw - size, sh - size, size,
                       rng.uniform(0, 2 * np.pi), rng.uniform(0, 2 * np.pi)))
    frames = []
    for t in range(count):
        frame = room.copy()
        boxes = []
        for crop, sx, sy, free_w, free_h, size, phase_x, phase_y in people:
            x = sx + int(round(free_w * (0.5 + 0.5 * np.sin(phase_x + t / 45))))
            y = sy + int(round(free_h * (0.5 + 0.5 * np.sin(phase_y + t / 60))))
            boxes.append(_paste(frame, crop, x, y, size))
        frames.append(BenchFrame(frame, tuple(boxes)))
    return frames


def matches(truth: tuple[Box, ...], detected: list[Box]) -> list[tuple[int, int]]:
    """(truth index, detection index) of every face found, each detection used once."""
    pairs = []
    used: set[int] = set()
    for t, box in enumerate(truth):
        for d, candidate in enumerate(detected):
            if d in used:
                continue
            cx, cy = candidate[0] + candidate[2] / 2, candidate[1] + candidate[3] / 2
            inside = box[0] <= cx <= box[0] + box[2] and box[1] <= cy <= box[1] + box[3]
            if inside and box_iou(box, candidate) >= 0.3:
                pairs.append((t, d))
                used.add(d)
                break
    return pairs


def count_found(truth: tuple[Box, ...], detected: list[Box]) -> int:
    return len(matches(truth, detected))


@dataclass
class _Tally:
    times: list
    found: int = 0
    present: int = 0
    labelled: int = 0  # labelled faces found
    correct: int = 0
    reference_correct: int = 0
    crops_read: set = field(default_factory=set)  # crop ids of the labelled faces found


def _timed(step: Callable, frames: list, runs: int, warmup: int = 5, reference=None) -> _Tally:
    """Time `step` (frame -> FaceResults) over `frames`; `reference` (crop id -> predicted class index) scores
    the same faces read directly."""
    for frame in frames[:warmup]:
        step(frame)
    tally = _Tally(times=[])
    for i in range(runs):
        frame = frames[i % len(frames)]
        start = time.perf_counter()
        results = step(frame)
        tally.times.append((time.perf_counter() - start) * 1000.0)
        pairs = matches(frame.faces, [r.box for r in results])
        tally.found += len(pairs)
        tally.present += len(frame.faces)
        labels = getattr(frame, "labels", ())
        if labels and reference is not None:
            for t, d in pairs:
                tally.labelled += 1
                tally.crops_read.add(frame.crop_ids[t])
                tally.correct += results[d].label_index == labels[t]
                tally.reference_correct += reference[frame.crop_ids[t]] == labels[t]
    return tally


def _row(mode: str, detector: str, faces: int, tally: _Tally, scene: str = "faces") -> BenchRow:
    times = np.asarray(tally.times)
    accuracy = reference = distinct = None
    if tally.labelled:
        accuracy, reference = tally.correct / tally.labelled, tally.reference_correct / tally.labelled
        distinct = len(tally.crops_read)
    return BenchRow(mode=mode, detector=detector, faces=faces, p50_ms=float(np.median(times)),
                    p90_ms=float(np.percentile(times, 90)), fps=float(1000.0 / times.mean()),
                    found=tally.found, present=tally.present, frames=len(times), scene=scene,
                    accuracy=accuracy, reference_accuracy=reference, distinct_faces=distinct)


class _Labelled:
    """A FaceResult with its class index (for scoring against a frame's labels)."""

    def __init__(self, result, classes):
        self.box = result.box
        self.label_index = list(classes).index(result.label)


def bench_analyze(recognizer, frames: list, runs: int, detector: str, faces: int, scene: str = "faces",
                  reference=None) -> BenchRow:
    classes = recognizer.classes
    tally = _timed(lambda f: [_Labelled(r, classes) for r in recognizer.analyze(f.image)], frames, runs,
                   reference=reference)
    return _row("analyze", detector, faces, tally, scene)


def bench_video(recognizer, frames: list, detector: str, faces: int, scene: str = "faces", reference=None,
                **processor_options) -> BenchRow:
    """The live path: one VideoProcessor fed the clip in order, drawing included, as the page does."""
    processor = recognizer.video_processor(**processor_options)
    classes = recognizer.classes
    tally = _timed(lambda f: [_Labelled(r, classes) for r in processor.process(f.image).faces], frames,
                   runs=len(frames), warmup=0, reference=reference)
    return _row("video", detector, faces, tally, scene)


def bench_model(engine, crops: list[np.ndarray], batch: int, runs: int) -> BenchRow:
    """The network alone on `batch` real faces already at input size (ms per call; ms_per_face divides)."""
    from ..core.preprocessing import model_input

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
                    found=0, present=0, frames=runs, scene="-")


SCENES = ("faces", "small", "small photo", "tilted", "tilted photo", "profile", "group")
HD = (1280, 720)
VGA = (FRAME_WIDTH, FRAME_HEIGHT)


def scene_frames(scene: str, crops, labels, count: int) -> list:
    """`count` frames of one of SCENES (but "faces", which make_frames builds)."""
    if scene == "small":
        return bench_scenes.fer_scene(crops, labels, count, 6, (24, 48), HD, seed=11)
    if scene == "small photo":
        return bench_scenes.photo_scene("astronaut", count, 6, (24, 48), HD, seed=12)
    if scene == "tilted":
        return bench_scenes.fer_scene(crops, labels, count, 4, (110, 170), VGA, seed=13, turn=(15, 30))
    if scene == "tilted photo":
        return bench_scenes.photo_scene("astronaut", count, 4, (60, 85), VGA, seed=14, turn=(15, 30))
    if scene == "profile":
        return bench_scenes.photo_scene("cameraman", count, 2, (70, 110), VGA, seed=15)
    if scene == "group":
        return bench_scenes.photo_scene("astronaut", count, 12, (50, 90), HD, seed=16)
    raise ValueError(f"unknown scene {scene!r}; choose from {', '.join(SCENES)}")


def _reference_predictions(engine, crops) -> list[int]:
    """The class each crop gets read directly: upright, resized to the model's input (the 'large' reading)."""
    from ..core.preprocessing import model_input

    height, width = engine.metadata.input_size
    faces = np.stack([cv2.resize(c, (width, height), interpolation=cv2.INTER_AREA) for c in crops])
    x = model_input(faces, engine.metadata)
    return [int(v) for v in np.concatenate([engine.predict(x[i : i + 64]) for i in range(0, len(x), 64)]).argmax(1)]


def run_benchmark(data_dir: str | Path = DEFAULT_DATA, detectors=("mediapipe", "haar"), face_counts=(1, 4),
                  runs: int = 200, video_frames: int = 300, model=None, batches=(1, 4, 8, 16),
                  detect_every: int | None = None, progress: Callable[[str], None] | None = None,
                  scenes=SCENES, scene_runs: int = 60) -> list[BenchRow]:
    from ..inference.engine import get_engine
    from ..recognizer import EmotionRecognizer

    crops, names = load_labelled_crops(data_dir)
    engine = get_engine(model)
    classes = list(engine.metadata.classes)
    labels = [classes.index(n) if n in classes else -1 for n in names]
    reference = _reference_predictions(engine, crops)
    rows: list[BenchRow] = []
    for detector in detectors:
        recognizer = EmotionRecognizer(detector=detector, model=model)
        try:
            if "faces" in scenes:
                for faces in face_counts:
                    if progress:
                        progress(f"{detector}: {faces} face(s) per frame")
                    rows.append(bench_analyze(recognizer, make_frames(crops, faces, 100, seed=faces), runs, detector,
                                              faces))
                    rows.append(bench_video(recognizer, make_sequence(crops, faces, video_frames, seed=faces),
                                            detector, faces, detect_every=detect_every))
            for scene in (s for s in scenes if s != "faces"):
                if progress:
                    progress(f"{detector}: {scene}")
                frames = scene_frames(scene, crops, labels, 30)
                faces = max(len(f.faces) for f in frames)
                rows.append(bench_analyze(recognizer, frames, min(runs, scene_runs), detector, faces, scene, reference))
                if scene in ("small", "small photo"):
                    clip = bench_scenes.drifting_scene(frames, video_frames, seed=21, segment=60)
                    rows.append(bench_video(recognizer, clip, detector, faces, scene, reference,
                                            detect_every=detect_every))
        finally:
            recognizer.close()
    for batch in batches:
        rows.append(bench_model(engine, crops, batch, runs))
    return rows


def format_rows(rows: list[BenchRow]) -> str:
    lines = [f"{'scene':13} {'mode':8} {'detector':10} {'faces':>5} {'p50 ms':>8} {'p90 ms':>8} {'frames/s':>9} "
             f"{'found':>11}  accuracy (same faces read directly), different faces read"]
    for r in rows:
        if r.mode == "model":
            lines.append(f"{'-':13} {'model':8} {'batch':10} {r.faces:>5} {r.p50_ms:>8.2f} {r.p90_ms:>8.2f} "
                         f"{r.fps:>9.0f} {r.ms_per_face:>6.2f} ms/face")
        else:
            accuracy = (f"  {r.accuracy:.3f} ({r.reference_accuracy:.3f}), {r.distinct_faces} faces"
                        if r.accuracy is not None else "")
            lines.append(f"{r.scene:13} {r.mode:8} {r.detector:10} {r.faces:>5} {r.p50_ms:>8.2f} {r.p90_ms:>8.2f} "
                         f"{r.fps:>9.1f} {r.found:>5}/{r.present:<5}{accuracy}")
    return "\n".join(lines)


def rows_as_dicts(rows: list[BenchRow]) -> list[dict]:
    return [{**asdict(r), "ms_per_face": r.ms_per_face} for r in rows]
