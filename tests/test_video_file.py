import csv

import cv2
import numpy as np
import pytest

from fer_realtime import EMOTIONS, EmotionRecognizer
from fer_realtime.cli.main import main
from fer_realtime.video.files import VideoFileError, process_video
from fer_realtime.video.timeline import emotion_shares_over_time, timeline_columns
from helpers import ASTRONAUT_FACE, astronaut_bgr, box_iou


def write_clip(path, frames=24, fps=12, shift=3):
    """The astronaut drifting right by `shift` px per frame on a 640x480 frame."""
    face = astronaut_bgr()
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (640, 480))
    boxes = []
    for i in range(frames):
        frame = np.full((480, 640, 3), 80, np.uint8)
        x = 20 + shift * i
        frame[:, x : x + 512][:480] = face[:480]
        writer.write(frame)
        fx, fy, fw, fh = ASTRONAUT_FACE
        boxes.append((fx + x, fy, fw, fh))
    writer.release()
    return boxes


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    path = tmp_path_factory.mktemp("video") / "clip.avi"
    return path, write_clip(path)


@pytest.fixture(scope="module")
def recognizer():
    with EmotionRecognizer() as rec:
        yield rec


def test_timeline_has_a_row_per_face_per_frame_with_all_scores(clip, recognizer, tmp_path):
    path, boxes = clip
    seen = []
    summary = process_video(path, recognizer, csv_path=tmp_path / "t.csv", out_path=tmp_path / "a.webm",
                            progress=lambda done, total: seen.append((done, total)))
    assert summary.frames == len(boxes) and (summary.width, summary.height) == (640, 480)
    assert summary.video_fps == pytest.approx(12, abs=0.01)
    assert seen[-1] == (len(boxes), len(boxes))
    with open(tmp_path / "t.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == timeline_columns(EMOTIONS)
    assert len(rows) == summary.faces >= len(boxes) - 2  # the face is found in (nearly) every frame
    for row in rows:
        frame = int(row["frame"])
        box = tuple(int(row[k]) for k in "xywh")
        assert box_iou(box, boxes[frame]) > 0.4
        assert float(row["time_s"]) == pytest.approx(frame / 12, abs=1e-3)
        assert sum(float(row[c]) for c in EMOTIONS) == pytest.approx(1.0, abs=1e-3)
        assert row["label"] in EMOTIONS and row["track_id"] == "1"
    annotated = cv2.VideoCapture(str(tmp_path / "a.webm"))
    assert int(annotated.get(cv2.CAP_PROP_FRAME_COUNT) or 0) in (0, len(boxes))  # webm may not store a count
    ok, first = annotated.read()
    annotated.release()
    assert ok and first.shape == (480, 640, 3)
    assert not list(tmp_path.glob(".*"))  # no temporary files left


def test_rows_can_go_to_the_csv_only_for_long_videos(clip, recognizer, tmp_path):
    path, _ = clip
    kept = process_video(path, recognizer, csv_path=tmp_path / "kept.csv")
    streamed = process_video(path, recognizer, csv_path=tmp_path / "streamed.csv", keep_timeline=False)
    assert streamed.timeline == [] and streamed.faces == kept.faces == len(kept.timeline) > 0
    assert (tmp_path / "streamed.csv").read_bytes() == (tmp_path / "kept.csv").read_bytes()
    assert streamed.label_counts == kept.label_counts and sum(kept.label_counts.values()) == kept.faces


def test_detecting_every_third_frame_keeps_the_face_boxed(clip, recognizer):
    path, boxes = clip
    every = process_video(path, recognizer, detect_every=3)
    calls = []
    original = recognizer.detector.detect
    recognizer.detector.detect = lambda frame: calls.append(1) or original(frame)
    try:
        process_video(path, recognizer, detect_every=3)
    finally:
        del recognizer.detector.detect
    assert len(calls) <= len(boxes) // 3 + 2
    per_frame = {row["frame"]: row for row in every.timeline}
    assert len(per_frame) >= len(boxes) - 2
    for frame, row in per_frame.items():
        assert box_iou((row["x"], row["y"], row["w"], row["h"]), boxes[frame]) > 0.4


def test_emotion_shares_over_time_are_means_per_second():
    fps = 3.0  # frame 3 starts at 1.0 s exactly; its rounded time_s (0.9999) must not put it in the first bin
    rows = [{"frame": f, "time_s": round(f / fps - 1e-4, 4),
             **{c: float(c == ("happy" if f < 3 else "sad")) for c in EMOTIONS}} for f in range(6)]
    rows.append({**rows[0], "happy": 0.0, "neutral": 1.0})  # a second face in frame 0
    chart = emotion_shares_over_time(rows, EMOTIONS, fps)
    assert chart["time_s"] == [0.0, 1.0]
    assert chart["happy"] == [0.75, 0.0] and chart["sad"] == [0.0, 1.0] and chart["neutral"] == [0.25, 0.0]


def _jpeg() -> bytes:
    return cv2.imencode(".jpg", astronaut_bgr())[1].tobytes()


@pytest.mark.parametrize("content", [b"", b"<html><body>not a video</body></html>", bytes(range(256)) * 40, _jpeg()],
                         ids=["empty", "html", "random", "jpeg"])
def test_bad_video_files_get_one_sentence(tmp_path, content, capsys):
    path = tmp_path / "bad.mp4"
    path.write_bytes(content)
    with pytest.raises(VideoFileError):
        process_video(path, csv_path=tmp_path / "t.csv")
    assert main(["video", str(path), "--csv", str(tmp_path / "t.csv"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err
    assert not (tmp_path / "t.csv").exists()
    assert main(["video", str(tmp_path), "--quiet"]) == 2  # a folder: its videos' timelines need a folder
    assert "--csv-dir" in capsys.readouterr().err


def test_video_command_writes_csv_and_annotated_copy(clip, tmp_path, capsys):
    path, boxes = clip
    assert main(["video", str(path), "--csv", str(tmp_path / "t.csv"), "--out", str(tmp_path / "a.mp4"), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert f"{len(boxes)} frames of 640x480" in out and "frames/s" in out
    assert (tmp_path / "t.csv").stat().st_size > 0 and (tmp_path / "a.mp4").stat().st_size > 0
    assert main(["video", str(path), "--out", str(tmp_path / "a.gif"), "--quiet"]) == 2


def test_video_command_takes_the_smoothing_and_the_uncertain_bar(clip, tmp_path, capsys):
    path, _ = clip
    assert main(["video", str(path), "--csv", str(tmp_path / "t.csv"), "--smoothing", "strong",
                 "--uncertain-below", "0.999", "--quiet"]) == 0
    with open(tmp_path / "t.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert rows and {row["label"] for row in rows} == {"uncertain"}  # no face is that sure
    assert all(float(row["confidence"]) < 0.999 for row in rows)
    capsys.readouterr()
    assert main(["video", str(path), "--uncertain-below", "1.5", "--quiet"]) == 2
    assert "--uncertain-below" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["video", str(path), "--smoothing", "very"])
