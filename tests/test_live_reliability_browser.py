"""The page under the ways people actually use it, in a real headless Chromium against `streamlit run`.

Live stream (Chromium's fake camera plays the astronaut portrait): stopped and started again, then the detector and
the model switched while it plays; two browser sessions streaming at once. Video tab: a generated clip of the
portrait is processed (figures, chart, annotated video, CSV download) and bad uploads get one sentence. Model upload
in the sidebar: a good model becomes selectable, bad ones are refused.

One Streamlit server for the module, its models, uploads and runs folders in tmp_path. Needs the `playwright`
Python package and Debian's `chromium` (no `playwright install`); skipped otherwise.
"""

from __future__ import annotations

import csv
import io
import re
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from browser_support import (
    FAKE_CAMERA_ARGS,
    app_page,
    assert_no_traceback,
    choose_option,
    chromium_browser,
    error_messages,
    main_area,
    needs_browser,
    portrait_frame,
    press_stream_button,
    running_server,
    selected_option,
    show_tab,
    sidebar,
    wait_for_live,
    wait_until_idle,
    webrtc_frame,
    write_y4m,
)
from helpers import astronaut_bgr, save_tiny_model

pytestmark = needs_browser

LIVE_MODEL = "tiny_live.keras"  # a second model in the models folder, to switch to while streaming


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("reliability")
    return {"models": root / "models", "uploads": root / "uploads", "runs": root / "runs", "root": root}


@pytest.fixture(scope="module")
def server(folders):
    save_tiny_model(folders["models"] / LIVE_MODEL)
    env = {"FER_REALTIME_MODELS_DIR": str(folders["models"]), "FER_REALTIME_UPLOADS_DIR": str(folders["uploads"]),
           "FER_REALTIME_RUNS_DIR": str(folders["runs"])}
    with running_server(folders["root"] / "streamlit.log", env=env) as server:
        yield server


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    camera = write_y4m(tmp_path_factory.mktemp("camera") / "portrait.y4m", portrait_frame(), frames=30)
    with chromium_browser(*FAKE_CAMERA_ARGS, f"--use-file-for-fake-video-capture={camera}") as browser:
        yield browser


@pytest.fixture
def page(browser, server, request, folders):
    with app_page(browser, server.url) as page:
        yield page
        shot = folders["root"] / f"{request.node.name}.png"  # the page as the test left it, for a failure's report
        page.screenshot(path=str(shot), full_page=True)
        print(f"\nscreenshot: {shot}\nserver log: {server.log_path}")


def _streaming(page, timeout: float = 90.0, what: str = "frames with a face", **wanted) -> dict:
    """Wait until the live figures count a face (and show `wanted`, e.g. detector="haar") and frames keep coming."""
    first = wait_for_live(page, lambda s: (s["faces"] or 0) >= 1 and all(s[k] == v for k, v in wanted.items()),
                          timeout=timeout, what=what)
    later = wait_for_live(page, lambda s: s["frames"] > first["frames"] and all(s[k] == v for k, v in wanted.items()),
                          timeout=30, what=f"more {what}")
    assert not later["errors"], later
    return later


def _metric(scope, label: str) -> str:
    metric = scope.locator('[data-testid="stMetric"]').filter(
        has=scope.page.locator('[data-testid="stMetricLabel"]', has_text=re.compile(f"^{re.escape(label)}$")))
    return metric.locator('[data-testid="stMetricValue"]').inner_text().strip()


def _set_detector(page, name: str) -> None:
    sidebar(page).locator('[data-testid="stRadio"]').get_by_text(name, exact=True).click()


# --------------------------------------------------------------------------------------------------------------
# Live stream
# --------------------------------------------------------------------------------------------------------------


