"""One model call for the faces of many streams: a shared classifier that batches requests dynamically.

Each stream's thread calls `predict` with its frame's faces and waits. A single worker thread takes the first
waiting request, then gathers the others that arrive within `max_wait_ms` (up to `max_faces` faces), runs the
model once on all of them and hands each stream its own rows back, the way Triton's and Ray Serve's dynamic
batchers work. It does not wait when every stream seen recently has already sent its request, so a lone stream
pays no wait at all.
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass

import numpy as np

# A stream counts as active for this long after its last request: the batcher waits for the requests of active
# streams only (a stream that stopped does not make the others wait).
ACTIVE_STREAM_S = 0.5


@dataclass(frozen=True)
class BatchingOptions:
    """`max_wait_ms`: how long the first request of a batch waits for others; `max_faces`: faces per model call
    (a single request with more goes through alone)."""

    max_wait_ms: float = 4.0
    max_faces: int = 32

    def __post_init__(self):
        if not 0.0 <= self.max_wait_ms <= 1000.0:
            raise ValueError(f"max_wait_ms must be in [0, 1000], not {self.max_wait_ms}")
        if self.max_faces < 1:
            raise ValueError(f"max_faces must be at least 1, not {self.max_faces}")


class _Request:
    __slots__ = ("batch", "stream", "done", "result", "error")

    def __init__(self, batch: np.ndarray, stream: int):
        self.batch, self.stream = batch, stream
        self.done = threading.Event()
        self.result: np.ndarray | None = None
        self.error: BaseException | None = None


@dataclass(frozen=True)
class BatchingStats:
    calls: int  # model calls made
    requests: int  # predict calls served
    faces: int

    @property
    def faces_per_call(self) -> float:
        return self.faces / self.calls if self.calls else 0.0


class BatchingClassifier:
    """Wraps a classifier (anything with `predict`, `metadata` and `device`, such as an InferenceEngine) so that
    concurrent `predict` calls from different threads share model calls. Results are those of the wrapped
    classifier, each caller getting the rows of its own batch in order."""

    def __init__(self, classifier, options: BatchingOptions | None = None):
        self.classifier = classifier
        self.options = options or BatchingOptions()
        self._requests: queue.Queue[_Request | None] = queue.Queue()
        self._last_seen: dict[int, float] = {}
        self._counts = [0, 0, 0]  # calls, requests, faces
        self._closed = False
        self._carried: _Request | None = None
        self._worker = threading.Thread(target=self._serve, name="fer-batching-classifier", daemon=True)
        self._worker.start()

    @property
    def metadata(self):
        return self.classifier.metadata

    @property
    def device(self) -> str:
        return self.classifier.device

    @property
    def runtime(self) -> str:
        return f"{getattr(self.classifier, 'runtime', 'model')}, batched across streams"

    @property
    def problem(self) -> str:
        """Why the wrapped classifier is not running as asked (a model server's client on its fallback), or ""."""
        return getattr(self.classifier, "problem", "")

    def warm_up(self) -> None:
        self.classifier.warm_up()

    def predict(self, batch: np.ndarray, stream: int | None = None) -> np.ndarray:
        """Class probabilities (N, K) for `batch`, computed in a model call shared with other streams' requests.
        `stream` identifies the caller (default: its thread)."""
        if self._closed:
            raise RuntimeError("the batching classifier is closed")
        if batch.shape[0] == 0:
            return self.classifier.predict(batch)
        request = _Request(batch, threading.get_ident() if stream is None else stream)
        self._requests.put(request)
        request.done.wait()
        if request.error is not None:
            raise request.error
        return request.result

    def stats(self) -> BatchingStats:
        return BatchingStats(*self._counts)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._requests.put(None)
            self._worker.join(timeout=5.0)

    def _active_streams(self, now: float) -> int:
        for stream in [s for s, seen in self._last_seen.items() if now - seen > ACTIVE_STREAM_S]:
            del self._last_seen[stream]
        return len(self._last_seen)

    def _gather(self, first: _Request) -> list[_Request]:
        now = time.perf_counter()
        self._last_seen[first.stream] = now
        expected = self._active_streams(now)
        batch, streams, faces = [first], {first.stream}, first.batch.shape[0]
        deadline = now + self.options.max_wait_ms / 1000.0
        while faces < self.options.max_faces and len(streams) < expected:
            try:
                request = self._requests.get(timeout=max(0.0, deadline - time.perf_counter()))
            except queue.Empty:
                break
            if request is None:
                self._requests.put(None)  # close after this batch
                break
            if faces + request.batch.shape[0] > self.options.max_faces:
                self._carried = request  # it would overflow this batch: it starts the next one
                break
            self._last_seen[request.stream] = time.perf_counter()
            batch.append(request)
            streams.add(request.stream)
            faces += request.batch.shape[0]
        return batch

    def _serve(self) -> None:
        while True:
            first, self._carried = self._carried or self._requests.get(), None
            if first is None:
                break
            self._run(self._gather(first))
        while True:  # closed: fail whoever is still waiting
            try:
                request = self._requests.get_nowait()
            except queue.Empty:
                return
            if request is not None:
                request.error = RuntimeError("the batching classifier is closed")
                request.done.set()

    def _run(self, requests: list[_Request]) -> None:
        try:
            sizes = [r.batch.shape[0] for r in requests]
            merged = requests[0].batch if len(requests) == 1 else np.concatenate([r.batch for r in requests])
            probabilities = self.classifier.predict(merged)
            for request, rows in zip(requests, np.split(probabilities, np.cumsum(sizes)[:-1])):
                request.result = rows
        except BaseException as exc:  # every waiting caller gets the model's error
            for request in requests:
                request.error = exc
        finally:
            self._counts[0] += 1
            self._counts[1] += len(requests)
            self._counts[2] += sum(r.batch.shape[0] for r in requests)
            for request in requests:
                request.done.set()


_SHARED: dict[int, tuple[object, BatchingClassifier]] = {}
_SHARED_LOCK = threading.Lock()


def shared_batching_classifier(classifier, options: BatchingOptions | None = None) -> BatchingClassifier:
    """The process's one BatchingClassifier for `classifier` (made on first use): every live stream of the
    process that uses this model sends its faces through it."""
    with _SHARED_LOCK:
        entry = _SHARED.get(id(classifier))
        if entry is None or entry[0] is not classifier:
            entry = (classifier, BatchingClassifier(classifier, options))
            _SHARED[id(classifier)] = entry
        return entry[1]
