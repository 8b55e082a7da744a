"""Uploaded videos: each is written into a fresh folder of its own, processed there (video_file.process_video) and
its results kept beside it: the per-face timeline CSV and an annotated WebM. Folders older than a day are removed
when the next video comes in."""

from __future__ import annotations

import math
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO, NamedTuple

from .model_catalog import safe_file_name

VIDEO_TYPES = ("mp4", "mov", "avi", "mkv", "webm", "m4v")
KEEP_S = 24 * 3600  # result folders are removed after a day


class VideoResult(NamedTuple):
    name: str  # the uploaded file's name
    folder: str  # holds timeline.csv and annotated.webm
    frames: int
    faces: int  # face rows in the timeline
    length_s: float
    processing_fps: float
    detector: str
    model: str  # the model file's name
    shares: object  # pandas DataFrame: mean probability per class per time bin, indexed by time_s

    @property
    def csv_path(self) -> Path:
        return Path(self.folder) / "timeline.csv"

    @property
    def video_path(self) -> Path:
        return Path(self.folder) / "annotated.webm"


def prune_old_results(videos_dir: Path, keep_s: float = KEEP_S) -> None:
    cutoff = time.time() - keep_s
    for child in videos_dir.glob("video-*"):
        try:
            if child.is_dir() and child.stat().st_mtime < cutoff:
                shutil.rmtree(child, ignore_errors=True)
        except OSError:
            continue


def emotion_shares(summary):
    """The mean probability per class and time bin, as a DataFrame indexed by time_s. Bins of one second, or of
    a few frames for a clip shorter than 30 s (about 30 points on its line)."""
    import pandas as pd

    from ..video.timeline import emotion_shares_over_time

    fps, bin_seconds = summary.video_fps, 1.0
    if summary.frames < 30 * fps:
        bin_seconds = math.ceil(summary.frames / 30) / fps
    frame = pd.DataFrame(emotion_shares_over_time(summary.timeline, summary.classes, fps, bin_seconds=bin_seconds))
    return frame.set_index("time_s") if "time_s" in frame.columns else frame


def process_upload(stream: BinaryIO, name: str, detector: str, model_path: str, videos_dir: Path,
                   progress: Callable[[int, int], None] | None = None) -> VideoResult:
    """Copy the uploaded `stream` (file name `name`) into a fresh folder under `videos_dir`, process it with a
    recognizer of its own (closed afterwards) and keep the timeline CSV and the annotated WebM there; the upload
    itself is removed. On any failure, including an interruption, the folder is removed; FerError is one
    sentence. `progress(done, total)` is called every few frames."""
    from ..recognizer import EmotionRecognizer
    from ..video.files import process_video

    videos_dir.mkdir(parents=True, exist_ok=True)
    prune_old_results(videos_dir)
    folder = Path(tempfile.mkdtemp(prefix="video-", dir=videos_dir))
    try:
        source = folder / safe_file_name(name, Path(name).suffix.lower() or ".mp4")
        stream.seek(0)
        with open(source, "wb") as handle:
            shutil.copyfileobj(stream, handle)
        recognizer = EmotionRecognizer(detector=detector, model=model_path)  # detectors are not thread-safe
        try:
            summary = process_video(source, recognizer, csv_path=folder / "timeline.csv",
                                    out_path=folder / "annotated.webm", progress=progress)
        finally:
            recognizer.close()
        source.unlink()
        return VideoResult(
            name=name, folder=str(folder), frames=summary.frames, faces=summary.faces,
            length_s=summary.frames / summary.video_fps if summary.video_fps else 0.0,
            processing_fps=summary.processing_fps, detector=detector, model=Path(model_path).name,
            shares=emotion_shares(summary),
        )
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
