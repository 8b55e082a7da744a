"""Many live streams in one process, simulated: where a frame's time goes, and what sharing the model call buys.

A camera clock puts a new 640x480 frame into every stream's slot 30 times a second (the faces of benchmark.py's
moving clip, each stream at its own point of it). Each stream has a worker thread that takes the newest frame
from its slot and runs the live page's frame path on it: the frame as WebRTC hands it over (YUV 4:2:0) turned
into BGR, the video processor (detection, crops, model call, tracking, drawing), the annotated frame turned back
into YUV for the encoder. A frame replaced in its slot before its worker took it is dropped, as the page drops
frames it cannot keep up with, so latency stays bounded. With `batched`, the streams share one
BatchingClassifier (one model call for the faces of all streams' frames that arrive together); without, each
stream calls the model itself.

Per row: faces classified per second (all streams), frames per second per stream, the latency of a frame from
its arrival to its annotated result (p50, p90 ms), frames dropped, and the mean ms of each stage.
"""

from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from ..inference.batching import BatchingClassifier, BatchingOptions
from ..recognizer import EmotionRecognizer
from ..video.processor import FrameTimings, VideoProcessor
from .benchmark import BenchFrame, load_face_crops, make_sequence

CAMERA_FPS = 30.0
STAGES = ("convert",) + FrameTimings._fields


@dataclass(frozen=True)
class StreamsRow:
    streams: int
    batched: bool
    faces_per_s: float  # faces classified per second, all streams together
    fps_per_stream: float  # frames processed per second, per stream
    p50_ms: float  # a frame's latency: from its arrival in the slot to its annotated result
    p90_ms: float
    dropped: int  # frames replaced in their slot before their stream took them
    frames: int  # frames processed in the measured time
    stage_ms: dict = field(default_factory=dict)  # mean ms per processed frame of each stage (STAGES)
    faces_per_call: float = 0.0  # batched: faces per model call

    def as_dict(self) -> dict:
        return asdict(self)


class FrameSlot:
    """The newest frame of one stream: a new frame replaces one not yet taken (and counts as dropped)."""

    def __init__(self):
        self._cond = threading.Condition()
        self._frame = None
        self.dropped = 0

    def put(self, frame, arrived: float) -> None:
        with self._cond:
            if self._frame is not None:
                self.dropped += 1
            self._frame = (frame, arrived)
            self._cond.notify()

    def take(self, timeout: float):
        with self._cond:
            if self._frame is None:
                self._cond.wait(timeout)
            frame, self._frame = self._frame, None
            return frame


def _yuv_frames(frames: list[BenchFrame]) -> list:
    """The clip as WebRTC's decoder hands frames to the page: av.VideoFrame in YUV 4:2:0."""
    import av

    return [av.VideoFrame.from_ndarray(f.image, format="bgr24").reformat(format="yuv420p") for f in frames]


class _Stream:
    def __init__(self, processor, clip: list, offset: int):
        self.processor, self.clip, self.offset = processor, clip, offset
        self.slot = FrameSlot()
        self.latency_ms: list[float] = []
        self.stage_sums = np.zeros(len(STAGES))
        self.frames = self.faces = 0
        self.measuring = False

    def work(self, stop: threading.Event) -> None:
        import av

        while not stop.is_set():
            taken = self.slot.take(timeout=0.1)
            if taken is None:
                continue
            frame, arrived = taken
            start = time.perf_counter()
            image = frame.to_ndarray(format="bgr24")
            convert = time.perf_counter() - start
            result = self.processor.process(image)
            start = time.perf_counter()
            av.VideoFrame.from_ndarray(result.image, format="bgr24").reformat(format="yuv420p")
            done = time.perf_counter()
            if self.measuring:
                convert += done - start
                self.latency_ms.append((done - arrived) * 1000.0)
                self.stage_sums += (convert * 1000.0, *result.timings)
                self.frames += 1
                self.faces += len(result.faces)


