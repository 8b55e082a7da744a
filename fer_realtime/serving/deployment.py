"""The classifier as a Ray Serve application: every replica loads the model once and answers over HTTP.

    POST /analyze[?detector=mediapipe|haar]  image bytes -> {"faces": [...]}, as `predict --json` prints an image
    POST /classify   .npy float32 (N, H, W, C) model inputs -> .npy float32 (N, K) probabilities; the live path's
                     route: concurrent requests (many streams, many page processes) are batched into one model call
    GET  /info       the model, its classes and input size, the device and the replica answering

`fer-realtime serve` (cli/serve.py) runs it; inference/remote.py is the other end.
"""

from __future__ import annotations

import asyncio
import io
import os
import socket
import threading
import time
from pathlib import Path

import numpy as np
import ray
from ray import serve
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..core.errors import FerError, ImageReadError
from ..core.images import MAX_FILE_BYTES, decode_image
from ..core.model_file import default_model_path, read_metadata, weights_digest
from ..faces.detector import DETECTOR_NAMES
from ..faces.detectors import DEFAULT_DETECTOR, still_image_options
from ..inference.analyzer import FaceAnalyzer
from ..inference.engine import get_engine

MAX_BATCH_REQUESTS = 8  # /classify requests merged into one model call
BATCH_WAIT_S = 0.005  # how long the first request of a batch waits for others
MAX_ONGOING_REQUESTS = 64  # per replica; above MAX_BATCH_REQUESTS so that a full batch can gather
NPY_MAGIC = b"\x93NUMPY"
LOCAL_OBJECT_STORE_BYTES = 100 * 2**20  # the model's tensors never go through the object store


def _error(status: int, sentence: str) -> JSONResponse:
    return JSONResponse({"error": sentence}, status_code=status)


@serve.deployment(max_ongoing_requests=MAX_ONGOING_REQUESTS)
class EmotionModel:
    """One replica: the engine of `model_path`, shared by its routes; analyzers (one per detector) behind a lock,
    since a detector is not shared between threads."""

    def __init__(self, model_path: str):
        self.engine = get_engine(model_path)
        meta = self.engine.metadata
        self.input_shape = (*meta.input_size, meta.channels)
        self.info = {
            "model": Path(self.engine.loaded.path).name,
            "digest": weights_digest(self.engine.loaded.model),
            "classes": list(meta.classes),
            "input_size": list(meta.input_size),
            "channels": meta.channels,
            "device": self.engine.device,
            "runtime": self.engine.runtime,
            "replica": serve.get_replica_context().replica_id.unique_id,
        }
        self._analyzers: dict[str, FaceAnalyzer] = {}
        self._analyzer_lock = threading.Lock()

    async def __call__(self, request: Request) -> Response:
        route = (request.method, request.url.path.rstrip("/") or "/")
        if route == ("GET", "/info"):
            return JSONResponse(self.info)
        if route == ("POST", "/classify"):
            return await self._classify_route(await request.body())
        if route == ("POST", "/analyze"):
            return await self._analyze_route(await request.body(), request.query_params.get("detector"))
        return _error(404, f"There is no {route[0]} {route[1]}; the routes are POST /analyze, POST /classify and "
                           "GET /info.")

    async def _classify_route(self, body: bytes) -> Response:
        try:
            batch = self._model_inputs(body)
        except FerError as exc:
            return _error(400, str(exc))
        probabilities = await self.classify_batched(batch) if len(batch) else self.engine.predict(batch)
        out = io.BytesIO()
        np.save(out, np.ascontiguousarray(probabilities, dtype=np.float32), allow_pickle=False)
        return Response(out.getvalue(), media_type="application/octet-stream")

    def _model_inputs(self, body: bytes) -> np.ndarray:
        if len(body) > MAX_FILE_BYTES:
            raise FerError(f"The body is {len(body) / 2**20:.0f} MB; the limit is {MAX_FILE_BYTES // 2**20} MB.")
        if not body.startswith(NPY_MAGIC):
            raise FerError("The body is not a .npy array (it does not start with the .npy format's magic bytes).")
        try:
            batch = np.load(io.BytesIO(body), allow_pickle=False)
        except (ValueError, EOFError, OSError) as exc:
            raise FerError(f"The body is not a readable .npy array ({str(exc).strip() or type(exc).__name__}).") from None
        expected = ("N", *self.input_shape)
        if batch.dtype != np.float32 or batch.ndim != 4 or batch.shape[1:] != self.input_shape:
            raise FerError(f"The body is a {batch.dtype} array of shape {batch.shape}; the model takes float32 "
                           f"of shape ({', '.join(map(str, expected))}).")
        return batch

    @serve.batch(max_batch_size=MAX_BATCH_REQUESTS, batch_wait_timeout_s=BATCH_WAIT_S)
    async def classify_batched(self, batches: list[np.ndarray]) -> list[np.ndarray]:
        """Many requests' faces through the network in one call; each request gets its own rows back."""
        probabilities = await asyncio.to_thread(self.engine.predict, np.concatenate(batches))
        return np.split(probabilities, np.cumsum([len(b) for b in batches])[:-1])

    async def _analyze_route(self, body: bytes, detector: str | None) -> Response:
        detector = detector or DEFAULT_DETECTOR
        if detector not in DETECTOR_NAMES:
            return _error(400, f"Unknown detector {detector!r}; choose from {', '.join(DETECTOR_NAMES)}.")
        try:
            frame = decode_image(body, "The request body")
        except ImageReadError as exc:
            return _error(400, str(exc))
        try:
            faces = await asyncio.to_thread(self._analyze, frame, detector)
        except FerError as exc:  # e.g. the detector's model file cannot be loaded on this node
            return _error(500, str(exc))
        return JSONResponse({"faces": faces})

    def _analyze(self, frame: np.ndarray, detector: str) -> list[dict]:
        with self._analyzer_lock:
            analyzer = self._analyzers.get(detector)
            if analyzer is None:
                analyzer = FaceAnalyzer(still_image_options(detector), model=self.engine)
                self._analyzers[detector] = analyzer
            return [face.to_dict() for face in analyzer.analyze(frame)]


