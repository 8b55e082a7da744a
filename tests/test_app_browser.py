"""The Streamlit page, tested as a person uses it: in a real Chromium whose fake camera plays a portrait.

Chromium gets a YUV4MPEG2 file made from scikit-image's astronaut photograph as its camera; the page streams it
over WebRTC (browser and server on this machine, no ICE server) to the app, which detects, classifies and draws on every frame and streams
it back. The live test reads the frame the browser received and checks that a box and a label were drawn on the
face, and that the page's live figures count the face; the same stream then goes on to check its record and its
downloads after STOP. Another test: the Photos tab with photos and a corrupt file uploaded in the sidebar.

Needs the `playwright` Python package and Debian's `chromium` (no `playwright install`); skipped otherwise.
"""

from __future__ import annotations

import csv
import io
import json
import re
import time
import zipfile
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from browser_support import (
    FAKE_CAMERA_ARGS,
    REPO_ROOT,
    app_page,
    assert_no_traceback,
    chromium_browser,
    main_area,
    needs_browser,
    portrait_frame,
    press_stream_button,
    require_model,
    running_server,
    show_tab,
    sidebar,
    wait_for_live,
    wait_for_labelled_face,
    wait_until_idle,
    write_y4m,
)
from fer_realtime import EMOTIONS
from fer_realtime.inference.tta import TestTimeAugmentation

RECEIVED_FPS = re.compile(r"Browser receives: [0-9.]+ frames/s")  # webapp/browser_fps.py, beside the live figures
RECORD_S = 10  # how long the recorded stream plays before STOP


@pytest.fixture(scope="module")
def camera_frame() -> np.ndarray:
    return portrait_frame()


@pytest.fixture(scope="module")
def fake_camera(tmp_path_factory, camera_frame):
    return write_y4m(tmp_path_factory.mktemp("camera") / "portrait.y4m", camera_frame, frames=30)


@pytest.fixture(scope="module")
def app_server(tmp_path_factory):
    with running_server(tmp_path_factory.mktemp("server") / "streamlit.log", timeout=60) as server:
        yield server


@pytest.fixture(scope="module")
def browser(fake_camera):
    with chromium_browser(*FAKE_CAMERA_ARGS, f"--use-file-for-fake-video-capture={fake_camera}") as browser:
        yield browser


@pytest.fixture
def page(browser, app_server, request, tmp_path_factory):
    with app_page(browser, app_server.url) as page:
        yield page
        shot = tmp_path_factory.mktemp("shots") / f"{request.node.name}.png"  # the page as the test left it
        page.screenshot(path=str(shot), full_page=True)
        print(f"\nscreenshot: {shot}\nserver log: {app_server.log_path}")


def _downloaded(page, button) -> bytes:
    with page.expect_download(timeout=60_000) as download:
        button.click()
    return Path(download.value.path()).read_bytes()


