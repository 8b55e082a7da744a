"""Video files: every frame through the live frame processor, a per-face emotion timeline, an annotated copy.

    >>> summary = process_video("clip.mp4", csv_path="timeline.csv", out_path="annotated.mp4")
    >>> summary.frames, summary.processing_fps

The timeline has one row per face per frame: frame, time_s, track_id, x, y, w, h, label, confidence and one
column per class score (the track's smoothed probabilities, as drawn). Rows go to the CSV as frames are processed
(with `keep_timeline=False` nothing grows with the video's length, so hours of video run in flat memory). Outputs
are written to temporary files and renamed when complete, so an interrupted or failed run leaves no half-written
file.
"""

from __future__ import annotations

import csv
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from ..core.errors import FerError
from ..inference.analyzer import FaceAnalyzer
from .processor import DEFAULT_SMOOTHING, VideoProcessor
from .timeline import face_row, timeline_columns

# Annotated-video containers and the codec OpenCV's bundled FFmpeg can write for each. WebM (VP8) plays in
# browsers; OpenCV's wheels have no H.264 encoder, and their MPEG-4 Part 2 .mp4 plays in desktop players only.
VIDEO_CODECS = {".mp4": "mp4v", ".m4v": "mp4v", ".avi": "MJPG", ".webm": "VP80"}
MAX_VIDEO_BYTES = 1 << 30  # 1 GiB
STILL_IMAGE_SIGNATURES = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF87a", b"GIF89a", b"BM")


class VideoFileError(FerError):
    """A video file is missing, unreadable or not a video."""


@dataclass(frozen=True)
class VideoSummary:
    frames: int
    faces: int  # face rows in the timeline
    width: int
    height: int
    video_fps: float  # the file's frame rate
    seconds: float  # wall time of processing
    timeline: list[dict]  # the CSV's rows (empty with keep_timeline=False)
    classes: tuple[str, ...]
    csv_path: Path | None = None
    out_path: Path | None = None
    label_counts: dict[str, int] = field(default_factory=dict)  # face rows per label shown

    @property
    def processing_fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


def open_video(path: str | os.PathLike) -> tuple[cv2.VideoCapture, int, float]:
    """An opened capture, its frame count (0 when the container does not say) and frame rate."""
    path = Path(path)
    if not path.exists():
        raise VideoFileError(f"Video file {path} does not exist.")
    if path.is_dir():
        raise VideoFileError(f"{path} is a folder, not a video file.")
    size = path.stat().st_size
    if size == 0:
        raise VideoFileError(f"{path.name} is empty.")
    if size > MAX_VIDEO_BYTES:
        raise VideoFileError(f"{path.name} is {size / 2**20:.0f} MiB; videos are limited to {MAX_VIDEO_BYTES >> 20} MiB.")
    with open(path, "rb") as handle:
        head = handle.read(16)
    # OpenCV's FFmpeg reads a photo as a one-frame "video"; a renamed photo is a mistake worth naming.
    if head.startswith(STILL_IMAGE_SIGNATURES) or (head[:4] == b"RIFF" and head[8:12] == b"WEBP"):
        raise VideoFileError(f"{path.name} is a still image, not a video.")
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        capture.release()
        raise VideoFileError(f"{path.name} is not a video that OpenCV can read.")
    count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    fps = float(capture.get(cv2.CAP_PROP_FPS) or 0.0)
    if not np.isfinite(fps) or fps <= 0 or fps > 1000:
        fps = 30.0
    return capture, max(count, 0), fps


def _temporary(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}-", suffix=path.suffix)
    os.close(fd)
    return Path(name)


