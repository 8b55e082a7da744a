"""The other end of `fer-realtime serve`: the engine interface over HTTP, with the local model as a fallback.

`RemoteClassifier` stands in for an InferenceEngine (`metadata`, `device`, `predict`, `warm_up`): faces are
cropped and preprocessed here, their batch goes to the server's /classify as .npy bytes. When the server cannot
be reached (refused, timed out, 5xx), the batch is retried once, then classified by the local model, and the local
model keeps classifying for `retry_after_s` before the server is tried again: a killed replica costs frames, not
the stream. Only the standard library and numpy: the page's default path never imports ray.
"""

from __future__ import annotations

import http.client
import io
import json
import os
import threading
import time
from collections.abc import Callable
from urllib.parse import urlsplit

import numpy as np

from ..core.errors import FerError
from ..core.model_file import ModelMetadata

SERVE_URL_ENV = "FER_REALTIME_SERVE_URL"


def serve_url_from_env() -> str | None:
    """The model server's URL from $FER_REALTIME_SERVE_URL, or None when it is unset or empty."""
    url = os.environ.get(SERVE_URL_ENV, "").strip().rstrip("/")
    return url or None


class ServerUnreachable(Exception):
    """The server did not answer usefully: connection refused or reset, timeout, a 5xx or a malformed answer."""


class _Http:
    """Requests to one server, one kept-alive connection per thread."""

    def __init__(self, url: str, timeout_s: float):
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise FerError(f"The model server URL {url!r} is not an http:// or https:// address.")
        self.url = url.rstrip("/")
        self._connection_type = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        self._netloc = parts.netloc
        self._prefix = parts.path.rstrip("/")
        self._timeout_s = timeout_s
        self._local = threading.local()

    def request(self, method: str, route: str, body: bytes | None = None,
                content_type: str = "application/octet-stream") -> tuple[int, bytes]:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = self._local.connection = self._connection_type(self._netloc, timeout=self._timeout_s)
        try:
            headers = {"Content-Type": content_type} if body is not None else {}
            connection.request(method, self._prefix + route, body=body, headers=headers)
            response = connection.getresponse()
            status, data = response.status, response.read()
        except (OSError, http.client.HTTPException) as exc:  # refused, reset, timed out, closed keep-alive
            connection.close()
            self._local.connection = None
            reason = str(exc).strip() or type(exc).__name__
            raise ServerUnreachable(f"the model server at {self.url} is unreachable ({reason})") from None
        if status >= 500:
            raise ServerUnreachable(f"the model server at {self.url} answered {status} ({_error_text(data)})")
        return status, data


def _error_text(data: bytes) -> str:
    try:
        return str(json.loads(data)["error"]).rstrip(".")
    except (ValueError, KeyError, TypeError):
        return data[:200].decode("utf-8", "replace").strip() or "no details"


