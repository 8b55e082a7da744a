"""Helpers for the browser tests: a fake-camera video of a real portrait, and the Streamlit server process."""

from __future__ import annotations

import contextlib
import os
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
    from playwright.sync_api import sync_playwright
except ImportError:  # pragma: no cover - CI installs it
    sync_playwright = None

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
