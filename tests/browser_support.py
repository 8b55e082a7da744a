"""Helpers for the browser tests: a fake-camera video of a real portrait, the Streamlit server process, and the
page interactions the browser test modules share (waiting for reruns, choosing options, the live stream)."""

from __future__ import annotations

import base64
import contextlib
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
try:
    from playwright.sync_api import TimeoutError as PlaywrightTimeoutError
    from playwright.sync_api import sync_playwright
except ImportError:  # pragma: no cover - CI installs it
    sync_playwright = None
    PlaywrightTimeoutError = TimeoutError

BROWSER_ARGS = ("--no-sandbox", "--disable-background-networking", "--disable-gpu")
FAKE_CAMERA_ARGS = ("--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream")


@contextlib.contextmanager
def chromium_browser(*extra_args: str):
    """Headless Debian chromium through Playwright, closed on exit."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=[*BROWSER_ARGS, *extra_args]
        )
        try:
            yield browser
        finally:
            browser.close()


needs_browser = pytest.mark.skipif(
    sync_playwright is None or CHROMIUM is None,
    reason="needs the playwright Python package and a `chromium` executable on PATH (apt-get install chromium)",
)

REPO_ROOT = Path(__file__).resolve().parents[1]
WIDTH, HEIGHT = 640, 480


def portrait_frame() -> np.ndarray:
    """scikit-image's astronaut photograph (a real portrait), 480x480, centred on a 640x480 grey BGR frame."""
    from skimage import data

    rgb = data.astronaut()  # 512x512 RGB
    face = cv2.resize(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), (HEIGHT, HEIGHT), interpolation=cv2.INTER_AREA)
    frame = np.full((HEIGHT, WIDTH, 3), 96, dtype=np.uint8)
    left = (WIDTH - HEIGHT) // 2
    frame[:, left : left + HEIGHT] = face
    return frame


def write_y4m(path: Path, frame_bgr: np.ndarray, frames: int = 30, fps: int = 30) -> Path:
    """Write a YUV4MPEG2 (4:2:0 planar) file that repeats one BGR frame; Chromium's fake camera loops it."""
    height, width = frame_bgr.shape[:2]
    i420 = cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2YUV_I420)  # Y plane, then U, then V, each contiguous
    assert i420.size == width * height * 3 // 2
    payload = i420.tobytes()
    with open(path, "wb") as f:
        f.write(f"YUV4MPEG2 W{width} H{height} F{fps}:1 Ip A1:1 C420jpeg\n".encode("ascii"))
        for _ in range(frames):
            f.write(b"FRAME\n")
            f.write(payload)
    return path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class StreamlitServer:
    """`streamlit run streamlit_app.py` on a free loopback port, with its output in a log file."""

    def __init__(self, log_path: Path, env: dict | None = None, cwd: Path | None = None):
        """`cwd`: the working directory to start from (default the repository root; the page must not need it)."""
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self._log = open(log_path, "wb")
        command = [
            sys.executable, "-m", "streamlit", "run", str(REPO_ROOT / "streamlit_app.py"),
            "--server.headless", "true",
            "--server.port", str(self.port),
            "--server.address", "127.0.0.1",
            "--browser.gatherUsageStats", "false",
            "--server.fileWatcherType", "none",
        ]
        self.process = subprocess.Popen(
            command, cwd=cwd or REPO_ROOT, stdout=self._log, stderr=subprocess.STDOUT,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})},
        )

    def wait_until_serving(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"streamlit exited with {self.process.returncode}:\n{self.log()}")
            try:
                with urllib.request.urlopen(f"{self.url}/_stcore/health", timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"streamlit did not serve within {timeout:.0f} s:\n{self.log()}")

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")[-6000:]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self._log.close()


def portrait_face_box() -> tuple[int, int, int, int]:
    """Where the astronaut's face lies in portrait_frame(): x, y, w, h (her face in the 512x512 original is
    about (177, 66, 95, 95))."""
    scale = HEIGHT / 512
    left = (WIDTH - HEIGHT) // 2
    x, y, w, h = 177, 66, 95, 95
    return int(x * scale) + left, int(y * scale), int(w * scale), int(h * scale)