def test_stream_stops_and_starts_again_then_switches_detector_and_model(page, server):
    _set_detector(page, "haar")  # the cheaper detector on this busy machine
    wait_until_idle(page)
    press_stream_button(page, "START")
    _streaming(page)
    # the figures `fer-realtime bench` reports: frames/s, median and p90 ms per frame
    main = main_area(page)
    assert float(_metric(main, "Frames/s")) > 0
    assert 0 < float(_metric(main, "ms per frame")) and 0 < float(_metric(main, "p90 ms"))

    press_stream_button(page, "STOP")
    main_area(page).get_by_text("Press START and allow the camera").wait_for(timeout=30_000)
    webrtc_frame(page).get_by_role("button", name="START").wait_for(timeout=30_000)

    press_stream_button(page, "START")
    after = _streaming(page, what="frames with a face after the restart")
    assert after["detector"] == "haar", after
    assert_no_traceback(page, server.log())

    # the restarted stream goes on through switches of the detector, back, and of the model
    _set_detector(page, "mediapipe")
    _streaming(page, detector="mediapipe", what="frames from the mediapipe detector")
    _set_detector(page, "haar")
    _streaming(page, detector="haar", what="frames from the haar detector again")
    choose_option(page, "Model", LIVE_MODEL, scope=sidebar(page), exact=False, idle=False)
    status = _streaming(page, model=LIVE_MODEL, what=f"frames from {LIVE_MODEL}")
    assert status["detector"] == "haar", status
    assert not error_messages(page), error_messages(page)
    assert_no_traceback(page, server.log())


def test_two_sessions_stream_at_once(browser, server):
    with app_page(browser, server.url) as first, app_page(browser, server.url) as second:
        for page in (first, second):
            _set_detector(page, "haar")
            wait_until_idle(page)
        # one after the other: two WebRTC handshakes at once can take longer than the wait on a loaded 2-core CI box
        for page in (first, second):
            press_stream_button(page, "START")
            status = _streaming(page)
            assert status["faces"] >= 1, status
        # both streams are still served, not one at the other's expense
        for page in (first, second):
            _streaming(page, timeout=30)
            assert_no_traceback(page, server.log())


# --------------------------------------------------------------------------------------------------------------
# Video tab
# --------------------------------------------------------------------------------------------------------------


def _portrait_clip(path: Path, frames: int = 30, fps: float = 15.0) -> Path:
    """640x480 mp4 of the astronaut, her face drifting a few pixels per frame."""
    face = cv2.resize(astronaut_bgr(), (480, 480), interpolation=cv2.INTER_AREA)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (640, 480))
    assert writer.isOpened()
    for i in range(frames):
        frame = np.full((480, 640, 3), 96, dtype=np.uint8)
        left = 60 + 2 * i
        frame[:, left : left + 480] = face
        writer.write(frame)
    writer.release()
    return path


def _upload_video(page, name: str, data: bytes, mime: str = "video/mp4") -> None:
    """Upload a file in the Video tab and, once the page has it, press Process."""
    uploader = main_area(page).locator(".st-key-video_upload")
    uploader.locator('input[type="file"]').set_input_files([{"name": name, "mimeType": mime, "buffer": data}])
    uploader.locator('[data-testid="stFileChip"]').filter(has_text=name).wait_for()
    wait_until_idle(page, settle=0.6)
    main = main_area(page)
    button = main.get_by_role("button", name="Process video")
    button.click()
    # On a loaded machine a click can land while the upload's rerun is still being replaced; if after a while
    # nothing shows (no progress bar, result or error) and the page is idle, the click is repeated once.
    outcome = main.locator('[data-testid="stProgress"], [data-testid="stVegaLiteChart"], '
                           '[data-testid="stAlertContentError"]')
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and outcome.count() == 0:
        time.sleep(0.25)
    if outcome.count() == 0 and button.count() == 1:
        wait_until_idle(page)
        if outcome.count() == 0:
            button.click()