class RemoteClassifier:
    """Classifies face batches on a model server, or with the local model while the server is unreachable.

    `local` is the local InferenceEngine, or a function returning it (called now, unless `metadata` is given:
    then only when it is first needed). Refuses (FerError) a server whose model has other classes or another input
    than the local model. `mode` is "remote" or "local"; `problem` says in one sentence why it is local ("" when
    remote). Safe to call from several threads.
    """

    def __init__(self, url: str, local, timeout_s: float = 2.0, retry_after_s: float = 5.0,
                 metadata: ModelMetadata | None = None):
        self._http = _Http(url, timeout_s)
        self.url = self._http.url
        self.retry_after_s = retry_after_s
        self._local_engine = local if hasattr(local, "predict") else None
        self._make_local: Callable[[], object] | None = None if self._local_engine is not None else local
        self._local_lock = threading.Lock()
        self.metadata = metadata if metadata is not None else self._local().metadata
        self._state_lock = threading.Lock()
        self._probing = False
        self._local_until = 0.0
        self.server_info: dict = {}
        self.mode, self.problem, self._fallback_reason = "remote", "", ""
        try:
            self._check_server()
        except ServerUnreachable as exc:
            self._fall_back(exc)

    # --- the engine interface ---------------------------------------------------------------------------------

    @property
    def device(self) -> str:
        if self.mode == "remote":
            return f"Ray Serve at {self.url} ({self.server_info.get('device', 'unknown device')})"
        return f"{self._local().device} (local fallback: {self._fallback_reason})"

    @property
    def runtime(self) -> str:
        if self.mode == "remote":
            return f"model server ({self.server_info.get('runtime', 'unknown runtime')})"
        return getattr(self._local(), "runtime", "local")

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """Class probabilities (N, K) for a float32 batch (N, H, W, C), from the server when it answers."""
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        if len(batch) == 0 or not self._server_due():
            return self._local().predict(batch)
        try:
            try:
                return self._classify_remote(batch)
            except ServerUnreachable:  # once more: a closed keep-alive connection or a replica restarting
                return self._classify_remote(batch)
        except ServerUnreachable as exc:
            self._fall_back(exc)
            return self._local().predict(batch)

    def warm_up(self) -> None:
        height, width = self.metadata.input_size
        self.predict(np.zeros((1, height, width, self.metadata.channels), dtype=np.float32))

    # --- internals --------------------------------------------------------------------------------------------

    def _local(self):
        if self._local_engine is None:
            with self._local_lock:
                if self._local_engine is None:
                    self._local_engine = self._make_local()
        return self._local_engine

    def _classify_remote(self, batch: np.ndarray) -> np.ndarray:
        body = io.BytesIO()
        np.save(body, batch, allow_pickle=False)
        status, data = self._http.request("POST", "/classify", body.getvalue())
        if status != 200:
            raise FerError(f"The model server refused the batch: {_error_text(data)}.")
        try:
            probabilities = np.load(io.BytesIO(data), allow_pickle=False)
        except (ValueError, EOFError, OSError):
            raise ServerUnreachable(f"the model server at {self.url} sent an answer that is not a .npy array") from None
        if probabilities.shape != (len(batch), len(self.metadata.classes)):
            raise ServerUnreachable(f"the model server at {self.url} sent {probabilities.shape} probabilities for "
                                    f"{len(batch)} faces")
        return probabilities.astype(np.float32, copy=False)

    def _check_server(self) -> None:
        """Read /info and refuse a server whose model takes other inputs or names other classes."""
        status, data = self._http.request("GET", "/info")
        try:
            info = json.loads(data) if status == 200 else None
        except ValueError:
            info = None
        if not isinstance(info, dict):
            raise ServerUnreachable(f"{self.url}/info did not answer with the model's description (HTTP {status})")
        meta = self.metadata
        theirs = (tuple(info.get("classes") or ()), tuple(info.get("input_size") or ()), info.get("channels"))
        ours = (tuple(meta.classes), tuple(meta.input_size), meta.channels)
        if theirs != ours:
            raise FerError(f"The model server at {self.url} runs {info.get('model', 'a model')} with classes "
                           f"{list(theirs[0])} and input {list(theirs[1])}x{theirs[2]}, but the local model has "
                           f"classes {list(ours[0])} and input {list(ours[1])}x{ours[2]}.")
        self.server_info = info

    def _server_due(self) -> bool:
        """Whether this call goes to the server: always when remote; when local, for one caller at a time once
        `retry_after_s` has passed, after /info shows the server is back with the same model."""
        with self._state_lock:
            if self.mode == "remote":
                return True
            if self._probing or time.monotonic() < self._local_until:
                return False
            self._probing = True
        try:
            self._check_server()
        except (ServerUnreachable, FerError) as exc:
            self._fall_back(exc)
            return False
        finally:
            with self._state_lock:
                self._probing = False
        with self._state_lock:
            self.mode, self.problem = "remote", ""
        return True

    def _fall_back(self, reason: Exception) -> None:
        sentence = str(reason).rstrip(".")
        with self._state_lock:
            self.mode = "local"
            self._fallback_reason = "server unreachable" if isinstance(reason, ServerUnreachable) else "other model"
            self.problem = sentence[0].upper() + sentence[1:] + "; the local model classifies meanwhile."
            self._local_until = time.monotonic() + self.retry_after_s


def analyze_remote(url: str, image_bytes: bytes, detector: str | None = None, timeout_s: float = 30.0) -> dict:
    """POST an image to the server's /analyze: {"faces": [...]} as `predict --json` prints an image; FerError
    (one sentence) for an image the server refuses or a server that cannot be reached."""
    route = "/analyze" + (f"?detector={detector}" if detector else "")
    try:
        status, data = _Http(url, timeout_s).request("POST", route, image_bytes)
    except ServerUnreachable as exc:
        raise FerError(str(exc)[0].upper() + str(exc)[1:] + ".") from None
    if status != 200:
        raise FerError(f"The model server refused the image: {_error_text(data)}.")
    return json.loads(data)


_SHARED: dict[tuple[str, int], tuple[object, RemoteClassifier]] = {}
_SHARED_LOCK = threading.Lock()


def shared_remote_classifier(url: str, local) -> RemoteClassifier:
    """The process's one RemoteClassifier for the server at `url` with `local` (an engine) as its fallback."""
    with _SHARED_LOCK:
        key = (url.rstrip("/"), id(local))
        entry = _SHARED.get(key)
        if entry is None or entry[0] is not local:
            entry = (local, RemoteClassifier(url, local))
            _SHARED[key] = entry
        return entry[1]


def model_classifier(local):
    """What runs the model for the page and the API: the server at $FER_REALTIME_SERVE_URL (with `local`, an
    engine, as its fallback) when the variable is set, else `local` itself."""
    url = serve_url_from_env()
    return local if url is None else shared_remote_classifier(url, local)