def overlay_evidence(received_bgr: np.ndarray, raw_bgr: np.ndarray, face_box, colors) -> dict:
    """Compare a frame that came back from the server with the frame the camera sent.

    Counts, around the face and elsewhere, the pixels the server changed strongly, and the pixels around the
    face that now have one of the overlay colours (`colors`, BGR) but did not before. Works at any received
    resolution (WebRTC may scale the video down); counts are in received pixels.
    """
    height, width = received_bgr.shape[:2]
    raw = cv2.resize(raw_bgr, (width, height), interpolation=cv2.INTER_AREA).astype(np.int16)
    got = received_bgr.astype(np.int16)
    sx, sy = width / raw_bgr.shape[1], height / raw_bgr.shape[0]
    x, y, w, h = face_box
    x0, x1 = int(max(0, x - 0.5 * w) * sx), int(min(raw_bgr.shape[1], x + 2.6 * w) * sx)
    y0, y1 = int(max(0, y - 0.8 * h) * sy), int(min(raw_bgr.shape[0], y + 1.6 * h) * sy)
    near = np.zeros((height, width), dtype=bool)
    near[y0:y1, x0:x1] = True
    changed = np.abs(got - raw).max(axis=2) > 80
    colored = {}
    for name, color in colors.items():
        color = np.array(color, dtype=np.int16)
        now = np.abs(got - color).max(axis=2) <= 45
        before = np.abs(raw - color).max(axis=2) <= 70
        colored[name] = int((now & ~before & near).sum())
    best = max(colored, key=colored.get)
    return {
        "size": (width, height),
        "changed_near_face": int((changed & near).sum()),
        "changed_elsewhere_fraction": float((changed & ~near).sum() / max(1, (~near).sum())),
        "near_face_area": int(near.sum()),
        "best_color": best,
        "best_color_pixels": colored[best],
        "colored": colored,
    }


# --------------------------------------------------------------------------------------------------------------
# Using the page
# --------------------------------------------------------------------------------------------------------------


def require_model() -> None:
    from fer_realtime.core.model_file import default_model_path

    if not default_model_path().is_file():
        pytest.fail(f"the page needs a model: {default_model_path()} is missing (or point FER_REALTIME_MODEL at one)")


@contextlib.contextmanager
def running_server(log_path: Path, env: dict | None = None, cwd: Path | None = None, timeout: float = 90.0):
    """A StreamlitServer that serves for the duration of the block (for module-scoped fixtures)."""
    require_model()
    server = StreamlitServer(log_path, env=env, cwd=cwd)
    try:
        server.wait_until_serving(timeout=timeout)
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def app_page(browser, url: str, width: int = 1400, height: int = 1000):
    """The page in a fresh browser context (a new Streamlit session), once its title is shown. Whether the live
    stream's component has reported its state to the server yet is noted, for show_tab."""
    context = browser.new_context(viewport={"width": width, "height": height})
    try:
        page = context.new_page()
        page.set_default_timeout(60_000)
        page.fer_live_component_reported = False

        def note_report(payload) -> None:  # a message to the server that carries the component's widget state
            if LIVE_COMPONENT_KEY in (payload if isinstance(payload, bytes) else payload.encode()):
                page.fer_live_component_reported = True

        page.on("websocket", lambda socket: socket.on("framesent", note_report))
        page.goto(url)
        page.get_by_role("heading", name="fer-realtime").wait_for()
        yield page
    finally:
        context.close()


def show_tab(page, name: str) -> None:
    """Open a tab of the page (a page from app_page) and wait for the rerun that may come with it.

    streamlit-webrtc's component (on the Live tab) reports its state to the server once it is up, which reruns the
    script: a click or a file that landed in that rerun was lost (a Load click in the Training tab, Process in the
    Video tab). So, leaving the Live tab: the component is up first, then the tab, then its report, unless it came
    already (it is sent as the component's button shows, just before or after), and the rerun are waited out.
    (Waiting for any message in the 3 s after the click, as this did before, waited the whole 3 s when it had.)
    """
    leaving_live = page.get_by_role("tab", name="Live").get_attribute("aria-selected") == "true"
    if leaving_live:
        webrtc_frame(page).get_by_role("button").first.wait_for(state="attached", timeout=120_000)
    page.get_by_role("tab", name=name).click()
    deadline = time.monotonic() + (3.0 if leaving_live else 0.0)
    while not page.fer_live_component_reported and time.monotonic() < deadline:
        time.sleep(0.05)
    wait_until_idle(page)


def main_area(page):
    return page.locator('[data-testid="stMain"]')


