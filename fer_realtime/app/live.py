"""One live stream's state, shared by a page (which picks the detector, model and smoothing and shows figures) and
a frame callback running in another thread (which annotates frames). The callback never talks to the page
directly: it publishes a small typed update per frame into a queue, and the page reads the newest one. The callback
also records every frame's faces (video.recording) and keeps the newest annotated frame, for the page to show and
offer for download after the stream."""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np

from ..inference.batching import shared_batching_classifier
from ..inference.engine import get_engine
from ..inference.remote import model_classifier
from ..inference.results import FaceResult
from ..recognizer import EmotionRecognizer
from ..video.processor import DEFAULT_SMOOTHING, VideoProcessor, checked_uncertain_below, smoothing_weight
from ..video.recording import FaceRecording

logger = logging.getLogger(__name__)


class LiveUpdate(NamedTuple):
    """What the frame callback tells the page about one processed frame."""

    faces: tuple[FaceResult, ...]  # smoothed per track
    fps: float
    ms: float  # median processing time per frame (over the recent frames)
    frames: int
    device: str
    detector: str
    model: str  # the model file's name
    error: str | None = None  # set when the frame could not be processed (the raw frame was sent back)
    ms_p90: float = 0.0  # 90th percentile of the processing time per frame (as `fer-realtime bench` reports)
    model_problem: str = ""  # why the model does not run where it was asked to (a model server unreachable)
    dropped: int = 0  # frames of this stream skipped because a newer one had arrived before they were processed


def default_processor(detector: str, model_path: str) -> VideoProcessor:
    """A recognizer with a detector of its own (detectors are not thread-safe) and the process's shared batching
    classifier for the model: the faces of all streams' frames that arrive together go through one model call,
    on the model server when $FER_REALTIME_SERVE_URL is set."""
    classifier = shared_batching_classifier(model_classifier(get_engine(model_path)))
    return EmotionRecognizer(detector=detector, model=classifier).video_processor()


class LiveSession:
    """Thread-safe holder shared by the page (its script thread) and the stream's frame callback (a worker thread).

    The page sets the wanted detector and model with `choose`; the callback builds its VideoProcessor on the
    first frame and again whenever that choice changes or a new stream starts, so switching applies to the running
    stream. `make_processor(detector, model_path)` builds one (default: `default_processor`).
    """

    def __init__(self, make_processor: Callable[[str, str], VideoProcessor] = default_processor,
                 queue_size: int = 2) -> None:
        self._make_processor = make_processor
        self._lock = threading.Lock()
        self._process_lock = threading.Lock()  # one frame at a time through the processor
        self._choice: tuple[str, str] | None = None
        self._options: tuple[str | float, float | None] = (DEFAULT_SMOOTHING, None)
        self._generation = 0  # bumped when a stream ends: the next stream gets a fresh processor
        self._processor: VideoProcessor | None = None
        self._built_for: tuple | None = None
        self._failed: tuple[tuple, str] | None = None
        self._logged_error: str | None = None  # log each distinct failure's traceback once, not every frame
        self.updates: queue.Queue[LiveUpdate] = queue.Queue(maxsize=queue_size)
        self._recording: FaceRecording | None = None
        self._recording_generation = -1
        self._snapshot: np.ndarray | None = None
        self._dropped = 0  # frames of the current stream skipped behind a newer one

    def choose(self, detector: str, model_path: str, smoothing: str | float = DEFAULT_SMOOTHING,
               uncertain_below: float | None = None) -> None:
        """What the next frames use: the detector and model (a change rebuilds the processor), the smoothing and
        the uncertainty bar (applied to the running processor: faces keep their tracks)."""
        smoothing_weight(smoothing), checked_uncertain_below(uncertain_below)  # refuse bad values here, not per frame
        with self._lock:
            self._choice = (detector, model_path)
            self._options = (smoothing, uncertain_below)

    @property
    def recording(self) -> FaceRecording | None:
        """The faces of the current stream, or of the last one until a new stream sends its first frame."""
        return self._recording

    def snapshot_png(self) -> bytes | None:
        """The newest annotated frame as PNG bytes, or None before the first frame."""
        image = self._snapshot
        if image is None:
            return None
        ok, encoded = cv2.imencode(".png", image)
        return encoded.tobytes() if ok else None

    def end_stream(self) -> None:
        with self._lock:
            self._generation += 1
            self._dropped = 0
        self.latest()  # drop what is left of the old stream

    def publish(self, update: LiveUpdate) -> None:
        while True:
            try:
                self.updates.put_nowait(update)
                return
            except queue.Full:
                try:
                    self.updates.get_nowait()  # drop the oldest; the page only shows the newest
                except queue.Empty:
                    pass

    def latest(self) -> LiveUpdate | None:
        """The newest update since the last call (the older ones are dropped), or None."""
        update = None
        while True:
            try:
                update = self.updates.get_nowait()
            except queue.Empty:
                return update

    def _processor_for_frame(self) -> tuple[VideoProcessor, tuple[str, str]]:
        with self._lock:
            choice, generation, options = self._choice, self._generation, self._options
        if choice is None:
            raise RuntimeError("no detector and model chosen yet")
        wanted = (choice, generation)
        if self._processor is None or self._built_for != wanted:
            if self._failed is not None and self._failed[0] == wanted:
                raise RuntimeError(self._failed[1])
            old, self._processor, self._built_for = self._processor, None, None
            if old is not None:
                old.recognizer.close()
            try:
                self._processor = self._make_processor(*choice)
            except Exception as exc:
                self._failed = (wanted, str(exc) or type(exc).__name__)
                raise
            self._built_for, self._failed = wanted, None
        self._processor.set_options(*options)
        if self._recording_generation != generation:  # a new stream: a new recording (kept until the next one)
            self._recording = FaceRecording(self._processor.recognizer.classes)
            self._recording_generation = generation
        return self._processor, choice

    def process_newest(self, image_bgr: np.ndarray, skipped: int) -> np.ndarray:
        """The newest of the frames that queued up while the last one was processed; the `skipped` older ones are
        counted as dropped: a stream that falls behind skips frames instead of falling further behind."""
        if skipped:
            with self._lock:
                self._dropped += skipped
        return self.process(image_bgr)

    def process(self, image_bgr: np.ndarray) -> np.ndarray:
        """The frame callback's body: the annotated frame, and an update published for the page. A frame that
        cannot be processed comes back as it was, and the update says why, so the stream keeps going."""
        with self._process_lock:
            try:
                processor, (detector, model_path) = self._processor_for_frame()
                result = processor.process(image_bgr)
                stats = processor.stats()
                self._recording.add(result.faces)
                self._snapshot = result.image
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}"
                if error != self._logged_error:
                    logger.exception("live frame processing failed")
                    self._logged_error = error
                self.publish(LiveUpdate((), 0.0, 0.0, 0, "", "", "", error))
                return image_bgr
            self._logged_error = None
        self.publish(
            LiveUpdate(tuple(result.faces), stats.fps, stats.ms_median, stats.frames,
                       processor.recognizer.device, detector, Path(model_path).name, ms_p90=stats.ms_p90,
                       dropped=self._dropped,
                       model_problem=getattr(processor.recognizer.engine, "problem", ""))
        )
        return result.image