def build_app(model_path: str | os.PathLike | None, replicas: int, gpus_per_replica: float = 1.0):
    """The application bound to a model file (default: the shipped model, or $FER_REALTIME_MODEL here, on the
    machine that deploys it); each replica takes a GPU share only when the Ray cluster has GPUs."""
    path = _checked_model_path(model_path, replicas)
    cluster_gpus = ray.cluster_resources().get("GPU", 0)
    gpus = min(gpus_per_replica, cluster_gpus / replicas) if cluster_gpus else 0
    options = {"num_cpus": 1, "num_gpus": gpus}
    return EmotionModel.options(num_replicas=replicas, ray_actor_options=options).bind(str(path))


def _checked_model_path(model_path, replicas: int) -> Path:
    """The model file's absolute path (replicas may start in another folder), checked before any Ray process."""
    if replicas < 1:
        raise FerError(f"--replicas must be at least 1, got {replicas}.")
    path = Path(model_path).expanduser().resolve() if model_path is not None else default_model_path().resolve()
    read_metadata(path)  # a wrong file fails here, in one sentence, not in every replica
    return path


def _check_port_free(host: str, port: int) -> None:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise FerError(f"Cannot listen on {host}:{port} ({exc.strerror}); choose another --port.") from None


def run_server(host: str = "127.0.0.1", port: int = 8000, replicas: int = 1, address: str | None = None,
               model: str | os.PathLike | None = None, blocking: bool = True, temp_dir: str | None = None) -> str:
    """Start Ray (join the cluster at `address`, else a small local instance), deploy the application at
    http://host:port/ and, when `blocking`, serve until Ctrl-C or SIGTERM, then shut Serve (and a local Ray) down.
    Returns the URL."""
    _checked_model_path(model, replicas)
    _check_port_free(host, port)
    if address:
        ray.init(address=address)
    else:
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        ray.init(address="local", num_cpus=max(2, replicas), include_dashboard=False,
                 object_store_memory=LOCAL_OBJECT_STORE_BYTES, _temp_dir=temp_dir)
    url = f"http://{host}:{port}"
    try:
        serve.start(http_options={"host": host, "port": port})
        serve.run(build_app(model, replicas), route_prefix="/")
    except BaseException:
        _shutdown()
        raise
    print(f"Serving the model on {replicas} replica(s) at {url} (POST /analyze, POST /classify, GET /info); "
          "Ctrl-C stops.", flush=True)
    if not blocking:
        return url
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:  # also on SIGTERM, which Ray's driver turns into SystemExit
        _shutdown()
    return url


def _shutdown() -> None:
    serve.shutdown()
    ray.shutdown()
