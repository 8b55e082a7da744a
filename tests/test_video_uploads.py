"""Uploaded videos (fer_realtime.app.video_uploads): processed in a folder of their own, results kept, nothing left
behind on failure, old result folders pruned."""

import io
import os
import time

import pytest
from test_video_file import write_clip

from fer_realtime import EMOTIONS
from fer_realtime.app.video_uploads import process_upload, prune_old_results
from fer_realtime.core.model_file import default_model_path
from fer_realtime.video.files import VideoFileError


@pytest.fixture(scope="module")
def clip_bytes(tmp_path_factory) -> bytes:
    path = tmp_path_factory.mktemp("upload") / "clip.avi"
    write_clip(path, frames=12)
    return path.read_bytes()


def test_an_upload_is_processed_into_a_folder_of_its_own(tmp_path, clip_bytes):
    calls = []
    result = process_upload(io.BytesIO(clip_bytes), "my clip (1).avi", "mediapipe", str(default_model_path()),
                            tmp_path / "videos", progress=lambda done, total: calls.append((done, total)))
    folder = tmp_path / "videos" / os.path.basename(result.folder)
    assert sorted(p.name for p in folder.iterdir()) == ["annotated.webm", "timeline.csv"]  # the upload is gone
    assert result.csv_path.stat().st_size > 0 and result.video_path.stat().st_size > 0
    assert result.name == "my clip (1).avi" and result.frames == 12 and result.faces == 12
    assert result.length_s == pytest.approx(1.0) and result.model == default_model_path().name
    assert list(result.shares.columns) == list(EMOTIONS) and result.shares.index.name == "time_s"
    assert ((result.shares.sum(axis=1) - 1.0).abs() < 1e-3).all()  # per bin: a mean of probabilities
    assert calls and calls[-1][0] == 12


def test_a_bad_upload_leaves_nothing_behind(tmp_path):
    with pytest.raises(VideoFileError):
        process_upload(io.BytesIO(b"<html>not a video</html>"), "x.mp4", "haar", str(default_model_path()),
                       tmp_path / "videos")
    assert list((tmp_path / "videos").iterdir()) == []


def test_result_folders_older_than_the_limit_are_pruned(tmp_path):
    old, new, other = tmp_path / "video-old", tmp_path / "video-new", tmp_path / "keep-me"
    for folder in (old, new, other):
        folder.mkdir()
        (folder / "timeline.csv").write_text("x")
    stale = time.time() - 2 * 3600
    os.utime(old, (stale, stale))
    os.utime(other, (stale, stale))
    prune_old_results(tmp_path, keep_s=3600)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep-me", "video-new"]