def sidebar(page):
    return page.locator('[data-testid="stSidebar"]')


def wait_until_idle(page, settle: float = 0.5, timeout: float = 120.0) -> None:
    """Wait until the script run is over: Streamlit's app root says `data-test-script-state="notRunning"`, and
    still says so `settle` seconds later (a widget or component may ask for another run). Not while the live
    stream plays: its figure loop keeps the script running. Fails after `timeout` seconds, naming the state.

    (Watching the "Running..." status icon instead, as this did before, misses runs shorter than the half second
    Streamlit waits before showing it, and gave up silently: a file or click that then landed in a rerun was lost.)
    """
    app = page.locator('[data-testid="stApp"]')
    deadline = time.monotonic() + timeout
    quiet_since = None
    state = None
    while time.monotonic() < deadline:
        state = app.get_attribute("data-test-script-state") if app.count() else None
        if state != "notRunning":
            quiet_since = None
        elif quiet_since is None:
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since >= settle:
            return
        time.sleep(0.1)
    raise AssertionError(f"the page's script was still {state!r} after {timeout:.0f} s")


def selected_option(page, label: str, scope=None) -> str:
    return (scope or main_area(page)).get_by_role("combobox", name=label, exact=True).input_value()


def choose_option(page, label: str, option: str, scope=None, exact: bool = True, idle: bool = True) -> None:
    """Pick `option` in the selectbox labelled `label` (Streamlit's selectbox is a combobox with a listbox).
    `exact=False`: the first option containing `option`. `idle=False` while the live stream plays."""
    box = (scope or main_area(page)).get_by_role("combobox", name=label, exact=True)
    wanted = page.get_by_role("option", name=option, exact=True) if exact else (
        page.get_by_role("option").filter(has_text=option).first)
    for attempt in range(4):  # a rerun that lands while the list opens closes it again: retry
        # in view first: the scroll a click makes to reach a box below the fold closed the list it opened (each
        # such choice waited out the 5 s below and a retry)
        box.scroll_into_view_if_needed()
        box.click()
        try:
            wanted.click(timeout=5_000)
            break
        except Exception:
            if attempt == 3:
                raise
            page.keyboard.press("Escape")
            if idle:
                wait_until_idle(page)
    if idle:
        wait_until_idle(page)
    value = box.input_value()
    assert (value == option) if exact else (option in value), value


def assert_no_traceback(page, context: str = "") -> None:
    assert page.get_by_text("Traceback").count() == 0, context
    assert page.locator('[data-testid="stException"]').count() == 0, context


def error_messages(scope) -> list[str]:
    return [text.strip() for text in scope.locator('[data-testid="stAlertContentError"]').all_inner_texts()]


# --------------------------------------------------------------------------------------------------------------
# The live stream
# --------------------------------------------------------------------------------------------------------------

WEBRTC_IFRAME = 'iframe[title="streamlit_webrtc.component.webrtc_streamer"]'
LIVE_COMPONENT_KEY = b"fer-live"  # the key webapp/live_tab.py gives webrtc_streamer: in its widget id
GRAB_FRAME_JS = """(video) => {
    if (!video.videoWidth || video.readyState < 2) return null;
    const canvas = document.createElement('canvas');
    canvas.width = video.videoWidth;
    canvas.height = video.videoHeight;
    canvas.getContext('2d').drawImage(video, 0, 0);
    return canvas.toDataURL('image/png');
}"""
# the caption under the live figures: "haar face detector · model fer_cnn.keras on CPU · 123 frames processed"
LIVE_CAPTION = re.compile(r"(\w+) face detector · model (.+?) on (.+?) · (\d+) frames processed")


def webrtc_frame(page):
    return page.frame_locator(WEBRTC_IFRAME)


def press_stream_button(page, name: str) -> None:
    """Press the stream's START or STOP button (inside streamlit-webrtc's iframe; its accessible name is "Start")."""
    webrtc_frame(page).get_by_role("button", name=name).click()


def faces_figure(page) -> int | None:
    metric = page.locator('[data-testid="stMetric"]').filter(has_text="Faces")
    if metric.count() == 0:
        return None
    try:
        return int(metric.first.locator('[data-testid="stMetricValue"]').inner_text(timeout=2000).strip())
    except Exception:  # not rendered yet, or being redrawn
        return None


