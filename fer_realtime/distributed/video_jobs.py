"""Many videos on Ray: each video a task, on a local Ray instance with N worker processes or on a cluster.

    >>> outcomes = run_video_jobs(plan_jobs(["archive/"], "timelines"), VideoOptions(), workers=2)

A worker process loads the model and detector once and keeps them for every video it is given; each video gets a
fresh frame processor, so its timeline is the one the sequential `video` command writes. Workers report frames
done to a small actor, which the driver reads for one progress bar over the whole job. A video that fails (or whose
worker dies) becomes a failed outcome with one sentence; the others finish. On a cluster (`address`), every node
needs fer-realtime installed, and the paths given must be readable there (a shared file system).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import ray

from ..core.threads import THREADS_ENV
from ..recognizer import EmotionRecognizer
from ..video.collection import VideoJob, VideoOptions, VideoOutcome, run_job
from ..video.files import VideoFileError, open_video

LOCAL_OBJECT_STORE_BYTES = 100 * 2**20  # only job descriptions and outcomes travel through it
REPORT_EVERY_S = 0.5  # how often a worker sends its frame count
POLL_S = 0.25


@dataclass(frozen=True)
class JobProgress:
    frames_done: int
    frames_total: int  # from the containers' frame counts (0 for a file that has none)
    videos_done: int  # finished, failed or skipped
    videos_total: int
    failed: int


@ray.remote(num_cpus=0)
class _FrameCounter:
    def __init__(self):
        self.frames: dict[int, int] = {}

    def update(self, index: int, frames: int) -> None:
        self.frames[index] = frames

    def by_video(self) -> dict[int, int]:
        return dict(self.frames)


_recognizers: dict[tuple, EmotionRecognizer] = {}  # per worker process: loaded once, kept for its next videos


def _recognizer(options: VideoOptions) -> EmotionRecognizer:
    key = (options.detector, options.model)
    if key not in _recognizers:
        _recognizers[key] = EmotionRecognizer(detector=options.detector, model=options.model)
    return _recognizers[key]


@ray.remote(num_cpus=1, max_retries=1)
def _video_task(index: int, job: VideoJob, options: VideoOptions, counter) -> VideoOutcome:
    last = [0.0]

    def report(done: int, total: int) -> None:
        now = time.monotonic()
        if now - last[0] >= REPORT_EVERY_S:
            last[0] = now
            counter.update.remote(index, done)

    try:
        recognizer = _recognizer(options)
    except Exception as exc:
        return VideoOutcome(job.video, "failed", error=f"the model could not be loaded on a worker ({exc})")
    outcome = run_job(job, recognizer, options, progress=report)
    counter.update.remote(index, outcome.frames)
    return outcome


def _frame_count(path: Path) -> int:
    """The container's frame count (0 when it does not say); VideoFileError for a file that is not a video, so it
    fails here, before any worker starts."""
    capture, count, _ = open_video(path)
    capture.release()
    return count


def _absolute(job: VideoJob) -> VideoJob:
    """Paths the workers can use whatever their working folder."""
    return VideoJob(job.video.absolute(), job.csv_path.absolute(), job.out_path.absolute() if job.out_path else None)


def _start_ray(workers: int | None, address: str | None) -> None:
    """A local instance with `workers` CPUs (the machine's by default), each worker's networks using its share of
    the cores; or the cluster at `address`, one core per video."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    cpus = os.cpu_count() or 1
    threads = 1 if address else max(1, cpus // (workers or cpus))
    runtime_env = {"env_vars": {THREADS_ENV: str(threads)}}
    if address:
        ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING, runtime_env=runtime_env)
    else:
        ray.init(address="local", num_cpus=workers or cpus, include_dashboard=False, runtime_env=runtime_env,
                 object_store_memory=LOCAL_OBJECT_STORE_BYTES, log_to_driver=False, logging_level=logging.WARNING)


def run_video_jobs(
    jobs: list[VideoJob],
    options: VideoOptions,
    workers: int | None = None,
    address: str | None = None,
    progress: Callable[[JobProgress], None] | None = None,
) -> list[VideoOutcome]:
    """Every job's video on Ray (a job already done is skipped), at most `workers` at a time (default: a local
    instance's CPU count; a cluster's free CPUs); outcomes in the jobs' order."""
    outcomes: dict[int, VideoOutcome] = {i: VideoOutcome(job.video, "skipped") for i, job in enumerate(jobs) if job.done}
    totals: dict[int, int] = {}
    for index, job in enumerate(jobs):
        if index not in outcomes:
            try:
                totals[index] = _frame_count(job.video)
            except VideoFileError as exc:
                outcomes[index] = VideoOutcome(job.video, "failed", error=str(exc))
    todo = [i for i in range(len(jobs)) if i not in outcomes]
    if options.model:
        options = dataclasses.replace(options, model=str(Path(options.model).absolute()))
    if not todo:
        return [outcomes[i] for i in range(len(jobs))]
    _start_ray(workers, address)
    try:
        counter = _FrameCounter.remote()
        limit = workers or len(todo)
        waiting = list(todo)
        running: dict[ray.ObjectRef, int] = {}
        shown = None
        while waiting or running:
            while waiting and len(running) < limit:
                index = waiting.pop(0)
                running[_video_task.remote(index, _absolute(jobs[index]), options, counter)] = index
            finished, _ = ray.wait(list(running), num_returns=1, timeout=POLL_S)
            for ref in finished:
                index = running.pop(ref)
                outcomes[index] = dataclasses.replace(_outcome(ref), video=jobs[index].video)
            now = JobProgress(_frames_done(totals, outcomes, ray.get(counter.by_video.remote())),
                              sum(totals.values()), len(outcomes), len(jobs),
                              sum(o.state == "failed" for o in outcomes.values()))
            if progress is not None and now != shown:
                progress(now)
                shown = now
    finally:
        ray.shutdown()
    return [outcomes[i] for i in range(len(jobs))]


def _frames_done(totals: dict[int, int], outcomes: dict[int, VideoOutcome], reported: dict[int, int]) -> int:
    """Frames done over the videos that run: a finished video's from its outcome, a running one's as its worker
    last reported. (A worker's last report may reach the counter after its task's result reaches the driver.)"""
    return sum(outcomes[i].frames if i in outcomes else reported.get(i, 0) for i in totals)


def _outcome(ref) -> VideoOutcome:
    try:
        return ray.get(ref)
    except ray.exceptions.RayError as exc:  # the worker died (a crash in a decoder, out of memory) or was lost
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return VideoOutcome(Path(), "failed", error=f"its worker process was lost ({reason})")
