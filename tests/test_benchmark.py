import json

import numpy as np
import pytest

from fer_realtime.cli.main import main
from fer_realtime.evaluation.benchmark import (
    count_found,
    format_rows,
    load_face_crops,
    make_frames,
    make_sequence,
    run_benchmark,
)
from helpers import write_class_folders


@pytest.fixture(scope="module")
def faces_dir(tmp_path_factory):
    return write_class_folders(tmp_path_factory.mktemp("faces"), {"happy": 6, "sad": 6}, size=(48, 48))


def test_frames_hold_the_requested_faces_inside_the_frame(faces_dir):
    crops = load_face_crops(faces_dir)
    assert len(crops) == 12
    for faces in (1, 4):
        for frame in make_frames(crops, faces, 5) + make_sequence(crops, faces, 5):
            assert frame.image.shape == (480, 640, 3) and len(frame.faces) == faces
            for x, y, w, h in frame.faces:
                assert 110 <= w == h <= 170 and x >= 0 and y >= 0 and x + w <= 640 and y + h <= 480
    moving = make_sequence(crops, 1, 30)
    steps = [abs(a.faces[0][0] - b.faces[0][0]) for a, b in zip(moving, moving[1:])]
    assert 0 < max(steps) <= 10  # faces drift a few pixels per frame, as in a video


def test_count_found_matches_each_face_once():
    truth = ((100, 100, 100, 100), (300, 100, 100, 100))
    assert count_found(truth, [(105, 95, 100, 110)]) == 1
    assert count_found(truth, [(105, 95, 100, 110), (110, 100, 90, 90)]) == 1  # two boxes, same face
    assert count_found(truth, [(0, 0, 640, 480)]) == 0  # one box over everything finds nothing
    assert count_found(truth, [(300, 100, 100, 100), (100, 100, 100, 100)]) == 2


def test_benchmark_rows_and_cli(faces_dir, capsys):
    rows = run_benchmark(faces_dir, detectors=("mediapipe",), runs=3, video_frames=4, batches=(1, 4), scenes=("faces",))
    assert [(r.mode, r.faces) for r in rows] == [("analyze", 1), ("video", 1), ("analyze", 4), ("video", 4),
                                                ("model", 1), ("model", 4)]
    for r in rows:
        assert 0 < r.p50_ms <= r.p90_ms and r.fps > 0 and 0 <= r.found <= r.present
    assert rows[0].present == 3 and rows[3].present == 16
    assert "ms/face" in format_rows(rows)
    assert main(["bench", "--data", str(faces_dir), "--detectors", "mediapipe", "--runs", "2",
                 "--video-frames", "3", "--scenes", "faces,small", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["device"] and {r["mode"] for r in report["rows"]} == {"analyze", "video", "model"}
    # Every ms figure comes with what it cost and on which CPU (vector extensions decide int8 speed).
    assert report["gmac_per_face"] > 0 and report["views"] >= 1 and isinstance(report["vector_extensions"], list)
    assert {r["scene"] for r in report["rows"]} == {"faces", "small", "-"} or \
        {r["scene"] for r in report["rows"] if r["mode"] != "model"} == {"faces", "small"}
    assert main(["bench", "--data", str(faces_dir), "--detectors", "nope"]) == 2
    assert main(["bench", "--data", str(faces_dir), "--scenes", "moon"]) == 2


def test_scene_rows_report_faces_found_and_the_accuracy_beside_the_direct_reading(faces_dir):
    rows = run_benchmark(faces_dir, detectors=("mediapipe",), runs=2, video_frames=3, batches=(),
                         scenes=("small", "tilted photo"))
    small, small_video, tilted = rows  # small: analyze and video rows
    assert (small.scene, small.mode, small.faces) == ("small", "analyze", 6) and small_video.mode == "video"
    assert tilted.scene == "tilted photo" and tilted.accuracy is None  # photographs carry no labels
    assert 0 < small.present == 12 and tilted.present == 8 and tilted.found >= 6
    if small.found:
        assert 0 <= small.accuracy <= 1 and 0 <= small.reference_accuracy <= 1
        assert 1 <= small.distinct_faces <= min(small.found, 12)  # the fixture has 12 crops
        assert f"{small.accuracy:.3f} ({small.reference_accuracy:.3f}), {small.distinct_faces} faces" in \
            format_rows(rows)
    else:
        assert small.distinct_faces is None
    assert "small" in format_rows(rows) and "tilted photo" in format_rows(rows)


def test_the_accuracy_says_how_many_different_faces_it_rests_on():
    """A clip that shows the same two faces in every frame: six readings of two faces."""
    from types import SimpleNamespace

    from fer_realtime.evaluation.bench_scenes import SceneFrame
    from fer_realtime.evaluation.benchmark import _row, _timed

    image = np.zeros((100, 200, 3), np.uint8)
    clip = [SceneFrame(image, ((10, 10, 40, 40), (120, 10, 40, 40)), labels=(3, 4), crop_ids=(7, 9))] * 3
    read = lambda frame: [SimpleNamespace(box=(10, 10, 40, 40), label_index=3),  # noqa: E731
                          SimpleNamespace(box=(120, 10, 40, 40), label_index=0)]
    row = _row("video", "fake", 2, _timed(read, clip, runs=3, warmup=0, reference={7: 3, 9: 4}), "small")
    assert (row.found, row.accuracy, row.reference_accuracy, row.distinct_faces) == (6, 0.5, 1.0, 2)
    assert "0.500 (1.000), 2 faces" in format_rows([row])


def test_the_smoothing_benchmark_trades_steadiness_for_delay():
    import cv2

    from fer_realtime.evaluation.smoothing import format_rows, measure_smoothing
    from fer_realtime.inference.engine import get_engine
    from helpers import ASTRONAUT_FACE, astronaut_bgr

    x, y, w, h = ASTRONAUT_FACE
    gray = cv2.cvtColor(astronaut_bgr(), cv2.COLOR_BGR2GRAY)
    face = cv2.resize(gray[y : y + h, x : x + w], (48, 48), interpolation=cv2.INTER_AREA)
    crops = [face, face[::-1], cv2.GaussianBlur(face, (0, 0), 3), 255 - face]  # upright, upside down, blurred, negative
    rows = measure_smoothing(get_engine(), crops, steady_frames=30, change_frames=20)
    assert [r.setting for r in rows] == ["off", "light", "normal", "strong"]
    changes = [r.changes_per_s for r in rows]
    assert changes == sorted(changes, reverse=True)  # more smoothing, fewer label changes on a steady face
    assert rows[0].changes >= 1  # the four faces are not all read alike
    delays = [r.delay_frames for r in rows]
    assert delays == sorted(delays)  # ...and more of it, a later label after a change
    assert "changes/s steady" in format_rows(rows)
