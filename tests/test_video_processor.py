"""VideoProcessor: detection every k frames, boxes carried through single missed detections, tracks dropped."""

import numpy as np
import pytest

from fer_realtime import EmotionRecognizer
from fer_realtime.core.model_file import LoadedModel, ModelMetadata
from fer_realtime.faces.detector import Detection
from helpers import tiny_model


class ScriptedDetector:
    """Returns, for each call, the next entry of a script of box lists."""

    name = "scripted"

    def __init__(self, script):
        self.script = list(script)
        self.calls = 0

    def detect(self, frame):
        boxes = self.script[min(self.calls, len(self.script) - 1)]
        self.calls += 1
        return [Detection(box=b, score=1.0) for b in boxes]

    def close(self):
        pass


@pytest.fixture(scope="module")
def loaded():
    return LoadedModel(model=tiny_model(), metadata=ModelMetadata(), path=None)


def run(loaded, script, frames, **options):
    detector = ScriptedDetector(script)
    processor = EmotionRecognizer(detector=detector, model=loaded).video_processor(**options)
    frame = np.full((480, 640, 3), 90, np.uint8)
    return [processor.process(frame, draw=False).faces for _ in range(frames)], detector


def test_a_single_missed_detection_keeps_the_face_and_its_id(loaded):
    face = (100, 100, 120, 120)
    script = [[face]] * 4 + [[]] + [[face]] * 3  # the detector misses frame 4
    results, _ = run(loaded, script, 8)
    assert [len(r) for r in results] == [1] * 8
    assert len({r[0].track_id for r in results}) == 1
    assert results[4][0].box == face  # carried at the track's (zero) velocity


def test_a_face_that_leaves_disappears_after_the_coast_frames(loaded):
    face = (100, 100, 120, 120)
    results, _ = run(loaded, [[face]] * 4 + [[]], 10, coast_frames=2)
    assert [len(r) for r in results] == [1, 1, 1, 1, 1, 1, 0, 0, 0, 0]
    fresh, _ = run(loaded, [[face], []], 4)  # a face seen once is not carried: it may be a false detection
    assert [len(r) for r in fresh] == [1, 0, 0, 0]


def test_detecting_every_third_frame_moves_boxes_along_their_velocity(loaded):
    # the face moves 6 px per frame; the detector is called on frames 0, 3, 6, ... and sees it there
    script = [[(60 + 18 * i, 100, 120, 120)] for i in range(10)]
    results, detector = run(loaded, script, 10, detect_every=3)
    assert detector.calls == 4  # frames 0, 3, 6, 9
    xs = [r[0].box[0] for r in results]
    assert xs[0] == 60 and xs[3] == 78 and xs[6] == 96 and xs[9] == 114
    assert xs[7] > xs[6] and xs[8] > xs[7]  # predicted frames move on with the measured velocity
    assert len({r[0].track_id for r in results}) == 1


def test_detect_every_must_be_positive(loaded):
    with pytest.raises(ValueError):
        run(loaded, [[]], 1, detect_every=0)
