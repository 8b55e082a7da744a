"""`fer-realtime serve` (Ray Serve) as a subprocess on a free port: /info, /analyze and /classify answer as the local
model does, concurrent /classify requests each get their own rows, bad bodies get a 400 sentence; once the server
and its Ray processes are gone, a RemoteClassifier keeps classifying with the local model, and (against a stdlib
stand-in server) goes back to the server once `retry_after_s` has passed. The client never imports ray."""

from __future__ import annotations

import io
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cv2
import numpy as np
import pytest

from helpers import astronaut_bgr
from serve_support import alive, free_port, stop_session

pytest.importorskip("ray")

from fer_realtime.core.errors import FerError  # noqa: E402
from fer_realtime.core.model_file import ModelMetadata  # noqa: E402
from fer_realtime.faces.crops import crop_faces  # noqa: E402
from fer_realtime.faces.detectors import still_image_options  # noqa: E402
from fer_realtime.inference.analyzer import FaceAnalyzer  # noqa: E402
from fer_realtime.inference.engine import get_engine  # noqa: E402
from fer_realtime.inference.remote import RemoteClassifier, analyze_remote  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
READY_TIMEOUT_S = 180


def _request(url: str, body: bytes | None = None, timeout: float = 30.0) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, method="GET" if body is None else "POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _npy(array: np.ndarray) -> bytes:
    out = io.BytesIO()
    np.save(out, array, allow_pickle=False)
    return out.getvalue()


