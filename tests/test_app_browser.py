"""The Streamlit page, tested as a person uses it: in a real Chromium whose fake camera plays a portrait.

Chromium gets a YUV4MPEG2 file made from scikit-image's astronaut photograph as its camera; the page streams it
over WebRTC (browser and server on this machine, no ICE server) to the app, which detects, classifies and draws on every frame and streams
it back. The test reads the frame the browser received and checks that a box and a label were drawn on the
face, and that the page's live figures count the face. The sidebar test uploads a photo and a corrupt file.

Needs the `playwright` Python package and Debian's `chromium` (no `playwright install`); skipped otherwise.
"""

from __future__ import annotations

import time
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from browser_support import (
    FAKE_CAMERA_ARGS,
    REPO_ROOT,
    app_page,
    chromium_browser,
    faces_figure,
    grab_received_frame,
    needs_browser,
    overlay_evidence,
    portrait_face_box,
    portrait_frame,
    press_stream_button,
    require_model,
    running_server,
    webrtc_frame,
    write_y4m,
)
from fer_realtime.faces.drawing import EMOTION_COLORS
from fer_realtime.inference.tta import TestTimeAugmentation


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
def page(browser, app_server):
    with app_page(browser, app_server.url) as page:
        yield page


@needs_browser
def test_live_stream_draws_the_label_on_the_face(page, app_server, camera_frame, tmp_path):
    started = time.monotonic()
    press_stream_button(page, "START")
    video = webrtc_frame(page).locator("video")
    video.wait_for(state="attached", timeout=60_000)

    face_box = portrait_face_box()
    deadline = time.monotonic() + 90
    faces, evidence, received = None, None, None
    while time.monotonic() < deadline:
        received = grab_received_frame(video)
        faces = faces_figure(page)
        if received is not None:
            evidence = overlay_evidence(received, camera_frame, face_box, EMOTION_COLORS)
            scale = evidence["size"][0] * evidence["size"][1] / (640 * 480)
            if (
                faces is not None
                and faces >= 1
                and evidence["changed_near_face"] >= 400 * scale
                and evidence["best_color_pixels"] >= 250 * scale
                and evidence["changed_elsewhere_fraction"] < 0.03
            ):
                break
        time.sleep(0.5)
    screenshot = tmp_path / "live_overlay.png"
    page.screenshot(path=str(screenshot))
    if received is not None:
        cv2.imwrite(str(tmp_path / "received_frame.png"), received)
    print(f"\nscreenshot: {screenshot}\nreceived frame: {tmp_path / 'received_frame.png'}\nevidence: {evidence}")
    print(f"live test took {time.monotonic() - started:.1f} s after page load")

    context = f"faces figure={faces}, overlay evidence={evidence}; screenshot {screenshot}\n{app_server.log()}"
    assert received is not None, f"the browser never showed a received video frame; {context}"
    assert faces is not None and faces >= 1, f"the page's live figures never counted a face; {context}"
    scale = evidence["size"][0] * evidence["size"][1] / (640 * 480)
    assert evidence["changed_near_face"] >= 400 * scale, f"no box/label drawn around the face; {context}"
    assert evidence["best_color_pixels"] >= 250 * scale, f"no label tag in an emotion colour; {context}"
    assert evidence["changed_elsewhere_fraction"] < 0.03, f"the frame changed away from the face; {context}"

    # the live table of current faces (track id, emotion, confidence)
    page.locator('[data-testid="stTable"]').filter(has_text="track id").first.wait_for(timeout=10_000)
    assert page.get_by_text("Traceback").count() == 0
    assert page.locator('[data-testid="stException"]').count() == 0


@needs_browser
def test_sidebar_photos_show_faces_and_a_clear_error_for_a_bad_file(page, app_server, camera_frame):
    ok, png = cv2.imencode(".png", camera_frame)
    assert ok
    junk = np.random.default_rng(7).bytes(4096)
    sidebar = page.locator('[data-testid="stSidebar"]')
    photos = sidebar.locator('[data-testid="stFileUploader"]').filter(has_text="Photos")
    photos.locator('input[type="file"]').set_input_files(
        [
            {"name": "astronaut.png", "mimeType": "image/png", "buffer": png.tobytes()},
            {"name": "broken.jpg", "mimeType": "image/jpeg", "buffer": junk},
        ]
    )
    error = sidebar.locator('[data-testid="stAlertContentError"]').filter(has_text="broken.jpg")
    error.wait_for(timeout=90_000)
    sidebar.locator('[data-testid="stImage"] img').first.wait_for(timeout=60_000)
    chart = sidebar.locator('[data-testid="stVegaLiteChart"]').first
    chart.wait_for(timeout=60_000)
    context = app_server.log()

    message = error.first.inner_text()
    assert "Traceback" not in message and "\n" not in message.strip(), message
    assert "broken.jpg" in message and message.strip().endswith("."), message
    assert sidebar.get_by_text("Face 1").count() >= 1, f"no face reported for the photo; {context}"
    assert sidebar.get_by_text("No face found in astronaut.png.").count() == 0
    assert page.get_by_text("Traceback").count() == 0
    assert page.locator('[data-testid="stException"]').count() == 0


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