@needs_browser
def test_live_stream_draws_the_label_on_the_face_and_is_recorded(page, app_server, camera_frame, tmp_path):
    """One stream (a fresh page's first START is the slow one): the box and label on the face in the video the
    browser receives; then RECORD_S of streaming in all, with the smoothing and the uncertain bar changed on the way;
    after STOP the record: its charts, the timeline CSV (the columns of `video --csv`, every frame's face) and the
    last frame as PNG."""
    started = time.monotonic()
    main = main_area(page)
    press_stream_button(page, "START")
    first = wait_for_live(page, lambda s: (s["faces"] or 0) >= 1, what="a face in the live figures")
    streaming_since = time.monotonic()
    evidence = wait_for_labelled_face(page, camera_frame, timeout=90)
    page.screenshot(path=str(tmp_path / "live_overlay.png"))
    print(f"\nscreenshot: {tmp_path / 'live_overlay.png'}\nevidence: {evidence}")
    print(f"labelled face {time.monotonic() - started:.1f} s after page load")
    # the live table of current faces (track id, emotion, confidence)
    page.locator('[data-testid="stTable"]').filter(has_text="track id").first.wait_for(timeout=10_000)
    assert_no_traceback(page, app_server.log())

    meter = page.frame_locator('iframe[title="st.iframe"]').get_by_text(RECEIVED_FPS)
    meter.wait_for(timeout=30_000)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not _received_fps(meter):
        time.sleep(0.5)
    assert _received_fps(meter) > 0, meter.inner_text()

    slider = main.get_by_role("slider", name="Smoothing")
    slider.focus()
    slider.press("ArrowRight")  # normal -> strong, applied to the running stream
    main.get_by_text("strong").first.wait_for()
    main.locator(".st-key-live_uncertain").get_by_text("Mark uncertain faces").click()
    bar = main.locator(".st-key-live_uncertain_below").get_by_role("slider")
    bar.focus()
    bar.press("End")  # "uncertain" below 90 %
    main.locator(".st-key-live_uncertain_below").get_by_text("90%").first.wait_for()
    later = wait_for_live(page, lambda s: s["frames"] > first["frames"] + 30, what="frames after the changes")
    assert not later["errors"], later["errors"]
    while time.monotonic() - streaming_since < RECORD_S:
        time.sleep(0.5)

    press_stream_button(page, "STOP")
    main.get_by_text("The last stream").wait_for(timeout=60_000)
    csv_button = main.get_by_role("button", name="Download timeline (CSV)")
    rows = list(csv.DictReader(io.StringIO(_downloaded(page, csv_button).decode())))
    assert len(rows) >= 6.5 * RECORD_S, f"{len(rows)} face rows after {RECORD_S} s"  # 6.5 frames/s at least
    assert list(rows[0])[:9] == ["frame", "time_s", "track_id", "x", "y", "w", "h", "label", "confidence"]
    assert list(rows[0])[9:] == list(EMOTIONS)
    assert float(rows[-1]["time_s"]) >= RECORD_S - 1 and {r["track_id"] for r in rows} >= {"1"}
    last = rows[-20:]  # recorded after the bar was set
    assert all((r["label"] == "uncertain") == (float(r["confidence"]) < 0.9) for r in last), last
    assert all(r["label"] in EMOTIONS for r in last if r["label"] != "uncertain")
    png = _downloaded(page, main.get_by_role("button", name="Download snapshot (PNG)"))
    snapshot = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
    assert snapshot is not None and snapshot.shape == (480, 640, 3)
    charts = main.locator('[data-testid="stVegaLiteChart"]')
    charts.nth(1).wait_for(timeout=30_000)  # they draw after the record's text, later still on a busy machine
    assert charts.count() >= 2  # emotions over time, share per emotion
    assert_no_traceback(page, app_server.log())


def _received_fps(meter) -> float:
    match = re.search(r"([0-9.]+) frames/s", meter.inner_text())
    return float(match.group(1)) if match else 0.0