def live_status(page) -> dict | None:
    """What the live figures say now (faces, detector, model, frames), or None while they are not shown."""
    caption = page.get_by_text(LIVE_CAPTION)
    try:
        if caption.count() == 0:
            return None
        match = LIVE_CAPTION.search(caption.first.inner_text(timeout=2000))
    except Exception:  # being redrawn
        return None
    if match is None:
        return None
    return {"faces": faces_figure(page), "detector": match.group(1), "model": match.group(2),
            "device": match.group(3), "frames": int(match.group(4)), "errors": error_messages(main_area(page))}


def wait_for_live(page, check, timeout: float = 90.0, what: str = "the live figures") -> dict:
    """Poll live_status until `check(status)` holds; fail with the last status seen."""
    deadline = time.monotonic() + timeout
    status = None
    while time.monotonic() < deadline:
        status = live_status(page) or status
        if status is not None and check(status):
            return status
        time.sleep(0.25)
    raise AssertionError(f"{what} did not come within {timeout:.0f} s; last seen: {status}")


def grab_received_frame(video) -> np.ndarray | None:
    """The frame the browser's <video> shows now (what came back from the server), BGR."""
    data_url = video.evaluate(GRAB_FRAME_JS)
    if not data_url:
        return None
    png = base64.b64decode(data_url.split(",", 1)[1])
    return cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)


def wait_for_labelled_face(page, camera_frame: np.ndarray, timeout: float = 90.0, frames_in_a_row: int = 1) -> dict:
    """Wait until the video the browser receives shows the camera's portrait with a box and an emotion-coloured
    label drawn on the face (as test_app_browser's live test checks it) and the live figures count a face, in
    `frames_in_a_row` consecutive looks half a second apart. Returns the last evidence; fails naming it."""
    from fer_realtime.faces.drawing import EMOTION_COLORS

    video = webrtc_frame(page).locator("video")
    video.wait_for(state="attached", timeout=60_000)
    deadline = time.monotonic() + timeout
    evidence, faces, streak = None, None, 0
    while time.monotonic() < deadline:
        received = grab_received_frame(video)
        faces = faces_figure(page)
        if received is not None:
            evidence = overlay_evidence(received, camera_frame, portrait_face_box(), EMOTION_COLORS)
            scale = evidence["size"][0] * evidence["size"][1] / (640 * 480)
            labelled = (faces is not None and faces >= 1 and evidence["changed_near_face"] >= 400 * scale
                        and evidence["best_color_pixels"] >= 250 * scale
                        and evidence["changed_elsewhere_fraction"] < 0.03)
            streak = streak + 1 if labelled else 0
            if streak >= frames_in_a_row:
                return {**evidence, "faces": faces}
        time.sleep(0.5)
    raise AssertionError(f"no labelled face in the received video within {timeout:.0f} s; faces figure {faces}, "
                         f"overlay evidence {evidence}")


def page_script(monkeypatch, folders: dict[str, Path], timeout: float = 120):
    """The page's script under Streamlit's AppTest (no browser, no camera: webrtc_streamer is a stand-in), with its
    runs, models and uploads in `folders` (and the scorecard's datasets, if `folders` names them)."""
    from types import SimpleNamespace

    import streamlit_webrtc
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("FER_REALTIME_RUNS_DIR", str(folders["runs"]))
    monkeypatch.setenv("FER_REALTIME_MODELS_DIR", str(folders["models"]))
    monkeypatch.setenv("FER_REALTIME_UPLOADS_DIR", str(folders["uploads"]))
    if "datasets" in folders:
        monkeypatch.setenv("FER_REALTIME_DATASETS", str(folders["datasets"]))
    monkeypatch.setattr(
        streamlit_webrtc, "webrtc_streamer",
        lambda **kwargs: SimpleNamespace(state=SimpleNamespace(playing=False, signalling=False)),
    )
    return AppTest.from_file(str(REPO_ROOT / "streamlit_app.py"), default_timeout=timeout)


def write_run(runs_dir: Path, run_id: str, status: dict) -> Path:
    """A stored training run (its request and status files) as the Training tab lists it."""
    import json

    run_dir = runs_dir / run_id
    run_dir.mkdir(parents=True)
    (run_dir / "request.json").write_text(json.dumps({"dataset": "/data/faces", "name": status.get("name", "")}))
    (run_dir / "status.json").write_text(json.dumps({"run_id": run_id, **status}))
    return run_dir
