import numpy as np

from fer_realtime.tracking import FaceTracker, iou


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