@needs_browser
def test_photos_tab_shows_each_photo_with_its_faces_and_downloads(page, app_server, camera_frame):
    """Seven photos (one of them not an image): a page of five, each annotated with a table of its faces; the
    broken file gets one sentence; the results download as predict --json's shape and as CSV."""
    ok, png = cv2.imencode(".png", camera_frame)
    assert ok
    photos = [{"name": f"astronaut_{i}.png", "mimeType": "image/png", "buffer": png.tobytes()} for i in range(6)]
    photos.insert(1, {"name": "broken.jpg", "mimeType": "image/jpeg", "buffer": np.random.default_rng(7).bytes(4096)})
    # the tab first, so that the live component's report (show_tab waits it out) cannot rerun the script while the
    # files upload: set on a fresh page, they were once lost (the uploader empty, no results within 120 s)
    show_tab(page, "Photos")
    uploader = sidebar(page).locator('[data-testid="stFileUploader"]').filter(has_text="Photos")
    uploader.locator('input[type="file"]').set_input_files(photos)
    main = main_area(page)
    main.get_by_text("7 photos").wait_for(timeout=120_000)
    error = main.locator('[data-testid="stAlertContentError"]').filter(has_text="broken.jpg")
    message = error.first.inner_text().strip()
    assert "\n" not in message and message.endswith("."), message
    images = main.locator('[data-testid="stImage"] img')
    images.nth(3).wait_for()
    assert images.count() == 4  # page 1: five photos, one of them the broken file
    tables = main.locator('[data-testid="stDataFrame"]')
    tables.nth(3).wait_for()  # the faces tables draw after the images
    assert tables.count() == 4
    main.get_by_label("Page (of 2, 5 photos each)").fill("2")
    main.get_by_label("Page (of 2, 5 photos each)").press("Enter")
    wait_until_idle(page)
    main.locator('[data-testid="stDataFrame"]').nth(1).wait_for()
    assert main.locator('[data-testid="stImage"] img').count() == 2

    results = json.loads(_downloaded(page, main.get_by_role("button", name="Results (JSON)")))
    assert [r["image"] for r in results] == [p["name"] for p in photos]
    assert results[1] == {"image": "broken.jpg", "error": message}
    face = results[0]["faces"][0]
    assert set(face) == {"box", "label", "confidence", "scores"} and set(face["scores"]) == set(EMOTIONS)
    rows = list(csv.DictReader(io.StringIO(_downloaded(page, main.get_by_role("button", name="Results (CSV)")).decode())))
    assert len(rows) == 7 and rows[0]["label"] == face["label"]
    archive = zipfile.ZipFile(io.BytesIO(_downloaded(page, main.get_by_role("button", name="Annotated photos (zip)"))))
    assert len(archive.namelist()) == 6
    assert_no_traceback(page, app_server.log())


def test_page_renders_models_and_training_record(monkeypatch, tmp_path):
    """Headless (no browser): the script runs without an exception and shows the model and its record.

    AppTest has no real server session, which streamlit-webrtc needs, so the WebRTC component is replaced by a
    stand-in that is never playing (the browser tests above exercise the real one).
    """
    import streamlit_webrtc
    from streamlit.testing.v1 import AppTest

    from fer_realtime.core.model_file import default_model_path, read_metadata

    calls = []

    def fake_webrtc_streamer(**kwargs):
        calls.append(kwargs)
        return SimpleNamespace(state=SimpleNamespace(playing=False, signalling=False))

    require_model()
    monkeypatch.setattr(streamlit_webrtc, "webrtc_streamer", fake_webrtc_streamer)
    # An earlier AppTest in this process (another test file's) has imported the tab with the real component bound.
    monkeypatch.setattr("webapp.live_tab.webrtc_streamer", fake_webrtc_streamer)
    # the Training tab's runs and the model list's models/ folder: empty ones, not the repository's
    monkeypatch.setenv("FER_REALTIME_RUNS_DIR", str(tmp_path / "runs" / "training"))
    monkeypatch.setenv("FER_REALTIME_MODELS_DIR", str(tmp_path / "models"))
    app = AppTest.from_file(str(REPO_ROOT / "streamlit_app.py"), default_timeout=120).run()
    assert not app.exception, [e.message for e in app.exception]
    model_box = app.sidebar.selectbox(key="model")
    assert model_box.options and default_model_path().name in model_box.options[0]
    metadata = read_metadata(default_model_path())
    accuracy = metadata.metrics.get("heldout_accuracy")
    if accuracy is not None:
        assert f"{accuracy:.1%}" in model_box.options[0]
    codes = [c.value for c in app.code]
    assert "python -m fer_realtime train --data DATA_DIR --out models/NAME.keras" in codes
    if metadata.command:
        assert metadata.command in codes
    notes = " ".join(m.value for m in app.markdown)
    assert "test-time augmentation: " + TestTimeAugmentation.of(metadata).describe() in notes
    if metadata.int8.get("used"):
        assert "int8 TensorFlow Lite copy" in notes
    assert app.sidebar.radio(key="detector").options == ["haar", "mediapipe"]
    assert not [e.value for e in app.error], [e.value for e in app.error]
    (kwargs,) = calls
    assert kwargs["media_stream_constraints"] == {"video": {"width": 640, "height": 480}, "audio": False}
    assert kwargs["rtc_configuration"] == {"iceServers": []} and kwargs["async_processing"] is True
