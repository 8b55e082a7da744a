"""A short soak of the live frame processor (benchmarks/soak_stream.py runs the long one): faces come and go
for a few hundred frames; tracks must be freed when faces leave and never outnumber the faces present plus
those that left within the tracker's `max_missed` frames. A stub detector returns the scene's true boxes."""

import gc
import importlib.util
import io
import sys
from pathlib import Path

import pytest

from fer_realtime import EmotionRecognizer
from fer_realtime.core.model_file import LoadedModel, ModelMetadata
from fer_realtime.faces.detector import Detection
from helpers import tiny_model

ROOT = Path(__file__).resolve().parents[1]
MAX_MISSED = 5


def _soak_module():
    spec = importlib.util.spec_from_file_location("soak_stream", ROOT / "benchmarks" / "soak_stream.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


soak = _soak_module()


class SceneDetector:
    """Finds exactly the faces the scene pasted into the frame it just made."""

    def __init__(self):
        self.boxes = []
        self.calls = 0

    def detect(self, frame):
        self.calls += 1
        return [Detection(box=box, score=1.0) for box in self.boxes]

    def close(self):
        pass


class SceneStream:
    """Scene frames whose boxes the stub detector reports (what run_soak and the tests feed the processor)."""

    def __init__(self, scene, detector):
        self.scene, self.detector = scene, detector
        self.left = []

    def step(self):
        frame, boxes = self.scene.step()
        self.detector.boxes = boxes
        self.left = self.scene.left
        return frame, boxes


@pytest.fixture(scope="module")
def recognizer():
    loaded = LoadedModel(model=tiny_model(), metadata=ModelMetadata(), path=Path("tiny.keras"))
    return EmotionRecognizer(detector=SceneDetector(), model=loaded)


@pytest.fixture(scope="module")
def crops():
    crops, _ = soak.load_face_crops(per_class=2)
    return crops


def make_stream(recognizer, crops, seed=0, **scene_options):
    # Faces stay away longer than a departed track may live, so a newcomer never inherits an old track.
    options = {"stay_range": (10, 60), "away_range": (MAX_MISSED + 1, 40), **scene_options}
    return SceneStream(soak.Scene(crops, seed=seed, **options), recognizer.detector)


def test_tracks_are_freed_when_faces_leave_and_never_pile_up(recognizer, crops):
    processor = recognizer.video_processor(max_missed=MAX_MISSED)
    stream = make_stream(recognizer, crops, seed=1)
    track_of: dict[int, int] = {}  # scene actor -> its track id
    left_at: dict[int, int] = {}  # scene actor -> frame it left
    max_present = 0
    entered = 0
    for frame_index in range(400):
        frame, boxes = stream.step()
        result = processor.process(frame)
        present = stream.scene.present()
        max_present = max(max_present, len(present))
        for actor_id in stream.left:
            left_at[actor_id] = frame_index
        # every face present has a track, and keeps the same one while it stays; departed faces may be carried
        # (coasted) for the processor's coast_frames after they leave, after the faces present
        assert [f.box for f in result.faces][: len(boxes)] == boxes
        assert len(result.faces) - len(boxes) <= len([a for a, t in left_at.items() if frame_index - t < processor.coast_frames])
        for actor, face in zip(present, result.faces):
            if actor.actor_id not in track_of:
                entered += 1
                assert face.track_id not in track_of.values()  # a newcomer gets a new id
            assert track_of.setdefault(actor.actor_id, face.track_id) == face.track_id
        live = {t.track_id for t in processor.tracker.tracks}
        recent = [a for a, t in left_at.items() if frame_index - t < MAX_MISSED]
        gone = [a for a, t in left_at.items() if frame_index - t >= MAX_MISSED]
        # the tracks are exactly the faces present plus those that left within max_missed frames
        assert len(processor.tracker.tracks) == len(present) + len(recent)
        assert {track_of[a] for a in recent} <= live
        assert not {track_of[a] for a in gone} & live
    assert entered > 20 and len(left_at) > 15 and max_present >= 4  # the scene really churned

    recognizer.detector.boxes = []  # everyone leaves: tracks live max_missed frames more, then nothing is left
    for _ in range(MAX_MISSED):
        processor.process(stream.scene.background)
    assert len(processor.tracker.tracks) == len(stream.scene.present())  # those who left earlier are gone
    assert all(t.missed == MAX_MISSED for t in processor.tracker.tracks)
    processor.process(stream.scene.background)
    assert processor.tracker.tracks == []


def test_no_python_objects_accumulate_over_a_stream(recognizer, crops):
    processor = recognizer.video_processor(max_missed=MAX_MISSED)
    stream = make_stream(recognizer, crops, seed=2)

    def run(frames):
        for _ in range(frames):
            frame, _ = stream.step()
            processor.process(frame)

    run(150)  # warm-up: traced model call, caches
    gc.collect()
    before = len(gc.get_objects())
    run(400)
    gc.collect()
    after = len(gc.get_objects())
    # steady state: within a few objects; keeping each frame's face list alone would add over 1,500
    assert after - before < 300, f"{after - before} more Python objects after 400 frames"


def test_soak_script_reports_memory_lines_and_a_verdict(recognizer, crops):
    processor = recognizer.video_processor(max_missed=MAX_MISSED)
    stream = make_stream(recognizer, crops, seed=3)
    out = io.StringIO()
    figures = soak.run_soak(processor, stream, frames=200, every=50, warmup=100, out=out)
    lines = out.getvalue().splitlines()
    assert lines[0].split() == ["frame", "rss_MiB", "tracks", "faces", "found", "py_objects", "ms_p50"]
    rows = [line.split() for line in lines[1:]]
    assert [int(r[0]) for r in rows] == [50, 100, 150, 200]
    assert all(float(r[1]) > 10 and int(r[5]) > 1000 for r in rows)
    assert figures["warmup"] == 100 and figures["rss_end"] > 10
    assert figures["max_tracks"] <= figures["max_faces"] + 6  # at most one departed face per slot in the window
    assert figures["detected"] == figures["present"] > 0  # the stub finds every face


def test_rss_reading_matches_proc_status():
    rss = soak.rss_mib()
    assert 10 < rss < 1024 * 1024