class Server:
    def __init__(self):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.ray_dir = tempfile.mkdtemp(prefix="fer-ray-", dir="/tmp")  # short: Ray's socket paths live in it
        self.log = open(Path(self.ray_dir) / "serve.log", "w+b")
        env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0")
        env.pop("RAY_ADDRESS", None)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "fer_realtime", "serve", "--port", str(self.port), "--temp-dir", self.ray_dir],
            cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)

    def output(self) -> str:
        self.log.flush()
        return (Path(self.ray_dir) / "serve.log").read_text(errors="replace")[-6000:]

    def wait_ready(self) -> dict:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"fer-realtime serve exited with {self.process.returncode}:\n{self.output()}")
            try:
                status, body = _request(self.url + "/info", timeout=3)
                if status == 200:
                    return json.loads(body)
            except (OSError, ValueError):
                pass
            time.sleep(1)
        pytest.fail(f"fer-realtime serve did not answer /info within {READY_TIMEOUT_S} s:\n{self.output()}")

    def stop(self) -> set[int]:
        """SIGTERM to the server's process group (SIGKILL if it lingers); returns its Ray processes' ids."""
        pids = stop_session(self.process, self.ray_dir)
        self.log.close()
        return pids

    def remove_files(self) -> None:
        shutil.rmtree(self.ray_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def server():
    started = Server()
    try:
        started.info = started.wait_ready()
        yield started
    finally:
        started.stop()
        started.remove_files()


@pytest.fixture(scope="module")
def engine():
    return get_engine(None)


def _crops(engine, seed: int, count: int) -> np.ndarray:
    """`count` faces as the model takes them: the astronaut's face, shifted and dimmed differently per seed."""
    frame = astronaut_bgr()
    rng = np.random.default_rng(seed)
    boxes = [(177 + int(rng.integers(-12, 13)), 66 + int(rng.integers(-12, 13)), 95, 95) for _ in range(count)]
    crops = crop_faces(frame, boxes, engine.metadata)
    return (crops * rng.uniform(0.6, 1.0, size=(count, 1, 1, 1))).astype(np.float32)


def test_the_client_does_not_import_ray():
    code = "import sys, fer_realtime.inference.remote; print('ray' in sys.modules)"
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert run.stdout.strip() == "False", run.stdout + run.stderr


def test_serve_refuses_a_busy_port(capsys):
    from fer_realtime.cli.main import main

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        # in this process: the port is checked before any Ray process starts
        code = main(["serve", "--port", str(busy.getsockname()[1])])
    captured = capsys.readouterr()
    assert code == 2, captured.out + captured.err
    assert "Cannot listen on 127.0.0.1" in captured.err


def test_info_describes_the_served_model(server, engine):
    info = server.info
    assert info["model"] == "fer_cnn.keras"
    assert info["classes"] == list(engine.metadata.classes)
    assert info["input_size"] == list(engine.metadata.input_size) and info["channels"] == engine.metadata.channels
    assert len(info["digest"]) == 64 and info["device"] and info["replica"]


def test_analyze_answers_as_the_local_analyzer(server, engine):
    frame = astronaut_bgr()
    ok, png = cv2.imencode(".png", frame)
    assert ok
    remote = analyze_remote(server.url, png.tobytes(), detector="mediapipe")["faces"]
    local = [face.to_dict() for face in FaceAnalyzer(still_image_options("mediapipe"), model=engine).analyze(frame)]
    assert len(remote) == len(local) == 1
    assert remote[0]["box"] == local[0]["box"] and remote[0]["label"] == local[0]["label"]
    assert remote[0]["scores"].keys() == local[0]["scores"].keys()
    assert max(abs(remote[0]["scores"][k] - local[0]["scores"][k]) for k in local[0]["scores"]) <= 1e-3


def test_classify_answers_as_the_local_engine(server, engine):
    crops = _crops(engine, seed=1, count=4)
    status, body = _request(server.url + "/classify", _npy(crops))
    assert status == 200
    remote = np.load(io.BytesIO(body), allow_pickle=False)
    assert remote.dtype == np.float32 and remote.shape == (4, len(engine.metadata.classes))
    np.testing.assert_allclose(remote, engine.predict(crops), atol=1e-4)


def test_concurrent_requests_each_get_their_own_rows(server, engine):
    classifier = RemoteClassifier(server.url, engine, timeout_s=20.0, retry_after_s=600.0)
    batches = {(stream, i): _crops(engine, seed=100 * stream + i, count=1 + (stream + i) % 4)
               for stream in range(6) for i in range(4)}
    answers, errors = {}, []

    def stream(index: int):
        try:
            for i in range(4):
                answers[(index, i)] = classifier.predict(batches[(index, i)])
        except Exception as exc:  # reported below, with the thread's key
            errors.append((index, repr(exc)))

    threads = [threading.Thread(target=stream, args=(index,)) for index in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors
    assert classifier.mode == "remote" and classifier.problem == "", classifier.problem  # every answer was remote
    for key, batch in batches.items():
        np.testing.assert_allclose(answers[key], engine.predict(batch), atol=1e-4, err_msg=str(key))


@pytest.mark.parametrize("route, body, words", [
    ("/analyze", b"not an image at all", "not an image"),
    ("/analyze", b"", "empty"),
    ("/classify", b"not a numpy array", "not a .npy array"),
    ("/classify", _npy(np.zeros((2, 48, 48, 3), np.float32)), "shape (2, 48, 48, 3)"),
    ("/classify", _npy(np.zeros((2, 48, 48, 1), np.float64)), "float64"),
])
def test_bad_bodies_get_a_400_sentence(server, route, body, words):
    status, answer = _request(server.url + route, body)
    assert status == 400
    error = json.loads(answer)["error"]
    assert words in error and error.endswith(".")


def test_a_server_with_another_model_is_refused(server, engine):
    other = ModelMetadata(classes=("calm", "upset"))
    with pytest.raises(FerError, match="runs fer_cnn.keras with classes"):
        RemoteClassifier(server.url, engine, metadata=other)


def test_the_client_falls_back_to_the_local_model_when_the_server_dies(server, engine):
    classifier = RemoteClassifier(server.url, engine, timeout_s=5.0)
    crops = _crops(engine, seed=7, count=3)
    np.testing.assert_allclose(classifier.predict(crops), engine.predict(crops), atol=1e-4)
    assert classifier.mode == "remote" and classifier.device.startswith("Ray Serve at " + server.url)

    pids = server.stop()
    assert pids and not [pid for pid in pids if alive(pid)]
    with socket.socket() as probe, pytest.raises(OSError):
        probe.settimeout(2)
        probe.connect(("127.0.0.1", server.port))

    started = time.monotonic()
    np.testing.assert_allclose(classifier.predict(crops), engine.predict(crops), atol=1e-6)
    assert time.monotonic() - started < 10
    assert classifier.mode == "local"
    assert "unreachable" in classifier.problem and classifier.problem.endswith(".")
    assert "local fallback" in classifier.device


class _FakeModelServer(BaseHTTPRequestHandler):
    """Answers as `serve` does, with uniform probabilities (told apart from the local model's), or 503 while
    `failing` is set."""

    failing = False
    info: dict = {}

    def do_GET(self):
        self._answer(200, json.dumps(self.info).encode())

    def do_POST(self):
        batch = np.load(io.BytesIO(self.rfile.read(int(self.headers["Content-Length"]))), allow_pickle=False)
        uniform = np.full((len(batch), len(self.info["classes"])), 1 / len(self.info["classes"]), np.float32)
        self._answer(200, _npy(uniform))

    def _answer(self, status, body):
        if type(self).failing:
            status, body = 503, b'{"error": "No replica is ready."}'
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_the_client_uses_the_local_model_for_retry_after_s_then_the_server_again(engine):
    meta = engine.metadata
    handler = type("Handler", (_FakeModelServer,), {"info": {"model": "fake.keras", "classes": list(meta.classes),
                   "input_size": list(meta.input_size), "channels": meta.channels, "device": "CPU"}})
    fake = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=fake.serve_forever, daemon=True).start()
    try:
        classifier = RemoteClassifier(f"http://127.0.0.1:{fake.server_port}", engine, retry_after_s=1.0)
        crops = _crops(engine, seed=3, count=2)
        uniform = np.full((2, len(meta.classes)), 1 / len(meta.classes), np.float32)
        np.testing.assert_allclose(classifier.predict(crops), uniform)

        handler.failing = True
        np.testing.assert_allclose(classifier.predict(crops), engine.predict(crops), atol=1e-6)
        assert classifier.mode == "local" and "answered 503 (No replica is ready)" in classifier.problem
        handler.failing = False
        np.testing.assert_allclose(classifier.predict(crops), engine.predict(crops), atol=1e-6)  # still waiting
        time.sleep(1.1)
        np.testing.assert_allclose(classifier.predict(crops), uniform)
        assert classifier.mode == "remote" and classifier.problem == ""
    finally:
        fake.shutdown()
        fake.server_close()


def test_the_api_and_the_live_page_send_model_calls_to_the_server_in_the_environment(engine, monkeypatch):
    """FER_REALTIME_SERVE_URL set: EmotionRecognizer and the live session's processors classify on that server
    (here one answering uniform probabilities); pointing at nothing, they run the local model and say why."""
    from fer_realtime import EmotionRecognizer
    from fer_realtime.app.live import LiveSession
    from fer_realtime.core.model_file import default_model_path

    meta = engine.metadata
    handler = type("Handler", (_FakeModelServer,), {"info": {"model": "fake.keras", "classes": list(meta.classes),
                   "input_size": list(meta.input_size), "channels": meta.channels, "device": "CPU"}})
    fake = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=fake.serve_forever, daemon=True).start()
    frame = astronaut_bgr()
    try:
        monkeypatch.setenv("FER_REALTIME_SERVE_URL", f"http://127.0.0.1:{fake.server_port}")
        faces = EmotionRecognizer().analyze(frame)
        assert len(faces) == 1 and abs(faces[0].confidence - 1 / len(meta.classes)) < 1e-6  # the server's answer
        session = LiveSession()
        session.choose("mediapipe", str(default_model_path()))
        session.process(frame)
        update = session.latest()
        assert update.device.startswith("Ray Serve at") and update.model_problem == ""
        assert abs(update.faces[0].confidence - 1 / len(meta.classes)) < 1e-6
    finally:
        fake.shutdown()
        fake.server_close()

    monkeypatch.setenv("FER_REALTIME_SERVE_URL", f"http://127.0.0.1:{free_port()}")  # nobody there
    recognizer = EmotionRecognizer()
    faces = recognizer.analyze(frame)
    local = FaceAnalyzer(model=engine).analyze(frame)
    assert [f.label for f in faces] == [f.label for f in local] and recognizer.engine.mode == "local"
    assert "local fallback" in recognizer.device and "unreachable" in recognizer.engine.problem
