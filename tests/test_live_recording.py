"""The live stream's record (fer_realtime.video.recording, LiveSession.recording), the timeline summaries, the
smoothing settings and the "uncertain" bar of the frame processor."""

import csv
import io
import threading

import numpy as np
import pytest

from fer_realtime import EMOTIONS, EmotionRecognizer
from fer_realtime.app.live import LiveSession
from fer_realtime.core.model_file import default_model_path
from fer_realtime.inference.results import FaceResult
from fer_realtime.video.processor import SMOOTHING, VideoProcessor
from fer_realtime.video.recording import ROW_BYTES, FaceRecording
from fer_realtime.video.timeline import label_shares_per_track, shares_by_time, timeline_columns
from helpers import astronaut_bgr


def face(track: int, label: str, confidence: float = 0.6, uncertain: bool = False) -> FaceResult:
    rest = (1 - confidence) / (len(EMOTIONS) - 1)
    scores = {c: confidence if c == label else rest for c in EMOTIONS}
    return FaceResult((10 * track, 20, 50, 60), label, confidence, scores, track, uncertain)


def test_the_recording_gives_timeline_rows_and_a_csv_with_the_video_commands_columns():
    recording = FaceRecording(EMOTIONS, max_rows=8192, chunk_rows=4096)
    recording.add([face(1, "happy"), face(2, "sad")], now=100.0)
    recording.add([], now=100.04)
    recording.add([face(1, "happy", 0.3, uncertain=True)], now=100.08)
    rows = recording.rows()
    assert [(r["frame"], r["track_id"], r["label"]) for r in rows] == [(0, 1, "happy"), (0, 2, "sad"),
                                                                       (2, 1, "uncertain")]
    assert rows[2]["time_s"] == pytest.approx(0.08) and rows[0]["x"] == 10 and rows[1]["x"] == 20
    assert rows[0]["happy"] == pytest.approx(0.6) and sum(rows[0][c] for c in EMOTIONS) == pytest.approx(1.0, abs=1e-3)
    assert recording.frames == 3 and recording.face_rows == 3 and recording.duration_s == pytest.approx(0.08)
    table = list(csv.DictReader(io.StringIO(recording.csv().decode())))
    assert list(table[0]) == timeline_columns(EMOTIONS) and len(table) == 3
    assert ROW_BYTES == 65 and recording.memory_bytes == 4096 * ROW_BYTES


def test_a_full_recording_drops_its_oldest_rows_and_stays_bounded():
    recording = FaceRecording(EMOTIONS, max_rows=64, chunk_rows=16)
    for frame in range(100):
        recording.add([face(1, "neutral")], now=float(frame))
    rows = recording.rows()
    assert recording.face_rows == len(rows) <= 64 and recording.dropped_rows == 100 - len(rows)
    assert rows[-1]["frame"] == 99 and rows[0]["frame"] == 100 - len(rows)  # the newest are kept, in order
    assert recording.memory_bytes <= 64 * ROW_BYTES


def test_the_recording_is_written_and_read_from_different_threads():
    recording = FaceRecording(EMOTIONS, max_rows=4096 * 4, chunk_rows=4096)

    def write():
        for _ in range(3000):
            recording.add([face(1, "happy"), face(2, "angry")])

    writer = threading.Thread(target=write)
    writer.start()
    while writer.is_alive():
        rows = recording.rows()
        assert all(r["track_id"] in (1, 2) for r in rows[-10:])
    writer.join()
    assert recording.face_rows == 6000


def test_the_timeline_summaries():
    rows = [{"frame": i, "time_s": i / 10, "track_id": 1 + i % 2, "label": "happy" if i < 6 else "sad",
             **{c: float(c == ("happy" if i < 6 else "sad")) for c in EMOTIONS}} for i in range(10)]
    assert label_shares_per_track(rows) == {1: {"happy": 0.6, "sad": 0.4}, 2: {"happy": 0.6, "sad": 0.4}}
    chart = shares_by_time(rows, EMOTIONS, bin_seconds=0.5)
    assert chart["time_s"] == [0.0, 0.5] and chart["happy"] == [1.0, 0.2] and chart["sad"] == [0.0, 0.8]
    assert shares_by_time(rows, EMOTIONS, 0.5, track=2)["happy"] == [1.0, 1 / 3]


@pytest.fixture(scope="module")
def frame():
    image = np.full((480, 640, 3), 90, np.uint8)
    image[:, :512] = astronaut_bgr()[:480]
    return image


def test_a_live_session_records_its_stream_until_a_new_one_starts(frame):
    session = LiveSession()
    session.choose("mediapipe", str(default_model_path()))
    assert session.recording is None and session.snapshot_png() is None
    for _ in range(4):
        session.process(frame)
    first = session.recording
    assert first.frames == 4 and len(first.rows()) == 4 and {r["track_id"] for r in first.rows()} == {1}
    assert session.snapshot_png().startswith(b"\x89PNG")
    session.end_stream()  # STOP: the record stays for the page
    assert session.recording is first
    session.choose("haar", str(default_model_path()))  # a rerun while stopped changes nothing recorded
    assert session.recording is first
    session.process(frame)  # the next stream's first frame starts a new record
    assert session.recording is not first and session.recording.frames == 1


def test_smoothing_and_the_uncertain_bar_apply_to_a_running_stream(frame):
    session = LiveSession()
    session.choose("mediapipe", str(default_model_path()))
    session.process(frame)
    session.choose("mediapipe", str(default_model_path()), smoothing="strong", uncertain_below=1.0)
    session.process(frame)
    update = session.latest()
    assert update.faces[0].uncertain and update.faces[0].shown_label == "uncertain"
    assert session.recording.rows()[-1]["label"] == "uncertain" and session.recording.frames == 2  # same stream
    with pytest.raises(ValueError):
        session.choose("mediapipe", str(default_model_path()), smoothing="very")
    with pytest.raises(ValueError):
        session.choose("mediapipe", str(default_model_path()), uncertain_below=1.5)


def test_smoothing_settings_steady_a_face_whose_readings_flip():
    """Readings of a happy face that say sad every third frame: off shows every flip, strong stays happy."""
    class Alternating:
        """A recognizer stub: one box, happy 0.55 on two frames of three, sad 0.55 on the third."""

        classes = EMOTIONS
        detector = None

        def __init__(self):
            self.frame = 0
            self.engine = self

        def crops(self, frame, boxes, angles=None):
            return np.zeros((len(boxes), 48, 48, 1), np.float32)

        def predict(self, crops):
            self.frame += 1
            label = "sad" if self.frame % 3 == 0 else "happy"
            p = np.full((len(crops), len(EMOTIONS)), 0.45 / 6)
            p[:, EMOTIONS.index(label)] = 0.55
            return p

    class Box:
        name = "stub"

        def detect(self, frame):
            from fer_realtime.faces.detector import Detection

            return [Detection((100, 100, 80, 80), 0.9)]

    changes = {}
    for setting in ("off", "strong"):
        stub = Alternating()
        stub.detector = Box()
        processor = VideoProcessor(stub, smoothing=setting)
        labels = [processor.process(np.zeros((480, 640, 3), np.uint8), draw=False).faces[0].label for _ in range(30)]
        changes[setting] = sum(a != b for a, b in zip(labels, labels[1:]))
    assert changes["off"] == 19 and changes["strong"] == 0
    assert SMOOTHING["off"] == 0.0 and SMOOTHING["light"] < SMOOTHING["normal"] < SMOOTHING["strong"] < 1
    with pytest.raises(ValueError):
        VideoProcessor(EmotionRecognizer(detector="haar"), smoothing=1.5)
