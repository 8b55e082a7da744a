"""Many videos at once: the videos of the given files and folders, where each one's outputs go, which are done.

    >>> jobs = plan_jobs(["sessions/", "extra.mp4"], csv_dir="timelines")
    >>> [job for job in jobs if not job.done]

A video's timeline is OUT/NAME.csv (its annotated copy ANNOTATED/NAME.mp4), NAME being its file name without
the suffix; a video found inside a folder keeps its place below that folder (OUT/day1/NAME.csv). Two videos that
would share a name get the first eight hex digits of their path's hash added, which stays the same from run to
run. Outputs are renamed into place only when complete (video/files.py), so a video whose outputs exist is done.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from ..core.errors import FerError
from ..faces.detectors import DEFAULT_DETECTOR
from .files import VIDEO_CODECS, process_video
from .processor import DEFAULT_SMOOTHING

VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".wmv", ".flv", ".ts", ".3gp")


@dataclass(frozen=True)
class VideoJob:
    video: Path
    csv_path: Path
    out_path: Path | None = None  # the annotated copy, when asked for

    @property
    def done(self) -> bool:
        return self.csv_path.is_file() and (self.out_path is None or self.out_path.is_file())


@dataclass(frozen=True)
class VideoOptions:
    """How every video of a job is processed (as the `video` command's options say)."""

    detector: str = DEFAULT_DETECTOR
    model: str | None = None  # a .keras file; None: the shipped model
    detect_every: int | None = None
    smoothing: str = DEFAULT_SMOOTHING
    uncertain_below: float | None = None


@dataclass(frozen=True)
class VideoOutcome:
    video: Path
    state: str  # "done", "skipped" (its outputs were there already) or "failed"
    frames: int = 0
    faces: int = 0  # face rows in its timeline
    seconds: float = 0.0
    error: str = ""  # why it failed, one sentence


def run_job(job: VideoJob, recognizer, options: VideoOptions, progress=None) -> VideoOutcome:
    """Process one video of a job with `recognizer`; a failure becomes the outcome's sentence, not an exception,
    so the other videos of the job go on."""
    try:
        summary = process_video(job.video, recognizer, csv_path=job.csv_path, out_path=job.out_path,
                                detect_every=options.detect_every, progress=progress, smoothing=options.smoothing,
                                uncertain_below=options.uncertain_below, keep_timeline=False)
    except FerError as exc:
        return VideoOutcome(job.video, "failed", error=str(exc))
    except OSError as exc:
        return VideoOutcome(job.video, "failed", error=f"{exc.filename or job.video}: {exc.strerror or exc}.")
    except Exception as exc:  # a decoder or model failure on one file must not stop the others
        return VideoOutcome(job.video, "failed", error=f"{type(exc).__name__}: {exc}")
    return VideoOutcome(job.video, "done", summary.frames, summary.faces, summary.seconds)


def find_videos(paths) -> list[tuple[Path, Path]]:
    """(video, its path below the folder it was found in) for every file given and every video file under every
    folder given (by suffix, sorted, hidden files skipped); a path that does not exist is kept, to fail as a job."""
    found: list[tuple[Path, Path]] = []
    for arg in paths:
        path = Path(arg)
        if not path.is_dir():
            found.append((path, Path(path.name)))
            continue
        inside = sorted(p for p in path.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES and p.is_file()
                        and not any(part.startswith(".") for part in p.relative_to(path).parts))
        if not inside:
            raise FerError(f"{path} has no video files ({', '.join(VIDEO_SUFFIXES)}).")
        found.extend((p, p.relative_to(path)) for p in inside)
    unique: dict[Path, tuple[Path, Path]] = {}
    for video, relative in found:
        unique.setdefault(video.resolve(), (video, relative))
    return list(unique.values())


def plan_jobs(paths, csv_dir: str | os.PathLike, out_dir: str | os.PathLike | None = None) -> list[VideoJob]:
    """One job per video of `paths` (files and folders), its outputs named after it in `csv_dir` and `out_dir`."""
    csv_dir = Path(csv_dir)
    out_dir = Path(out_dir) if out_dir is not None else None
    for option, folder in (("--csv-dir", csv_dir), ("--out-dir", out_dir)):
        if folder is not None and folder.exists() and not folder.is_dir():
            raise FerError(f"{option} {folder} is a file; give a folder.")
    videos = find_videos(paths)
    names = [relative.with_suffix("") for _, relative in videos]
    taken = {name: names.count(name) for name in names}
    jobs = []
    for (video, _), name in zip(videos, names):
        if taken[name] > 1:
            digest = hashlib.sha1(str(video.resolve()).encode()).hexdigest()[:8]
            name = name.with_name(f"{name.name}-{digest}")
        out_suffix = video.suffix.lower() if video.suffix.lower() in VIDEO_CODECS else ".mp4"
        jobs.append(VideoJob(video=video, csv_path=csv_dir / name.parent / f"{name.name}.csv",
                             out_path=out_dir / name.parent / f"{name.name}{out_suffix}" if out_dir else None))
    return jobs
