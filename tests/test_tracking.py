import numpy as np

from fer_realtime.faces.boxes import box_iou as iou
from fer_realtime.faces.tracking import FaceTracker


def onehot(i):
    p = np.full(7, 0.01, np.float32)
    p[i] = 0.94
    return p


def test_iou():
    assert iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert iou((0, 0, 10, 10), (20, 20, 5, 5)) == 0.0
    assert abs(iou((0, 0, 10, 10), (5, 0, 10, 10)) - 50 / 150) < 1e-9


def test_ids_persist_and_new_faces_get_new_ids():
    tracker = FaceTracker()
    a = tracker.update([(100, 100, 80, 80)], np.array([onehot(3)]))
    b = tracker.update([(104, 102, 80, 80), (400, 100, 80, 80)], np.array([onehot(3), onehot(4)]))
    assert b[0].track_id == a[0].track_id
    assert b[1].track_id != a[0].track_id


def test_smoothing_stops_single_frame_flicker():
    tracker = FaceTracker(smoothing=0.6)
    for _ in range(5):
        tracker.update([(100, 100, 80, 80)], np.array([onehot(3)]))
    (track,) = tracker.update([(101, 100, 80, 80)], np.array([onehot(4)]))  # one odd frame
    assert int(np.argmax(track.probabilities)) == 3


def test_face_that_leaves_loses_its_track():
    tracker = FaceTracker(max_missed=2)
    (first,) = tracker.update([(100, 100, 80, 80)], np.array([onehot(0)]))
    for _ in range(3):
        tracker.update([], np.zeros((0, 7)))
    assert tracker.tracks == []
    (again,) = tracker.update([(100, 100, 80, 80)], np.array([onehot(0)]))
    assert again.track_id != first.track_id


def test_velocity_comes_from_detections_and_predicts_the_next_box():
    tracker = FaceTracker()
    tracker.update([(100, 100, 80, 80)], np.array([onehot(3)]))
    (track,) = tracker.update([(110, 104, 80, 80)], np.array([onehot(3)]))
    assert track.velocity == (5.0, 2.0)  # half of the measured (10, 4): the first estimate averages with zero
    assert track.predicted_box(640, 480) == (115, 106, 80, 80)
    # Predicted boxes fed back (no detection) move the track but do not change its velocity...
    (track,) = tracker.update([track.predicted_box(640, 480)], np.array([onehot(3)]), kinds=["predicted"])
    assert track.velocity == (5.0, 2.0) and track.box == (115, 106, 80, 80)
    # ...and the next detection measures motion from the last detected box over both frames.
    (track,) = tracker.update([(130, 112, 80, 80)], np.array([onehot(3)]))
    assert track.velocity == (0.5 * (5 + 10), 0.5 * (2 + 4))


def test_predicted_box_stays_inside_the_frame():
    tracker = FaceTracker()
    tracker.update([(500, 10, 100, 100)], np.array([onehot(0)]))
    (track,) = tracker.update([(540, 0, 100, 100)], np.array([onehot(0)]))
    x, y, w, h = track.predicted_box(640, 480)
    assert x + w <= 640 and y >= 0
