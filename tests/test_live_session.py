"""The live stream's shared state (fer_realtime.app.live.LiveSession): the frame callback's side and the page's."""

import threading

import numpy as np
import pytest

from fer_realtime.app.live import LiveSession, LiveUpdate
from fer_realtime.core.model_file import default_model_path
from fer_realtime.video.processor import VideoProcessor
from helpers import astronaut_bgr


class Built:
    """A processor factory that records what it built; `fail` makes it raise instead."""

    def __init__(self, fail: str | None = None):
        self.calls, self.processors, self.fail = [], [], fail

    def __call__(self, detector: str, model_path: str) -> VideoProcessor:
        self.calls.append((detector, model_path))
        if self.fail:
            raise RuntimeError(self.fail)
        from fer_realtime import EmotionRecognizer

        processor = EmotionRecognizer(detector=detector, model=model_path).video_processor()
        self.processors.append(processor)
        return processor


@pytest.fixture(scope="module")
def shipped_model():
    return default_model_path()


@pytest.fixture(scope="module")
def frame():
    image = np.full((480, 640, 3), 90, np.uint8)
    image[:, :512] = astronaut_bgr()[:480]
    return image


def test_frames_are_annotated_and_the_newest_update_reaches_the_page(frame, shipped_model):
    built = Built()
    session = LiveSession(built)
    session.choose("mediapipe", str(shipped_model))
    for _ in range(3):
        out = session.process(frame)
    assert out.shape == frame.shape and not np.array_equal(out, frame)  # a box and a label were drawn
    update = session.latest()
    assert isinstance(update, LiveUpdate) and update.error is None
    assert update.frames == 3 and update.detector == "mediapipe" and update.model == shipped_model.name
    assert len(update.faces) == 1 and update.faces[0].label and update.ms > 0
    assert session.latest() is None  # read once
    assert built.calls == [("mediapipe", str(shipped_model))]  # one processor for the whole stream


def test_a_new_choice_or_a_new_stream_gets_a_fresh_processor(frame, shipped_model):
    built = Built()
    session = LiveSession(built)
    session.choose("haar", str(shipped_model))
    session.process(frame)
    session.process(frame)
    session.end_stream()
    session.process(frame)
    assert len(built.calls) == 2 and session.latest().frames == 1
    session.choose("mediapipe", str(shipped_model))
    session.process(frame)
    assert built.calls[-1] == ("mediapipe", str(shipped_model)) and session.latest().detector == "mediapipe"


def test_a_failing_choice_sends_the_frame_back_and_says_why_without_retrying_every_frame(frame):
    built = Built(fail="Model file /x.keras does not exist.")
    session = LiveSession(built)
    assert session.process(frame) is frame  # nothing chosen yet
    assert "no detector and model chosen" in session.latest().error
    session.choose("haar", "/x.keras")
    for _ in range(3):
        assert session.process(frame) is frame
    assert session.latest().error == "RuntimeError: Model file /x.keras does not exist."
    assert len(built.calls) == 1


def test_updates_never_block_the_callback_and_only_the_newest_are_kept():
    session = LiveSession(queue_size=2)
    updates = [LiveUpdate((), float(i), 0.0, i, "cpu", "haar", "m.keras") for i in range(50)]
    threads = [threading.Thread(target=lambda part=updates[i::5]: [session.publish(u) for u in part])
               for i in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert session.latest() is not None and session.updates.qsize() == 0


def test_frames_skipped_behind_the_newest_are_counted_per_stream(frame, shipped_model):
    session = LiveSession()  # the page's own processors: the process's shared batching classifier
    session.choose("mediapipe", str(shipped_model))
    session.process_newest(frame, skipped=0)
    session.process_newest(frame, skipped=3)
    update = session.latest()
    assert update.dropped == 3 and update.frames == 2 and len(update.faces) == 1
    assert "batched" in session._processor.recognizer.engine.runtime
    session.end_stream()
    session.process_newest(frame, skipped=1)
    assert session.latest().dropped == 1  # a new stream counts from zero
