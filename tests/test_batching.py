"""The shared batching classifier: each stream gets its own faces' results, in order, from shared model calls;
streams that fall behind drop frames instead of queueing them; `bench-streams --json`."""

import json
import threading
import time

import numpy as np
import pytest

from fer_realtime.cli.main import main
from fer_realtime.core.labels import EMOTIONS
from fer_realtime.evaluation.streams import FrameSlot, run_streams
from fer_realtime.faces.detector import Detection
from fer_realtime.inference.batching import BatchingClassifier, BatchingOptions, shared_batching_classifier
from helpers import write_class_folders


class Recording:
    """A classifier whose row i says which input it came from (the input's first pixel), taking `cost_s` per call
    whatever the batch size (one call at a time, like a model on a busy device)."""

    metadata = None
    device = "test"

    def __init__(self, cost_s: float = 0.0):
        self.cost_s = cost_s
        self.calls: list[int] = []
        self._lock = threading.Lock()

    def predict(self, batch):
        with self._lock:
            self.calls.append(len(batch))
            time.sleep(self.cost_s)
            out = np.zeros((len(batch), len(EMOTIONS)), np.float32)
            out[:, 0] = batch[:, 0, 0, 0]
            return out

    def warm_up(self):
        pass


def test_each_stream_gets_its_own_results_in_order_from_shared_calls():
    model = Recording(cost_s=0.002)
    batcher = BatchingClassifier(model, BatchingOptions(max_wait_ms=5.0, max_faces=8))
    errors, rng = [], np.random.default_rng(0)
    sizes = rng.integers(1, 4, size=(6, 40))  # 6 streams, 40 frames each, 1-3 faces per frame

    def stream(index):
        for frame, size in enumerate(sizes[index]):
            markers = index * 10_000 + frame * 10 + np.arange(size)
            batch = np.broadcast_to(markers[:, None, None, None], (size, 4, 4, 1)).astype(np.float32)
            got = batcher.predict(batch)
            if got.shape != (size, len(EMOTIONS)) or not np.array_equal(got[:, 0], markers.astype(np.float32)):
                errors.append((index, frame, got[:, 0].tolist(), markers.tolist()))

    threads = [threading.Thread(target=stream, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    batcher.close()
    assert not errors
    stats = batcher.stats()
    assert stats.requests == sizes.size and stats.faces == sizes.sum() == sum(model.calls)
    assert stats.calls == len(model.calls) < stats.requests  # requests shared calls
    assert max(model.calls) <= 8 and stats.faces_per_call > 1.5


def test_a_lone_stream_does_not_wait_for_others():
    batcher = BatchingClassifier(Recording(), BatchingOptions(max_wait_ms=1000.0))
    start = time.perf_counter()
    for _ in range(10):
        batcher.predict(np.ones((1, 4, 4, 1), np.float32))
    elapsed = time.perf_counter() - start
    batcher.close()
    assert elapsed < 5.0  # waiting for a second stream would take 1 s per call


def test_model_errors_reach_every_waiting_caller_and_closing_fails_new_calls():
    class Broken(Recording):
        def predict(self, batch):
            raise ValueError("bad batch")

    batcher = BatchingClassifier(Broken())
    with pytest.raises(ValueError, match="bad batch"):
        batcher.predict(np.ones((2, 4, 4, 1), np.float32))
    batcher.close()
    with pytest.raises(RuntimeError, match="closed"):
        batcher.predict(np.ones((1, 4, 4, 1), np.float32))


def test_batched_results_equal_the_engines():
    from fer_realtime.faces.crops import crop_faces
    from fer_realtime.inference.engine import get_engine
    from browser_support import portrait_frame

    engine = get_engine(None)
    frame = portrait_frame()
    crops = crop_faces(frame, [(170, 40, 120, 120), (150, 30, 160, 160), (190, 60, 90, 90)], engine.metadata)
    batcher = shared_batching_classifier(engine)
    assert shared_batching_classifier(engine) is batcher
    results = {}

    def stream(i):
        results[i] = batcher.predict(crops[i : i + 1 + i % 2])

    threads = [threading.Thread(target=stream, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    for i in range(2):
        np.testing.assert_allclose(results[i], engine.predict(crops[i : i + 1 + i % 2]), atol=1e-4)


def test_a_new_frame_replaces_one_not_yet_taken():
    slot = FrameSlot()
    for i in range(3):
        slot.put(i, float(i))
    assert slot.take(timeout=0.1) == (2, 2.0) and slot.dropped == 2
    assert slot.take(timeout=0.01) is None


class SlowModelAnalyzer:
    """One face per frame; the model costs 25 ms a call whatever its size (shared by all streams)."""

    classes = EMOTIONS

    def __init__(self, model):
        self.engine = model
        self.detector = self

    def detect(self, frame):
        return [Detection((100, 100, 80, 80), 0.9)]

    def crops(self, frame, boxes, angles=None):
        return np.zeros((len(boxes), 4, 4, 1), np.float32)


def test_streams_that_fall_behind_drop_frames_and_latency_stays_bounded(tmp_path):
    from fer_realtime.evaluation.benchmark import make_sequence

    frames = make_sequence([np.full((48, 48), 128, np.uint8)], 1, 10)
    model = Recording(cost_s=0.025)
    rows = {batched: run_streams([SlowModelAnalyzer(model) for _ in range(4)], frames, batched, seconds=1.5,
                                 warmup_s=0.5, options=BatchingOptions(max_wait_ms=10.0))
            for batched in (False, True)}
    per_stream, batched = rows[False], rows[True]
    # 4 streams at 30 frames/s need 120 model calls a second; one at a time, 25 ms each, they get 40
    assert per_stream.dropped > 0 and per_stream.fps_per_stream < 20
    assert per_stream.p90_ms < 4 * 25 + 34 + 60  # the newest frame waits at most for the others' calls
    assert batched.faces_per_call > 2 and batched.faces_per_s > 1.5 * per_stream.faces_per_s
    assert batched.p90_ms <= per_stream.p90_ms


def test_bench_streams_json(tmp_path, capsys):
    faces = write_class_folders(tmp_path / "faces", {"happy": 3, "sad": 3}, size=(48, 48))
    assert main(["bench-streams", "--data", str(faces), "--streams", "1,2", "--seconds", "0.6", "--warmup", "0.3",
                 "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["streams"], r["batched"]) for r in rows] == [(1, False), (1, True), (2, False), (2, True)]
    for row in rows:
        assert {"streams", "batched", "faces_per_s", "fps_per_stream", "p50_ms", "p90_ms", "dropped"} <= set(row)
        assert row["fps_per_stream"] > 0 and 0 < row["p50_ms"] <= row["p90_ms"] and row["dropped"] >= 0
    assert main(["bench-streams", "--streams", "0,2"]) == 2
    assert main(["bench-streams", "--max-wait-ms", "-1"]) == 2