def process_video(
    path: str | os.PathLike,
    recognizer=None,
    csv_path: str | os.PathLike | None = None,
    out_path: str | os.PathLike | None = None,
    detect_every: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    max_frames: int | None = None,
    smoothing: str | float = DEFAULT_SMOOTHING,
    uncertain_below: float | None = None,
    keep_timeline: bool = True,
) -> VideoSummary:
    """Run every frame of `path` through a fresh VideoProcessor; write the timeline CSV and annotated video.

    `recognizer` (a FaceAnalyzer, such as an EmotionRecognizer) defaults to one with the shipped model and
    mediapipe; `smoothing` and `uncertain_below` as VideoProcessor takes them. `progress(done, total)` is called
    every few frames (total 0 when unknown). `keep_timeline=False` leaves the rows in the CSV only.
    """
    out_path = Path(out_path) if out_path is not None else None
    csv_path = Path(csv_path) if csv_path is not None else None
    if out_path is not None and out_path.suffix.lower() not in VIDEO_CODECS:
        raise VideoFileError(f"The annotated video must end in one of {', '.join(VIDEO_CODECS)}, not {out_path.name}.")
    capture, total, fps = open_video(path)
    own_recognizer = recognizer is None
    temporaries: list[Path] = []
    writer = None
    csv_file = None
    try:
        ok, frame = capture.read()
        if not ok or frame is None:
            raise VideoFileError(f"{Path(path).name} has no frame that OpenCV can decode.")
        recognizer = recognizer or FaceAnalyzer()
        processor = VideoProcessor(recognizer, detect_every=detect_every, smoothing=smoothing,
                                   uncertain_below=uncertain_below)
        classes = recognizer.classes
        height, width = frame.shape[:2]
        if out_path is not None:
            tmp_video = _temporary(out_path)
            temporaries.append(tmp_video)
            writer = cv2.VideoWriter(str(tmp_video), cv2.VideoWriter_fourcc(*VIDEO_CODECS[out_path.suffix.lower()]),
                                     fps, (width, height))
            if not writer.isOpened():
                raise VideoFileError(f"OpenCV cannot write {out_path.suffix} video here.")
        table = None
        if csv_path is not None:
            tmp_csv = _temporary(csv_path)
            temporaries.append(tmp_csv)
            csv_file = open(tmp_csv, "w", newline="")
            table = csv.DictWriter(csv_file, fieldnames=timeline_columns(classes))
            table.writeheader()
        timeline: list[dict] = []
        label_counts: dict[str, int] = {}
        frames = faces = 0
        started = time.perf_counter()
        while ok and frame is not None:
            if frame.shape[:2] != (height, width):  # a stream that changes size mid-file: keep the first size
                frame = cv2.resize(frame, (width, height), interpolation=cv2.INTER_AREA)
            result = processor.process(frame, draw=writer is not None)
            rows = [face_row(frames, frames / fps, face, classes) for face in result.faces]
            for row in rows:
                label_counts[row["label"]] = label_counts.get(row["label"], 0) + 1
            faces += len(rows)
            if table is not None:
                table.writerows(rows)
            if keep_timeline:
                timeline.extend(rows)
            if writer is not None:
                writer.write(result.image)
            frames += 1
            if progress is not None and (frames % 10 == 0 or frames == total):
                progress(frames, total)
            if max_frames is not None and frames >= max_frames:
                break
            ok, frame = capture.read()
        seconds = time.perf_counter() - started
        if writer is not None:
            writer.release()
            writer = None
            os.chmod(temporaries[0], 0o644)
            os.replace(temporaries[0], out_path)
        if csv_file is not None:
            csv_file.close()
            csv_file = None
            os.chmod(tmp_csv, 0o644)
            os.replace(tmp_csv, csv_path)
        if progress is not None:
            progress(frames, total or frames)
        return VideoSummary(frames=frames, faces=faces, width=width, height=height, video_fps=fps,
                            seconds=seconds, timeline=timeline, classes=tuple(classes), csv_path=csv_path,
                            out_path=out_path, label_counts=label_counts)
    finally:
        capture.release()
        if writer is not None:
            writer.release()
        if csv_file is not None:
            csv_file.close()
        for tmp in temporaries:
            tmp.unlink(missing_ok=True)
        if own_recognizer and recognizer is not None:
            recognizer.close()