def test_video_tab_processes_a_clip_and_refuses_bad_files(page, server, folders, tmp_path):
    show_tab(page, "Video")
    main = main_area(page)
    clip = _portrait_clip(tmp_path / "astronaut.mp4")
    _upload_video(page, "astronaut.mp4", clip.read_bytes())

    chart = main.locator('[data-testid="stVegaLiteChart"]')
    chart.first.wait_for(timeout=120_000)
    assert _metric(main, "Frames") == "30"
    assert _metric(main, "Video length") == "2.0 s"
    assert float(_metric(main, "Processing frames/s")) > 0
    assert int(_metric(main, "Face detections")) >= 20  # the face is found on (nearly) every frame
    # the annotated WebM plays in Chromium: its size is known once the metadata has loaded
    video = main.locator('[data-testid="stVideo"]')
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not video.evaluate("v => v.videoWidth"):
        time.sleep(0.2)
    assert video.evaluate("v => [v.videoWidth, v.videoHeight]") == [640, 480]
    main.get_by_role("button", name="Annotated video (WebM)").wait_for()
    with page.expect_download() as download:
        main.get_by_role("button", name="Timeline (CSV)").click()
    assert download.value.suggested_filename == "astronaut-timeline.csv"
    rows = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text())))
    assert rows and list(rows[0])[:9] == ["frame", "time_s", "track_id", "x", "y", "w", "h", "label", "confidence"]
    assert {int(r["frame"]) for r in rows} >= {0, 29}
    kept = [p for p in (folders["uploads"] / "videos").iterdir()]
    assert len(kept) == 1 and sorted(p.name for p in kept[0].iterdir()) == ["annotated.webm", "timeline.csv"], kept
    assert_no_traceback(page, server.log())

    bad_files = {
        "noise.mp4": np.random.default_rng(3).bytes(20_000),  # random bytes named like a video
        "photo.mp4": cv2.imencode(".jpg", astronaut_bgr())[1].tobytes(),  # a JPEG renamed .mp4
    }
    for name, data in bad_files.items():
        _upload_video(page, name, data)
        error = main.locator('[data-testid="stAlertContentError"]').filter(has_text=name)
        error.wait_for(timeout=60_000)
        wait_until_idle(page)
        messages = error_messages(main)
        assert len(messages) == 1, messages
        assert "\n" not in messages[0] and messages[0].endswith(".") and name in messages[0], messages
        assert chart.count() == 0 and main.get_by_role("button", name="Timeline (CSV)").count() == 0
        # neither the failed upload nor the earlier clip's results are left in the uploads folder
        assert list((folders["uploads"] / "videos").iterdir()) == []
        assert_no_traceback(page, server.log())


# --------------------------------------------------------------------------------------------------------------
# Model upload
# --------------------------------------------------------------------------------------------------------------


def _wrong_class_count_model(path: Path) -> Path:
    """A network with 5 outputs whose metadata names the 7 emotions."""
    from fer_realtime.core.model_file import ModelMetadata, save_model
    from helpers import tiny_model

    return save_model(tiny_model(5), ModelMetadata(), path)


def _plain_keras_model(path: Path) -> Path:
    """A valid Keras model file without our metadata."""
    from helpers import tiny_model

    tiny_model().save(path)
    return path


def _upload_model(page, name: str, data: bytes) -> None:
    """As a person does: once the page has finished its rerun, pick the file; the uploader then lists it."""
    wait_until_idle(page)  # a file set on the uploader while its rerun redraws it can be dropped
    uploader = sidebar(page).locator('.st-key-model_upload')
    uploader.locator('input[type="file"]').set_input_files(
        [{"name": name, "mimeType": "application/octet-stream", "buffer": data}])
    uploader.get_by_text(name, exact=True).wait_for(timeout=30_000)


def test_model_upload_checks_the_file_before_it_is_offered(page, server, folders, tmp_path):
    side = sidebar(page)
    bad = {
        "broken.keras": (b"PK\x03\x04 not really a zip " * 50, "not a Keras .keras model file"),
        "five_outputs.keras": (_wrong_class_count_model(tmp_path / "five.keras").read_bytes(),
                               "metadata names 7 classes"),
        "plain.keras": (_plain_keras_model(tmp_path / "plain.keras").read_bytes(), "not a fer-realtime model"),
    }
    for name, (data, reason) in bad.items():
        _upload_model(page, name, data)
        error = side.locator('[data-testid="stAlertContentError"]').filter(has_text=name)
        error.wait_for(timeout=60_000)
        message = error.inner_text().strip()
        assert reason in message and "\n" not in message and message.endswith("."), message
        assert not (folders["models"] / name).exists()
        assert_no_traceback(page, server.log())

    good = save_tiny_model(tmp_path / "my_model.keras")
    _upload_model(page, "my_model.keras", good.read_bytes())
    side.locator('[data-testid="stAlertContentSuccess"]').filter(has_text="my_model.keras").wait_for(timeout=60_000)
    wait_until_idle(page)
    assert (folders["models"] / "my_model.keras").read_bytes() == good.read_bytes()
    assert "my_model.keras" in selected_option(page, "Model", side)  # selected, and loads without an error
    assert not error_messages(side), error_messages(side)
    # nothing else was written: no scratch folder in uploads, no temporary file among the models
    assert sorted(p.name for p in folders["models"].iterdir()) == ["my_model.keras", LIVE_MODEL]
    assert not list(folders["uploads"].glob(".model-*"))
    assert_no_traceback(page, server.log())