def run_streams(analyzers: list, frames: list[BenchFrame], batched: bool, seconds: float = 10.0,
                warmup_s: float = 2.0, options: BatchingOptions | None = None) -> StreamsRow:
    """One row: len(analyzers) streams (one FaceAnalyzer each, detectors are not shared; their engines the same),
    for `seconds` after `warmup_s`."""
    engine = analyzers[0].engine
    batcher = BatchingClassifier(engine, options) if batched else None
    clip = _yuv_frames(frames)
    streams = []
    for i, analyzer in enumerate(analyzers):
        analyzer.engine = batcher or engine
        streams.append(_Stream(VideoProcessor(analyzer), clip, offset=i * len(clip) // len(analyzers)))
    stop = threading.Event()
    workers = [threading.Thread(target=s.work, args=(stop,), daemon=True) for s in streams]
    for worker in workers:
        worker.start()
    try:
        started = time.perf_counter()
        tick, measured_from, drops_before, calls_before = 0, None, 0, None
        while True:
            now = time.perf_counter()
            if measured_from is None and now - started >= warmup_s:
                measured_from = now
                drops_before = sum(s.slot.dropped for s in streams)
                calls_before = batcher.stats() if batcher else None
                for s in streams:
                    s.measuring = True
            if measured_from is not None and now - measured_from >= seconds:
                break
            for s in streams:
                s.slot.put(s.clip[(s.offset + tick) % len(s.clip)], time.perf_counter())
            tick += 1
            time.sleep(max(0.0, started + tick / CAMERA_FPS - time.perf_counter()))
        elapsed = time.perf_counter() - measured_from
        for s in streams:
            s.measuring = False
        dropped = sum(s.slot.dropped for s in streams) - drops_before
        after = batcher.stats() if batcher else None
    finally:
        stop.set()
        for worker in workers:
            worker.join(timeout=10.0)
        for analyzer in analyzers:
            analyzer.engine = engine
        if batcher is not None:
            batcher.close()
    frames_done = sum(s.frames for s in streams)
    latency = np.concatenate([s.latency_ms for s in streams]) if frames_done else np.zeros(1)
    stage_ms = sum(s.stage_sums for s in streams) / max(1, frames_done)
    per_call = 0.0
    if after is not None and after.calls > calls_before.calls:
        per_call = (after.faces - calls_before.faces) / (after.calls - calls_before.calls)
    return StreamsRow(
        streams=len(streams), batched=batched, faces_per_s=sum(s.faces for s in streams) / elapsed,
        fps_per_stream=frames_done / elapsed / len(streams),
        p50_ms=float(np.percentile(latency, 50)), p90_ms=float(np.percentile(latency, 90)), dropped=int(dropped),
        frames=frames_done, stage_ms={name: round(float(v), 3) for name, v in zip(STAGES, stage_ms)},
        faces_per_call=round(per_call, 2),
    )


def bench_streams(data_dir, stream_counts=(1, 2, 4, 8), faces: int = 1, detector: str = "mediapipe", model=None,
                  seconds: float = 10.0, warmup_s: float = 2.0, options: BatchingOptions | None = None,
                  modes=(False, True), progress=None) -> list[StreamsRow]:
    """Rows for every stream count, per-stream model calls and batched (side by side, so both meet the same load),
    on a 300-frame clip of `faces` faces from the class folders of `data_dir`."""
    frames = make_sequence(load_face_crops(data_dir), faces, 300, seed=faces)
    analyzers = [EmotionRecognizer(detector=detector, model=model) for _ in range(max(stream_counts))]
    rows = []
    try:
        for count in stream_counts:
            for batched in modes:
                if progress:
                    progress(f"{count} stream(s), {'batched' if batched else 'per-stream calls'}")
                rows.append(run_streams(analyzers[:count], frames, batched, seconds, warmup_s, options))
    finally:
        for analyzer in analyzers:
            analyzer.close()
    return rows


def format_streams(rows: list[StreamsRow]) -> str:
    lines = [f"{'streams':>7} {'batched':>7} {'faces/s':>8} {'fps/stream':>10} {'p50 ms':>7} {'p90 ms':>7} "
             f"{'dropped':>7} {'faces/call':>10}  mean ms per frame: " + " ".join(f"{s:>7}" for s in STAGES)]
    for r in rows:
        per_call = f"{r.faces_per_call:>10.1f}" if r.batched else f"{'-':>10}"
        lines.append(f"{r.streams:>7} {str(r.batched).lower():>7} {r.faces_per_s:>8.1f} {r.fps_per_stream:>10.1f} "
                     f"{r.p50_ms:>7.1f} {r.p90_ms:>7.1f} {r.dropped:>7} {per_call}  {'':19}"
                     + " ".join(f"{r.stage_ms[s]:>7.2f}" for s in STAGES))
    return "\n".join(lines)


def streams_as_json(rows: list[StreamsRow]) -> list[dict]:
    """The rows as `bench-streams --json` prints them."""
    return [{"streams": r.streams, "batched": r.batched, "faces_per_s": round(r.faces_per_s, 2),
             "fps_per_stream": round(r.fps_per_stream, 2), "p50_ms": round(r.p50_ms, 2), "p90_ms": round(r.p90_ms, 2),
             "dropped": r.dropped, "frames": r.frames, "faces_per_call": r.faces_per_call, "stage_ms": r.stage_ms}
            for r in rows]
