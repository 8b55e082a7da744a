"""fer-realtime in the browser: live webcam emotions (WebRTC), photo analysis and the model's record.

    streamlit run streamlit_app.py

A thin shell over the `fer_realtime` library. The live stream's frame callback runs in a worker thread of
streamlit-webrtc: it never calls Streamlit; it hands a small typed update per frame to the page through a
queue, and the page shows the newest one while the stream plays.

ICE servers for WebRTC: the sidebar's "Connection" field, or the environment variable FER_REALTIME_ICE_SERVERS
(a JSON list such as '[{"urls": ["stun:stun.example.org:3478"]}]'). The default is no ICE server at all, which
is enough when the browser and this server can reach each other directly (same machine or same network).
"""

from __future__ import annotations

import json
import logging
import os
import queue
import re
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import NamedTuple

import av
import streamlit as st
from streamlit_webrtc import WebRtcMode, webrtc_streamer

from fer_realtime import EMOTIONS, FerError, ImageReadError, ModelLoadError
from fer_realtime.detection import DEFAULT_DETECTOR, DETECTOR_NAMES
from fer_realtime.drawing import EMOTION_COLORS, draw_faces
from fer_realtime.images import IMAGE_TYPES, decode_image
from fer_realtime.datasets import IMAGE_SUFFIXES
from fer_realtime.jobs import ACTIVE_STATES, active_run, cancel_run, list_runs, run_status, start_run
from fer_realtime.model_io import ModelMetadata, default_model_path, read_metadata

ROOT = Path(__file__).resolve().parent
ICE_ENV = "FER_REALTIME_ICE_SERVERS"
MODELS_ENV = "FER_REALTIME_MODELS_DIR"  # where trained models go and are listed from (default models/)
RUNS_ENV = "FER_REALTIME_RUNS_DIR"  # one folder per training run started from the page (default runs/training/)
UPLOADS_ENV = "FER_REALTIME_UPLOADS_DIR"  # uploaded datasets are extracted here (default runs/uploads/)
TRAIN_COMMAND = "python -m fer_realtime train --data DATA_DIR --out models/NAME.keras"
DEFAULT_DATASET = "../shared/datasets/fer2013"  # relative to the repository root, offered when it exists


def _repo_path(text: str | os.PathLike) -> Path:
    """A path as typed or configured: absolute, `~`-expanded, or relative to the repository root."""
    path = Path(text).expanduser()
    return path if path.is_absolute() else (ROOT / path)


# user-trained models: every *.keras here is offered in the model list; training runs save into it
MODELS_DIR = _repo_path(os.environ.get(MODELS_ENV) or "models")
RUNS_DIR = _repo_path(os.environ.get(RUNS_ENV) or "runs/training")
UPLOADS_DIR = _repo_path(os.environ.get(UPLOADS_ENV) or RUNS_DIR.parent / "uploads")
MODELS_LABEL = "models" if MODELS_DIR.resolve() == (ROOT / "models").resolve() else str(MODELS_DIR)

logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------------------------
# Models: the shipped default plus the user's models/ folder, listed cheaply from their metadata
# --------------------------------------------------------------------------------------------------------------


class ModelEntry(NamedTuple):
    path: str
    name: str
    metadata: ModelMetadata | None
    error: str | None  # one sentence when the file is not a usable fer-realtime model

    @property
    def label(self) -> str:
        if self.error is not None:
            return f"{self.name} (unreadable)"
        accuracy = self.metadata.metrics.get("heldout_accuracy")
        if isinstance(accuracy, (int, float)):
            return f"{self.name} · held-out accuracy {accuracy:.1%}"
        return f"{self.name} · held-out accuracy not recorded"


def _entry(path: Path, name: str) -> ModelEntry:
    try:
        return ModelEntry(str(path), name, read_metadata(path), None)
    except FerError as exc:
        return ModelEntry(str(path), name, None, str(exc))
    except Exception as exc:  # the reader is meant to raise only FerError; still, one sentence, no traceback
        logger.exception("reading %s failed", path)
        return ModelEntry(str(path), name, None, f"{path.name} could not be read as a model file ({exc}).")


def list_models() -> list[ModelEntry]:
    default = default_model_path()
    shipped = "shipped" if "FER_REALTIME_MODEL" not in os.environ else "FER_REALTIME_MODEL"
    entries = [_entry(default, f"{default.name} ({shipped})")]
    try:
        MODELS_DIR.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        logger.warning("cannot create %s: %s", MODELS_DIR, exc)
    if MODELS_DIR.is_dir():
        for path in sorted(MODELS_DIR.glob("*.keras")):
            # save_model writes ".NAME-xxxx.keras" temporaries and renames them; skip hidden files
            if not path.name.startswith(".") and path.resolve() != default.resolve():
                entries.append(_entry(path, f"{MODELS_LABEL}/{path.name}"))
    return entries


def _mtime(path: str) -> float:
    try:
        return os.stat(path).st_mtime
    except OSError:
        return 0.0


@st.cache_resource(show_spinner="Starting TensorFlow…")
def ml_runtime() -> bool:
    """Import TensorFlow (through Keras) and MediaPipe once per process, one thread at a time.

    Two threads importing TensorFlow at once deadlock or register its ops twice, and then every model load of
    this server process fails. That happens without this: a click during the first, slow import makes Streamlit
    start the page again in a new thread while the old run is still importing (and so do two first visitors).
    The cache's lock makes later callers wait for the first; streamlit_webrtc was imported before, as it must be.
    """
    ready = True
    for module in ("keras", "mediapipe"):  # keras imports TensorFlow
        try:
            __import__(module)
        except Exception:  # the model loader or the detector check then says, in one sentence, what fails
            logger.exception("importing %s failed", module)
            ready = False
    return ready


@st.cache_resource(show_spinner="Loading the model…")
def load_engine(path: str, mtime: float):
    """The model's inference engine, loaded once per process and file version and shared by every session."""
    from fer_realtime.recognizer import get_engine

    return get_engine(path)


@st.cache_resource(show_spinner="Starting the face detector…")
def detector_problem(name: str) -> str | None:
    """None if the detector can be created here, else the one sentence saying why not (checked once)."""
    from fer_realtime.detection import create_detector
    from fer_realtime.errors import DetectorError

    try:
        create_detector(name).close()
    except DetectorError as exc:
        return str(exc)
    except Exception as exc:  # a native library failing in an unforeseen way: still one sentence
        logger.exception("creating the %s detector failed", name)
        return f"creating it failed ({type(exc).__name__}: {exc})"
    return None


def make_recognizer(detector: str, model_path: str, still_images: bool = False):
    """A recognizer with a detector of its own; `still_images`: detection options for photos (see detection)."""
    from fer_realtime.detection import still_image_options
    from fer_realtime.recognizer import EmotionRecognizer

    return EmotionRecognizer(detector=still_image_options(detector) if still_images else detector, model=model_path)


def _safe_file_name(name: str, suffix: str) -> str:
    """An uploaded file's base name, kept to letters, digits, '.', '-' and '_', not hidden, ending in `suffix`."""
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(name).name).lstrip("._")
    if not base.lower().endswith(suffix):
        base = f"{base or 'upload'}{suffix}"
    return base


# --------------------------------------------------------------------------------------------------------------
# Model upload: a .keras file is loaded (safe mode) before it is written into the models folder and selectable
# --------------------------------------------------------------------------------------------------------------

MAX_MODEL_MB = 100  # per uploaded model file (MiB, as Streamlit's uploader counts)
MODEL_UPLOAD_NOTE = "model_upload_note"  # (the upload's file id, "success" | "error", one sentence)


def _same_bytes(path: Path, data: bytes) -> bool:
    try:
        return path.stat().st_size == len(data) and path.read_bytes() == data
    except OSError:
        return False


def _model_target(name: str, data: bytes) -> Path:
    """Where an uploaded model goes: models/NAME, or NAME-2, NAME-3… when a different file has that name."""
    target, number = MODELS_DIR / name, 1
    while target.exists() and not _same_bytes(target, data):
        number += 1
        target = MODELS_DIR / f"{Path(name).stem}-{number}.keras"
    return target


def add_uploaded_model(name: str, data: bytes) -> Path:
    """Check an uploaded model by loading it in Keras safe mode from a scratch folder (removed afterwards); if it
    is a usable fer-realtime model, write it atomically into the models folder. Raises ModelLoadError otherwise."""
    from fer_realtime.atomic import write_bytes_atomic
    from fer_realtime.model_io import load_model

    if len(data) > MAX_MODEL_MB * 2**20:
        raise ModelLoadError(f"{name} is {len(data) / 2**20:.0f} MB; uploaded models are limited to {MAX_MODEL_MB} MB.")
    UPLOADS_DIR.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".model-", dir=UPLOADS_DIR) as scratch:
        candidate = Path(scratch) / name  # the user's file name, so that errors name it
        candidate.write_bytes(data)
        load_model(candidate)  # safe mode; the network must match its metadata (input size, class count)
    target = _model_target(name, data)
    if not target.exists():
        write_bytes_atomic(target, data)
    return target


def _on_model_upload() -> None:
    """The model uploader's on_change: runs before the page, so a good model is selected in the list at once."""
    uploaded = st.session_state.get("model_upload")
    if uploaded is None:
        st.session_state.pop(MODEL_UPLOAD_NOTE, None)
        return
    name = _safe_file_name(uploaded.name, ".keras")
    ml_runtime()  # callbacks run before the page: TensorFlow may not have been imported yet
    try:
        path = add_uploaded_model(name, uploaded.getvalue())
    except FerError as exc:
        note = ("error", str(exc))
    except OSError as exc:
        note = ("error", f"{name} could not be saved in {MODELS_LABEL} ({exc.strerror or exc}).")
    except Exception as exc:  # an unforeseen loader failure: still one sentence
        logger.exception("checking the uploaded model %s failed", name)
        note = ("error", f"{name} could not be checked as a model ({type(exc).__name__}).")
    else:
        st.session_state["model"] = str(path)
        note = ("success", f"{name} loads as a fer-realtime model: added as {MODELS_LABEL}/{path.name} and selected.")
    st.session_state[MODEL_UPLOAD_NOTE] = (uploaded.file_id, *note)


def model_upload_section() -> None:
    uploaded = st.file_uploader(
        "Add a model (.keras)", type=["keras"], key="model_upload", on_change=_on_model_upload,
        max_upload_size=MAX_MODEL_MB,
        help=f"A fer-realtime model file (up to {MAX_MODEL_MB} MB). It is loaded in Keras safe mode first; if it "
        f"loads, it is saved in {MODELS_LABEL} and selected above.",
    )
    note = st.session_state.get(MODEL_UPLOAD_NOTE)
    if uploaded is not None and note is not None and note[0] == uploaded.file_id:
        (st.success if note[1] == "success" else st.error)(note[2])


# --------------------------------------------------------------------------------------------------------------
# Live stream: the state shared between the page and the frame callback
# --------------------------------------------------------------------------------------------------------------


class LiveUpdate(NamedTuple):
    """What the frame callback tells the page about one processed frame."""

    faces: tuple  # FaceResult, smoothed per track
    fps: float
    ms: float  # median processing time per frame (over the recent frames)
    frames: int
    device: str
    detector: str
    model: str  # the model file's name
    error: str | None = None  # set when the frame could not be processed (the raw frame was sent back)
    ms_p90: float = 0.0  # 90th percentile of the processing time per frame (as `fer-realtime bench` reports)


class LiveSession:
    """Thread-safe holder shared by the page (script thread) and the stream's frame callback (worker thread).

    The page sets the wanted detector and model with `choose`; the callback builds its VideoProcessor (a
    recognizer with its own detector, the shared engine, a face tracker) on the first frame and again whenever
    that choice changes or a new stream starts, so switching applies to the running stream.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._process_lock = threading.Lock()  # one frame at a time through the processor
        self._choice: tuple[str, str] | None = None
        self._generation = 0  # bumped when a stream ends: the next stream gets a fresh processor
        self._processor = None
        self._built_for: tuple | None = None
        self._failed: tuple[tuple, str] | None = None
        self._logged_error: str | None = None  # log each distinct failure's traceback once, not every frame
        self.updates: queue.Queue[LiveUpdate] = queue.Queue(maxsize=2)

    def choose(self, detector: str, model_path: str) -> None:
        with self._lock:
            self._choice = (detector, model_path)

    def end_stream(self) -> None:
        with self._lock:
            self._generation += 1
        self.latest()  # drop what is left of the old stream

    def publish(self, update: LiveUpdate) -> None:
        while True:
            try:
                self.updates.put_nowait(update)
                return
            except queue.Full:
                try:
                    self.updates.get_nowait()  # drop the oldest; the page only shows the newest
                except queue.Empty:
                    pass

    def latest(self) -> LiveUpdate | None:
        update = None
        while True:
            try:
                update = self.updates.get_nowait()
            except queue.Empty:
                return update

    def _processor_for_frame(self):
        with self._lock:
            choice, generation = self._choice, self._generation
        if choice is None:
            raise RuntimeError("no detector and model chosen yet")
        wanted = (choice, generation)
        if self._processor is None or self._built_for != wanted:
            if self._failed is not None and self._failed[0] == wanted:
                raise RuntimeError(self._failed[1])
            old, self._processor, self._built_for = self._processor, None, None
            if old is not None:
                old.recognizer.close()
            try:
                self._processor = make_recognizer(*choice).video_processor()
            except Exception as exc:
                self._failed = (wanted, str(exc) or type(exc).__name__)
                raise
            self._built_for, self._failed = wanted, None
        return self._processor, choice

    def process(self, frame: av.VideoFrame) -> av.VideoFrame:
        """The video_frame_callback body: annotate the frame and report faces and figures."""
        image = frame.to_ndarray(format="bgr24")
        with self._process_lock:
            try:
                processor, (detector, model_path) = self._processor_for_frame()
                result = processor.process(image)
                stats = processor.stats()
            except Exception as exc:  # keep the stream alive: send the raw frame back, tell the page why
                error = f"{type(exc).__name__}: {exc}"
                if error != self._logged_error:
                    logger.exception("live frame processing failed")
                    self._logged_error = error
                self.publish(LiveUpdate((), 0.0, 0.0, 0, "", "", "", error))
                return frame
            self._logged_error = None
        self.publish(
            LiveUpdate(tuple(result.faces), stats.fps, stats.ms_median, stats.frames,
                       processor.recognizer.device, detector, Path(model_path).name, ms_p90=stats.ms_p90)
        )
        return av.VideoFrame.from_ndarray(result.image, format="bgr24")


def live_session() -> LiveSession:
    if "live_session" not in st.session_state:
        st.session_state["live_session"] = LiveSession()
    return st.session_state["live_session"]


def ice_servers_setting() -> list:
    default = os.environ.get(ICE_ENV, "").strip() or "[]"
    text = st.text_input(
        "ICE servers (JSON list)",
        value=default,
        key="ice_servers",
        help=f'For example [{{"urls": ["stun:stun.example.org:3478"]}}]. Default from ${ICE_ENV}; '
        "an empty list works when the browser reaches this server directly.",
    )
    try:
        servers = json.loads(text or "[]")
        if not isinstance(servers, list):
            raise ValueError("not a list")
        servers = [{"urls": s} if isinstance(s, str) else s for s in servers]
        if not all(isinstance(s, dict) and "urls" in s for s in servers):
            raise ValueError("an entry has no urls")
    except ValueError as exc:
        st.error(f"The ICE server setting is not a JSON list of servers ({exc}); using none.")
        return []
    return servers


# --------------------------------------------------------------------------------------------------------------
# Views
# --------------------------------------------------------------------------------------------------------------


def _hex(bgr: tuple[int, int, int]) -> str:
    b, g, r = bgr
    return f"#{r:02x}{g:02x}{b:02x}"


def probability_chart(scores: dict[str, float]):
    import altair as alt
    import pandas as pd

    classes = [c for c in EMOTIONS if c in scores] + [c for c in scores if c not in EMOTIONS]
    data = pd.DataFrame({"emotion": classes, "probability": [scores[c] for c in classes]})
    return (
        alt.Chart(data)
        .mark_bar()
        .encode(
            x=alt.X("probability:Q", scale=alt.Scale(domain=[0, 1]), axis=alt.Axis(format="%", tickCount=5), title=None),
            y=alt.Y("emotion:N", sort=classes, title=None, axis=alt.Axis(labelOverlap=False, labelLimit=80)),
            color=alt.Color(
                "emotion:N",
                scale=alt.Scale(domain=classes, range=[_hex(EMOTION_COLORS.get(c, (255, 255, 0))) for c in classes]),
                legend=None,
            ),
            tooltip=["emotion", alt.Tooltip("probability:Q", format=".1%")],
        )
        .properties(height=alt.Step(20))
    )


def photos_section(detector: str, entry: ModelEntry | None) -> None:
    files = st.file_uploader(
        "Photos",
        type=list(IMAGE_TYPES),
        accept_multiple_files=True,
        help="Each photo is analysed on its own: every face gets a box, a label and its probabilities.",
    )
    if not files:
        return
    if entry is None:
        st.warning("Choose a model that loads to analyse photos.")
        return
    key = (detector, entry.path, _mtime(entry.path))
    cached = st.session_state.get("photo_recognizer")
    if cached is None or cached[0] != key:
        if cached is not None:
            cached[1].close()
        st.session_state["photo_recognizer"] = (key, make_recognizer(detector, entry.path, still_images=True))
    recognizer = st.session_state["photo_recognizer"][1]
    previous = st.session_state.get("photo_results", {})
    results = st.session_state["photo_results"] = {}  # only the photos uploaded now are kept
    for uploaded in files:
        try:
            image = decode_image(uploaded.getvalue(), uploaded.name)
        except ImageReadError as exc:  # one sentence naming the file; the other photos still get analysed
            st.error(str(exc))
            continue
        result_key = (uploaded.file_id, key)
        faces = previous.get(result_key)
        if faces is None:
            try:
                faces = recognizer.analyze(image)  # an independent image: no tracking
            except FerError as exc:
                st.error(str(exc))
                continue
        results[result_key] = faces
        st.image(draw_faces(image, faces), channels="BGR", caption=uploaded.name, width="stretch")
        if not faces:
            st.info(f"No face found in {uploaded.name}.")
        for number, face in enumerate(faces, 1):
            x, y, w, h = face.box
            st.markdown(
                f"**Face {number}** at ({x}, {y}), {w}×{h} px: **{face.label}** {face.confidence:.0%}"
            )
            st.altair_chart(probability_chart(face.scores), width="stretch")


# --------------------------------------------------------------------------------------------------------------
# Video tab: every frame of an uploaded video through the live frame processor; emotions over time, an annotated
# copy and the per-face timeline. Files live in a folder of their own under the uploads folder.
# --------------------------------------------------------------------------------------------------------------

VIDEO_TYPES = ("mp4", "mov", "avi", "mkv", "webm", "m4v")
MAX_VIDEO_MB = 200  # per uploaded video (MiB, as Streamlit's uploader counts)
VIDEO_KEEP_S = 24 * 3600  # result folders of sessions that ended are removed after a day


class VideoResult(NamedTuple):
    key: tuple  # (upload file id, detector, model path, model mtime)
    name: str  # the uploaded file's name
    folder: str  # holds timeline.csv and annotated.webm
    frames: int
    faces: int  # face rows in the timeline
    length_s: float
    processing_fps: float
    detector: str
    model: str  # the model file's name
    shares: object  # pandas DataFrame: mean probability per class per time bin, indexed by time_s

    @property
    def csv_path(self) -> Path:
        return Path(self.folder) / "timeline.csv"

    @property
    def video_path(self) -> Path:
        return Path(self.folder) / "annotated.webm"


def _videos_dir() -> Path:
    folder = UPLOADS_DIR / "videos"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _prune_old_videos(folder: Path) -> None:
    cutoff = time.time() - VIDEO_KEEP_S
    for child in folder.glob("video-*"):
        try:
            if child.is_dir() and child.stat().st_mtime < cutoff:
                shutil.rmtree(child, ignore_errors=True)
        except OSError:
            continue


def emotion_shares(summary):
    """The library's mean probability per class and time bin, as a DataFrame indexed by time_s. Bins of one
    second, or of a few frames for a clip shorter than 30 s (about 30 points on its line)."""
    import math

    import pandas as pd

    from fer_realtime.video_file import emotion_shares_over_time

    fps, bin_seconds = summary.video_fps, 1.0
    if summary.frames < 30 * fps:
        bin_seconds = math.ceil(summary.frames / 30) / fps
    data = emotion_shares_over_time(summary.timeline, summary.classes, fps, bin_seconds=bin_seconds)
    frame = data if isinstance(data, pd.DataFrame) else pd.DataFrame(data)
    return frame.set_index("time_s") if "time_s" in frame.columns else frame


def process_uploaded_video(uploaded, detector: str, entry: ModelEntry, progress) -> VideoResult:
    """Write the upload to a fresh folder, process it with a recognizer of its own (closed afterwards) and keep
    the timeline CSV and the annotated WebM there. On any failure the folder is removed; FerError is one sentence.
    `progress(done, total)` is called every few frames."""
    from fer_realtime.video_file import process_video

    name = _safe_file_name(uploaded.name, Path(uploaded.name).suffix.lower() or ".mp4")
    videos = _videos_dir()
    _prune_old_videos(videos)
    folder = Path(tempfile.mkdtemp(prefix="video-", dir=videos))
    try:
        source = folder / name
        uploaded.seek(0)
        with open(source, "wb") as handle:
            shutil.copyfileobj(uploaded, handle)
        recognizer = make_recognizer(detector, entry.path)  # its own detector: detectors are not thread-safe
        try:
            summary = process_video(source, recognizer, csv_path=folder / "timeline.csv",
                                    out_path=folder / "annotated.webm", progress=progress)
        finally:
            recognizer.close()
        source.unlink()  # the upload itself is not needed any more
        return VideoResult(
            key=(uploaded.file_id, detector, entry.path, _mtime(entry.path)), name=uploaded.name, folder=str(folder),
            frames=summary.frames, faces=summary.faces,
            length_s=summary.frames / summary.video_fps if summary.video_fps else 0.0,
            processing_fps=summary.processing_fps, detector=detector, model=Path(entry.path).name,
            shares=emotion_shares(summary),
        )
    except BaseException:  # including Streamlit's rerun/stop: nothing half-written is left behind
        shutil.rmtree(folder, ignore_errors=True)
        raise


def _drop_video_result() -> None:
    result = st.session_state.pop("video_result", None)
    if result is not None:
        shutil.rmtree(result.folder, ignore_errors=True)


def emotion_timeline_chart(shares):
    import altair as alt

    classes = [str(c) for c in shares.columns]
    data = shares.reset_index().melt("time_s", var_name="emotion", value_name="probability")
    return (
        alt.Chart(data)
        .mark_line(point=len(shares) <= 60)
        .encode(
            x=alt.X("time_s:Q", title="time (s)"),
            y=alt.Y("probability:Q", scale=alt.Scale(domain=[0, 1]), axis=alt.Axis(format="%"),
                    title="mean probability over the faces"),
            color=alt.Color(
                "emotion:N",
                scale=alt.Scale(domain=classes, range=[_hex(EMOTION_COLORS.get(c, (255, 255, 0))) for c in classes]),
                legend=alt.Legend(orient="bottom", direction="horizontal", title=None),
            ),
            tooltip=[alt.Tooltip("time_s:Q", format=".2f", title="time (s)"), "emotion",
                     alt.Tooltip("probability:Q", format=".1%")],
        )
        .properties(title="Emotions over time", height=320)
    )


def _file_bytes(path: Path):
    """Download data read when the button is pressed (the annotated video can be large)."""
    return lambda: path.read_bytes()


def video_result_view(result: VideoResult) -> None:
    cols = st.columns(4)
    cols[0].metric("Frames", result.frames)
    cols[1].metric("Video length", f"{result.length_s:.1f} s")
    cols[2].metric("Processing frames/s", f"{result.processing_fps:.1f}")
    cols[3].metric("Face detections", result.faces, help="Rows of the timeline: one per face per frame.")
    st.caption(f"{result.name} · {result.detector} face detector · model {result.model}")
    if result.faces:
        st.altair_chart(emotion_timeline_chart(result.shares), width="stretch")
    else:
        st.info(f"No face found in {result.name}.")
    if not (result.csv_path.is_file() and result.video_path.is_file()):
        st.warning("The processed files are gone from the server (removed after a day); process the video again.")
        return
    st.video(str(result.video_path), format="video/webm")
    stem = _safe_file_name(Path(result.name).stem, "") or "video"
    cols = st.columns(2)
    cols[0].download_button("Timeline (CSV)", _file_bytes(result.csv_path), file_name=f"{stem}-timeline.csv",
                            mime="text/csv", key="video_download_csv", on_click="ignore", icon="⬇️")
    cols[1].download_button("Annotated video (WebM)", _file_bytes(result.video_path),
                            file_name=f"{stem}-annotated.webm", mime="video/webm", key="video_download_video",
                            on_click="ignore", icon="⬇️")


def _process_video_now(uploaded, detector: str, entry: ModelEntry) -> VideoResult | None:
    if uploaded.size > MAX_VIDEO_MB * 2**20:
        st.error(f"{uploaded.name} is {uploaded.size / 2**20:.0f} MB; videos are limited to {MAX_VIDEO_MB} MB.")
        return None
    bar = st.progress(0.0, text=f"Processing {uploaded.name}…")

    def progress(done: int, total: int) -> None:
        share = min(1.0, done / total) if total else 0.0
        bar.progress(share, text=f"Processing {uploaded.name}: {done} of {total or '?'} frames")

    try:
        result = process_uploaded_video(uploaded, detector, entry, progress)
        bar.empty()
        return result
    except FerError as exc:  # VideoFileError and the like: one sentence
        bar.empty()
        st.error(str(exc))
    except OSError as exc:
        bar.empty()
        st.error(f"{uploaded.name} could not be stored on the server for processing ({exc.strerror or exc}).")
    except Exception as exc:  # an unforeseen decoder failure: still one sentence, no traceback
        bar.empty()
        logger.exception("processing the video %s failed", uploaded.name)
        first_line = str(exc).splitlines()[0] if str(exc) else ""
        st.error(f"{uploaded.name} could not be processed ({type(exc).__name__}: {first_line}).")
    return None


def video_tab(entry: ModelEntry | None, detector: str) -> None:
    uploaded = st.file_uploader(
        "Video file", type=list(VIDEO_TYPES), key="video_upload", max_upload_size=MAX_VIDEO_MB,
        help=f"{', '.join(VIDEO_TYPES)}; up to {MAX_VIDEO_MB} MB. Every frame goes through the live view's "
        "processing (faces tracked, labels smoothed).",
    )
    result = st.session_state.get("video_result")
    if result is not None and (uploaded is None or result.key[0] != uploaded.file_id):
        _drop_video_result()  # a different file, or none: its results go with it
        result = None
    if uploaded is None:
        st.caption(f"Upload a video ({', '.join(VIDEO_TYPES)}; up to {MAX_VIDEO_MB} MB) to see its emotions over "
                   "time, an annotated copy and a per-face timeline (CSV).")
        return
    if entry is None:
        st.info("Choose a model that loads to process videos.")
        return
    key = (uploaded.file_id, detector, entry.path, _mtime(entry.path))
    settings = f"the sidebar's {detector} face detector and model {Path(entry.path).name}"
    if st.button("Process video" if result is None else "Process again", key="video_process", type="primary",
                 help=f"Uses {settings}."):
        st.session_state["video_pending"] = key
    # The request outlives the script run: a rerun (another widget, the WebRTC component announcing itself)
    # interrupts a run at its next Streamlit call, and the next run must then start the processing again.
    if st.session_state.get("video_pending") == key:
        new = _process_video_now(uploaded, detector, entry)
        st.session_state.pop("video_pending", None)
        if new is not None:
            _drop_video_result()
            st.session_state["video_result"] = result = new
    if result is None:
        st.caption(f"Processing uses {settings}.")
        return
    if result.key != key:
        st.caption(f"Processed with the {result.detector} detector and model {result.model}; press Process again "
                   f"to use {settings}.")
    video_result_view(result)


def _percent(value, missing: str = "–") -> str:
    return f"{value:.1%}" if isinstance(value, (int, float)) else missing


def inference_notes(meta) -> list[str]:
    notes = [f"- test-time augmentation: {meta.tta.describe()}"]
    int8 = meta.int8
    if int8.get("used"):
        notes.append(
            "- on CPUs: its int8 TensorFlow Lite copy (selection-split accuracy "
            f"{_percent(int8.get('selection_accuracy_int8'))} against {_percent(int8.get('selection_accuracy_float'))}"
            " for the float network; the same class for"
            f" {_percent(int8.get('agreement_with_float'))} of faces)"
        )
    else:
        notes.append("- on CPUs: the float network through TensorFlow Lite (no int8 copy in the file)")
    return notes


def metadata_view(entry: ModelEntry) -> None:
    import pandas as pd

    meta = entry.metadata
    st.subheader(entry.name)
    metrics, data = meta.metrics, meta.training_data
    accuracy = metrics.get("heldout_accuracy")
    cols = st.columns(3)
    cols[0].metric("Architecture", meta.architecture or "not recorded")
    cols[1].metric("Held-out accuracy", _percent(accuracy, "not recorded"))
    cols[2].metric("Input", f"{meta.input_size[1]}×{meta.input_size[0]} {meta.preprocessing.color}")
    if metrics.get("heldout_data"):
        st.markdown(f"Held-out data: `{metrics['heldout_data']}`")
    recall = metrics.get("per_class_recall")
    if isinstance(recall, dict) and recall:
        st.markdown("**Per-class recall on the held-out data**")
        st.table(
            pd.DataFrame(
                {
                    "class": list(meta.classes),
                    "recall": [_percent(recall.get(c)) for c in meta.classes],
                }
            ),
            hide_index=True,
            width="content",
        )
    st.markdown("**How it runs**\n\n" + "\n".join(inference_notes(meta)))
    st.markdown("**Training data**")
    if data:
        lines = []
        if data.get("train_data"):
            lines.append(f"- folder: `{data['train_data']}`")
        if "n_fit" in data:
            lines.append(f"- {data['n_fit']} images for fitting, {data.get('n_selection', 0)} for picking the best epoch")
        if isinstance(data.get("class_counts"), dict):
            counts = ", ".join(f"{c} {n}" for c, n in data["class_counts"].items())
            lines.append(f"- fitting images per class: {counts}")
        st.markdown("\n".join(lines) or "recorded below")
        if data.get("config"):
            with st.expander("Training configuration"):
                st.json(data["config"])
    else:
        st.markdown("not recorded")
    st.markdown("**The command that produced this model**")
    st.code(meta.command or "not recorded", language="bash")


# --------------------------------------------------------------------------------------------------------------
# Training tab: dataset, options, a background run (state in files, see fer_realtime.jobs), its results
# --------------------------------------------------------------------------------------------------------------

SAMPLES_PER_CLASS = 6
ARCH_LABELS = {
    "cnn": "cnn — convolutional network",
    "rnn": "rnn — recurrent network over image rows",
    "transfer": "transfer — pretrained base + new head",
}
PCA_CHOICES = ("Off", "Keep a share of the variance", "Keep a number of components")
BATCH_SIZES = (8, 16, 32, 64, 128, 256)


def _dataset_signature(path: Path) -> tuple:
    """A cheap fingerprint of a dataset on disk for the cache key: the mtimes of the file, or of the folder and its
    sub-folders two levels down (adding or removing an image changes its class folder's mtime) and the files
    near the top (a CSV or an X/Y pair)."""
    try:
        top = path.stat()
    except OSError:
        return ("missing", str(path))
    if not path.is_dir():
        return ("file", top.st_mtime_ns, top.st_size)
    signature = [(".", top.st_mtime_ns)]
    pending = [(path, 0)]
    while pending:
        folder, depth = pending.pop()
        try:
            children = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError:
            continue
        for child in children:
            try:
                if child.is_dir():
                    if depth < 2:
                        signature.append((os.path.relpath(child.path, path), child.stat().st_mtime_ns))
                        pending.append((Path(child.path), depth + 1))
                elif depth < 2 and Path(child.name).suffix.lower() not in IMAGE_SUFFIXES:
                    stat = child.stat()
                    signature.append((os.path.relpath(child.path, path), stat.st_mtime_ns, stat.st_size))
            except OSError:
                continue
    return tuple(signature)


def _overview(dataset) -> dict:
    summary = dataset.summary()
    return {"source": str(dataset.source), "summary": summary, "samples": dataset.samples(per_class=SAMPLES_PER_CLASS)}


@st.cache_data(show_spinner=False, max_entries=8)
def dataset_overview(source: str, signature: tuple) -> dict:
    """Summary and sample faces of a dataset on the server (cached per path and file version: FER2013 takes a while)."""
    from fer_realtime.datasets import load_dataset

    return _overview(load_dataset(source))


@st.cache_data(show_spinner=False, max_entries=4)
def upload_overview(digest: str, workdir: str, _files: list[tuple[str, bytes]]) -> dict:
    """The same for uploaded files, extracted once per content under `workdir` (the worker reloads from there)."""
    from fer_realtime.datasets import load_uploaded_dataset

    return _overview(load_uploaded_dataset(_files, Path(workdir)))


def _load_into_session(load, label: str) -> None:
    """Run `load()` (returning an overview) under a spinner; keep it for training, or show one sentence."""
    with st.spinner(f"Loading {label}… (a large dataset such as FER2013 takes a minute the first time)"):
        try:
            overview = load()
        except FerError as exc:
            st.session_state.pop("train_dataset", None)
            st.error(str(exc))
            return
        except Exception as exc:  # a reader failing in an unforeseen way: still one sentence
            logger.exception("loading the dataset %s failed", label)
            st.session_state.pop("train_dataset", None)
            first_line = str(exc).splitlines()[0] if str(exc) else ""
            st.error(f"{label} could not be loaded ({type(exc).__name__}: {first_line}).")
            return
    st.session_state["train_dataset"] = {**overview, "label": label}


def dataset_section() -> dict | None:
    """Choose and load a dataset; returns the loaded overview (kept in the session) or None."""
    import hashlib

    kind = st.radio("Dataset from", ["A folder or file on the server", "An upload"], horizontal=True,
                    key="train_source_kind")
    if kind == "An upload":
        files = st.file_uploader(
            "Dataset files", type=["zip", "csv", "npy"], accept_multiple_files=True, key="train_upload",
            help="One .zip of class folders (optionally inside train/, val/ or test/ folders), one FER2013 .csv, "
            "or two .npy files named X… (images) and Y… (labels).",
        )
        if st.button("Load", key="train_load_upload", disabled=not files):
            data = [(f.name, f.getvalue()) for f in files]
            digest = hashlib.sha256()
            for name, content in sorted(data):
                digest.update(name.encode() + b"\0" + hashlib.sha256(content).digest())
            names = ", ".join(name for name, _ in data)
            _load_into_session(lambda: upload_overview(digest.hexdigest()[:20], str(UPLOADS_DIR), data), names)
    else:
        default = DEFAULT_DATASET if _repo_path(DEFAULT_DATASET).exists() else ""
        text = st.text_input(
            "Dataset path", value=default, key="train_dataset_path", placeholder="/data/fer2013",
            help="A folder of class folders (angry/, happy/, … optionally inside train/ and val/ or test/), a "
            "FER2013 .csv, or a folder with an X.npy + Y.npy pair. Relative paths start at the repository root.",
        )
        if st.button("Load", key="train_load_path"):
            if not text.strip():
                st.session_state.pop("train_dataset", None)
                st.error("Type the path of a dataset on the server first.")
            else:
                source = _repo_path(text.strip())
                _load_into_session(lambda: dataset_overview(str(source), _dataset_signature(source)), text.strip())
    overview = st.session_state.get("train_dataset")
    if overview is not None:
        dataset_summary_view(overview)
    return overview


def _sample_strip(images):
    import numpy as np

    gap = 4
    height, width = images.shape[1:3]
    strip = np.full((height, len(images) * (width + gap) - gap), 255, dtype=np.uint8)
    for i, image in enumerate(images):
        strip[:, i * (width + gap) : i * (width + gap) + width] = image
    return strip


def dataset_summary_view(overview: dict) -> None:
    import pandas as pd

    summary = overview["summary"]
    height, width = summary.image_size
    formats = {"class-folders": "class folders", "fer2013-csv": "FER2013 CSV", "npy": "X/Y .npy pair"}
    st.success(
        f"Loaded **{overview['label']}**: {summary.total} images of {height}×{width} px, "
        f"format {formats.get(summary.format, summary.format)}."
    )
    if overview["source"] != overview["label"]:
        st.caption(f"Read from `{overview['source']}`.")
    splits = list(summary.counts)
    classes = list(next(iter(summary.counts.values())))
    table = pd.DataFrame({split: [summary.counts[split].get(c, 0) for c in classes] for split in splits}, index=classes)
    table.loc["total"] = table.sum()
    table.index.name = "class"
    left, right = st.columns([2, 3], gap="medium")
    with left:
        st.markdown("**Images per class and split**")
        st.table(table)
        if "val" not in splits and "test" not in splits:
            st.caption("No val/ or test/ split: a stratified 15 % of the training images is held out for the figures.")
        for note in summary.warnings():
            st.warning(note)
    with right:
        st.markdown(f"**Samples** (up to {SAMPLES_PER_CLASS} training images per class)")
        for name, images in overview["samples"].items():
            label_column, image_column = st.columns([1, 4])
            label_column.markdown(f"`{name}`")
            if len(images):
                image_column.image(_sample_strip(images), width=min(SAMPLES_PER_CLASS, len(images)) * 64)
            else:
                image_column.caption("no training images")


# The options' widget keys and first values. Streamlit forgets a widget's value when a rerun does not draw it,
# as happens while a run is active (the progress replaces the options): the values are kept aside and put back.
OPTION_DEFAULTS = {
    "train_archs": ["cnn", "rnn"], "train_epochs": 10, "train_batch": 64, "train_augment": True,
    "train_pca": PCA_CHOICES[0], "train_pca_variance": 0.95, "train_pca_components": 100,
    "train_transfer_kind": "fer", "train_transfer_weights": "", "train_run_name": "",
}
KEPT_OPTIONS = "train_options_kept"


def _restore_options() -> None:
    kept = st.session_state.get(KEPT_OPTIONS, {})
    for key, default in OPTION_DEFAULTS.items():
        if key not in st.session_state:
            st.session_state[key] = kept.get(key, default)
    if "train_transfer_base" not in st.session_state and "train_transfer_base" in kept:
        st.session_state["train_transfer_base"] = kept["train_transfer_base"]


def _keep_options() -> None:
    st.session_state[KEPT_OPTIONS] = {
        key: st.session_state[key] for key in [*OPTION_DEFAULTS, "train_transfer_base"] if key in st.session_state
    }


def options_section() -> tuple | None:
    """The training options; returns (ExperimentConfig, run name) or None with a message when they don't add up."""
    from fer_realtime.experiments import ARCHITECTURES, ExperimentConfig

    _restore_options()  # defaults come from session state (OPTION_DEFAULTS), so the widgets take no value=
    archs = st.multiselect("Models", list(ARCHITECTURES), key="train_archs",
                           format_func=lambda a: ARCH_LABELS.get(a, a),
                           help="Every model is trained on the same data, epochs and held-out split.")
    cols = st.columns(3)
    epochs = cols[0].number_input("Epochs", min_value=1, max_value=500, step=1, key="train_epochs")
    batch_size = cols[1].selectbox("Batch size", BATCH_SIZES, key="train_batch")
    augment = cols[2].toggle("Augmentation", key="train_augment",
                             help="Random flips, shifts, small rotations and zoom while training.")
    pca_mode = st.radio("PCA before the model", PCA_CHOICES, horizontal=True, key="train_pca",
                        help="Project the faces on their principal components (fitted on the training split).")
    pca_variance = pca_components = None
    if pca_mode == PCA_CHOICES[1]:
        pca_variance = st.slider("Share of the variance to keep", 0.80, 0.99, step=0.01, key="train_pca_variance")
    elif pca_mode == PCA_CHOICES[2]:
        pca_components = int(st.number_input("Components to keep", min_value=1, max_value=48 * 48,
                                              key="train_pca_components"))
    transfer_base, transfer_weights = "fer", None
    problem = None
    if "transfer" in archs:
        base_kind = st.radio(
            "Pretrained base for transfer", ["fer", "keras"], horizontal=True, key="train_transfer_kind",
            format_func=lambda k: "fer — our shipped FER model" if k == "fer" else "a keras.applications network",
        )
        if base_kind == "fer" and not default_model_path().is_file():
            problem = (f"The fer base starts from the shipped model, and {default_model_path()} does not exist yet; "
                       "train it first or choose a keras.applications network.")
        if base_kind == "keras":
            try:
                from fer_realtime.models import APPLICATION_BASES

                names = list(APPLICATION_BASES)
            except Exception:  # the list is informative only
                names = ["mobilenet_v2", "resnet50", "efficientnet_b0", "vgg16"]
            base_cols = st.columns([1, 2])
            transfer_base = base_cols[0].selectbox("Network", names, key="train_transfer_base")
            weights_text = base_cols[1].text_input(
                "Local weights file (ImageNet, no top: .h5 / .weights.h5)", key="train_transfer_weights",
                placeholder="/data/weights/mobilenet_v2_no_top.h5",
            )
            st.info(
                "ImageNet weights cannot be downloaded here (this server has no internet access): give the path of a "
                "no-top weights file already on the server, or use the fer base."
            )
            if not weights_text.strip():
                problem = f"Give the path of a local weights file for {transfer_base}, or choose the fer base."
            else:
                weights_path = _repo_path(weights_text.strip())
                if not weights_path.is_file():
                    problem = f"The weights file {weights_path} does not exist."
                transfer_weights = str(weights_path)
    name = st.text_input("Run name", key="train_run_name", placeholder="for example: cnn vs rnn, 10 epochs",
                         help="Shown in the list of runs; the default names the models and the dataset.")
    _keep_options()
    if not archs:
        problem = "Choose at least one model to train."
    if problem:
        st.warning(problem)
        return None
    config = ExperimentConfig(
        archs=tuple(archs), epochs=int(epochs), batch_size=int(batch_size), augment=bool(augment),
        pca_variance=pca_variance, pca_components=pca_components, transfer_base=transfer_base,
        transfer_weights=transfer_weights,
    )
    return config, name.strip()


def _run_time(status: dict, key: str = "created") -> str:
    stamp = status.get(key)
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(stamp)) if isinstance(stamp, (int, float)) else "?"


def _duration(seconds) -> str:
    if not isinstance(seconds, (int, float)):
        return "–"
    seconds = int(round(seconds))
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"


def run_label(status: dict) -> str:
    state = status.get("state", "?")
    state = "in progress" if state in ACTIVE_STATES else state  # the label is not redrawn as the run goes on
    return f"{status.get('name') or status.get('run_id')} · {state} · {_run_time(status)}"


def history_chart(rows: list[dict]):
    """Two charts, accuracy and loss per epoch: training (dashed) and held-out (solid), one colour per model."""
    import altair as alt
    import pandas as pd

    from fer_realtime.charts import MODEL_COLORS

    long = []
    for row in rows:
        for metric in ("accuracy", "loss"):
            for split, key in (("training", f"train_{metric}"), ("held-out", f"heldout_{metric}")):
                if isinstance(row.get(key), (int, float)):
                    long.append({"model": row["model"], "epoch": row["epoch"], "metric": metric, "split": split,
                                 "value": row[key]})
    data = pd.DataFrame(long)
    models = list(dict.fromkeys(r["model"] for r in rows))
    color = alt.Color("model:N", scale=alt.Scale(domain=models,
                                                 range=[MODEL_COLORS.get(m, "#7f7f7f") for m in models]))
    base = alt.Chart(data).mark_line(point=True).encode(
        x=alt.X("epoch:Q", axis=alt.Axis(tickMinStep=1), title="epoch"),
        color=color,
        strokeDash=alt.StrokeDash("split:N", scale=alt.Scale(domain=["held-out", "training"], range=[[1, 0], [5, 3]]),
                                  legend=None),  # said in the titles: a dashed-line legend draws no symbol
        tooltip=["model", "split", "epoch", alt.Tooltip("value:Q", format=".3f")],
    )
    subtitle = "solid: held-out · dashed: training"
    accuracy = base.transform_filter(alt.datum.metric == "accuracy").encode(
        y=alt.Y("value:Q", title="accuracy", scale=alt.Scale(domain=[0, 1]))
    ).properties(title=alt.Title("Accuracy", subtitle=subtitle))
    loss = base.transform_filter(alt.datum.metric == "loss").encode(
        y=alt.Y("value:Q", title="loss")
    ).properties(title=alt.Title("Loss", subtitle=subtitle))
    return [chart.configure_legend(orient="bottom", direction="horizontal") for chart in (accuracy, loss)]


def progress_view(status: dict, run_dir: Path) -> None:
    state = status.get("state")
    name, phase = status.get("name") or status.get("run_id"), status.get("phase") or "starting the worker"
    st.markdown(f"**{name}** — {state}: {phase}")
    progress = status.get("progress") or {}
    if progress:
        arch, epoch, epochs = progress.get("arch", "?"), progress.get("epoch", 0), max(1, progress.get("epochs", 1))
        batch, batches = progress.get("batch", 0), max(1, progress.get("batches", 1))
        index, archs = progress.get("arch_index", 0), max(1, progress.get("archs", 1))
        within_epoch = batch / batches if batch else 1.0  # batch 0: the epoch just ended
        done = (index + (epoch - 1 + within_epoch) / epochs) / archs
        stage = f" ({progress['stage']})" if progress.get("stage") else ""
        text = (f"{arch} — epoch {epoch}/{epochs}, batch {batch or batches}/{batches}{stage} · "
                f"model {index + 1} of {archs}")
        st.progress(min(1.0, max(0.0, done)), text=text)
    else:
        st.progress(0.0, text=status.get("phase") or "starting the training process…")
    started = status.get("started") or status.get("created")
    figures = []
    if isinstance(started, (int, float)):
        figures.append(f"running for {_duration(time.time() - started)}")
    if status.get("n_train") is not None:
        figures.append(f"{status['n_train']} training images, {status.get('n_heldout', 0)} held out")
    if status.get("pca"):
        figures.append(f"PCA keeps {status['pca'].get('components')} components")
    if figures:
        st.caption(" · ".join(figures))
    rows = status.get("history") or []
    if rows:
        for column, chart in zip(st.columns(2), history_chart(rows)):
            column.altair_chart(chart, width="stretch", height=380)
    else:
        st.caption("The loss and accuracy chart fills in as epochs finish.")
    if (run_dir / "cancel").exists():
        st.info("Cancelling: the run stops after the current batch.")
    elif st.button("Cancel", key="train_cancel", help="Stop this run; models finished before now are kept."):
        cancel_run(run_dir)
        st.info("Cancelling: the run stops after the current batch.")


@st.fragment(run_every=1.0)
def live_progress(run_dir: str) -> None:
    """Redrawn every second from the run's files, without rerunning the rest of the page."""
    status = run_status(Path(run_dir))
    if status.get("state") not in ACTIVE_STATES:
        # the run ended: rerun the whole page so its results and the new models (sidebar) appear
        st.session_state["train_show_run"] = run_dir
        st.rerun(scope="app")
    progress_view(status, Path(run_dir))


def start_section(overview: dict | None, options: tuple | None) -> None:
    if overview is None:
        st.button("Start training", key="train_start", disabled=True, type="primary")
        st.caption("Load a dataset first.")
        return
    if st.button("Start training", key="train_start", type="primary", disabled=options is None):
        config, name = options
        try:
            run_dir = start_run(overview["source"], config, RUNS_DIR, MODELS_DIR, name=name)
        except FerError as exc:  # e.g. a run was started meanwhile from another tab
            st.error(str(exc))
            return
        except OSError as exc:
            st.error(f"The training run could not be started ({exc.strerror or exc}).")
            return
        st.session_state["train_show_run"] = str(run_dir)
        st.rerun()
    st.caption(f"Runs in the background (one at a time); models are saved in `{MODELS_DIR}`.")


def _results_table(status: dict):
    import pandas as pd

    rows = []
    for arch, result in (status.get("results") or {}).items():
        row = {"model": arch, "held-out accuracy": _percent(result.get("heldout_accuracy"))}
        for name, figures in (result.get("per_class") or {}).items():
            row[f"recall {name}"] = _percent(figures.get("recall"))
        row["training time"] = _duration(result.get("seconds"))
        rows.append(row)
    return pd.DataFrame(rows).set_index("model") if rows else None


def confusion_chart(result: dict, arch: str):
    import altair as alt
    import pandas as pd

    classes = result.get("classes") or []
    matrix = result.get("confusion") or []
    data = pd.DataFrame([
        {"true": classes[i], "predicted": classes[j], "images": int(n),
         "share": n / max(1, sum(matrix[i]))}
        for i, row in enumerate(matrix) for j, n in enumerate(row)
    ])
    base = alt.Chart(data).encode(
        x=alt.X("predicted:N", sort=classes, title="predicted"),
        y=alt.Y("true:N", sort=classes, title="true"),
    )
    cells = base.mark_rect().encode(
        color=alt.Color("share:Q", scale=alt.Scale(scheme="blues", domain=[0, 1]), legend=None),
        tooltip=["true", "predicted", "images", alt.Tooltip("share:Q", format=".0%")],
    )
    text = base.mark_text(fontSize=11).encode(
        text="images:Q", color=alt.condition(alt.datum.share > 0.5, alt.value("white"), alt.value("black")))
    return (cells + text).properties(title=f"{arch}: confusion (rows: true class)", height=alt.Step(26),
                                     width=alt.Step(40))


def _download_data(run_dir: Path, status: dict) -> dict[str, bytes]:
    """The run's exports: the files the worker wrote when it finished, else built from its history so far."""
    from fer_realtime.charts import comparison_png, history_csv

    rows = status.get("history") or []
    exports = {}
    for name in ("comparison.png", "history.json", "history.csv"):
        try:
            exports[name] = (run_dir / name).read_bytes()
        except OSError:
            if not rows:
                continue
            if name == "comparison.png":
                exports[name] = comparison_png(rows, f"{status.get('name', '')}: accuracy per epoch")
            elif name == "history.csv":
                exports[name] = history_csv(rows).encode()
            else:
                exports[name] = json.dumps({"heldout": status.get("heldout"), "rows": rows}, indent=1).encode()
    return exports


def _use_model(path: str) -> None:
    st.session_state["model"] = path  # the sidebar's Model selector (a callback runs before the widget exists)


def results_view(status: dict, run_dir: Path) -> None:
    from fer_realtime.charts import comparison_figure

    state = status.get("state")
    if state in ACTIVE_STATES:
        st.info("This run is still training: its progress is shown above, its results appear here when it ends.")
        return
    if state == "failed":
        st.error(status.get("error") or "The run failed without saying why; see worker.log in its folder.")
    elif state == "cancelled":
        st.warning("This run was cancelled; the models it had finished are listed below.")
    else:
        started, finished = status.get("started"), status.get("finished")
        timed = isinstance(started, (int, float)) and isinstance(finished, (int, float))
        took = f" in {_duration(finished - started)}" if timed else ""
        st.success(f"Finished{took}.")
    facts = [f"dataset `{status.get('dataset', '?')}`"]
    if status.get("n_train") is not None:
        facts.append(f"{status['n_train']} training images")
    if status.get("heldout"):
        facts.append(f"held out: {status.get('n_heldout', '?')} images of {status['heldout']}")
    config = status.get("config") or {}
    if config:
        facts.append(f"{config.get('epochs')} epochs, batch {config.get('batch_size')}, "
                     f"augmentation {'on' if config.get('augment') else 'off'}")
    st.caption(" · ".join(facts))
    if status.get("pca"):
        pca = status["pca"]
        variance = pca.get("variance_retained")
        st.markdown(f"**PCA:** {pca.get('components')} components kept, retaining "
                    f"{_percent(variance)} of the training images' variance.")
    rows = status.get("history") or []
    results = status.get("results") or {}
    if rows:
        figure = comparison_figure(rows, f"{status.get('name') or status.get('run_id')}: accuracy per epoch")
        st.pyplot(figure, width=820, alt="Comparison chart: accuracy per epoch of every model")
    table = _results_table(status)
    if table is not None:
        st.markdown("**Final held-out accuracy, per-class recall and training time**")
        st.table(table)
        charts = st.columns(min(3, len(results)))
        for i, (arch, result) in enumerate(results.items()):
            if result.get("confusion"):
                charts[i % len(charts)].altair_chart(confusion_chart(result, arch), width="content")
        notes = [f"{arch}: {note}" for arch, result in results.items() for note in result.get("notes") or []]
        if notes:
            st.markdown("**Notes**\n" + "\n".join(f"- {n}" for n in notes))
    exports = _download_data(run_dir, status)
    if exports:
        cols = st.columns(3)
        mimes = {"comparison.png": "image/png", "history.json": "application/json", "history.csv": "text/csv"}
        labels = {"comparison.png": "Chart (PNG)", "history.json": "History (JSON)", "history.csv": "History (CSV)"}
        for col, name in zip(cols, [n for n in mimes if n in exports]):
            col.download_button(labels[name], exports[name], file_name=f"{status.get('run_id', 'run')}-{name}",
                                mime=mimes[name], key=f"download_{name}", on_click="ignore", icon="⬇️")
    if results:
        st.markdown("**Use the result**")
        for arch, result in results.items():
            path = result.get("model_path")
            if not path:
                continue
            in_models_dir = Path(path).parent.resolve() == MODELS_DIR.resolve()
            listed = f"{MODELS_LABEL}/{Path(path).name}" if in_models_dir else path
            if Path(path).is_file():
                cols = st.columns([4, 1])
                cols[0].markdown(
                    f"`{arch}` was saved to `{path}`; it is listed in the sidebar's **Model** selector as "
                    f"`{listed}` — the Live tab and the sidebar photos use the model selected there."
                )
                current = st.session_state.get("model") == path
                cols[1].button("In use" if current else f"Use {arch}", key=f"use_{arch}", on_click=_use_model,
                               args=(path,), disabled=current)
            else:
                st.markdown(f"`{arch}` was saved to `{path}`, which no longer exists.")


def results_section() -> None:
    runs = list_runs(RUNS_DIR)
    if not runs:
        st.caption(f"No training runs yet (they are kept in `{RUNS_DIR}`).")
        return
    by_dir = {r["run_dir"]: r for r in runs}
    wanted = st.session_state.pop("train_show_run", None)
    if wanted in by_dir:
        st.session_state["train_run_choice"] = wanted
    choice = st.selectbox("Run", list(by_dir), format_func=lambda d: run_label(by_dir[d]), key="train_run_choice",
                          help="Every run started here, newest first; pick an earlier one to compare.")
    try:
        results_view(by_dir[choice], Path(choice))
    except Exception as exc:  # a hand-edited or half-written status must not break the page
        logger.exception("showing the run %s failed", choice)
        st.error(f"The results of this run could not be shown ({type(exc).__name__}: {exc}).")


def current_model_section(entry: ModelEntry) -> None:
    if entry.metadata is not None:
        try:
            metadata_view(entry)
        except Exception as exc:  # odd values in a hand-edited file must not break the page
            logger.exception("showing the metadata of %s failed", entry.path)
            st.error(f"The record stored in {entry.name} could not be shown ({type(exc).__name__}: {exc}).")
    else:
        st.error(entry.error)


def training_tab(entry: ModelEntry) -> None:
    st.markdown("#### Train new models")
    st.markdown("**1. Dataset**")
    overview = dataset_section()
    st.markdown("**2. Training**")
    active = active_run(RUNS_DIR)
    if active is not None:
        st.info("A training run is in progress (one at a time); it is shown here in every tab that opens this page.")
        live_progress(active["run_dir"])
    else:
        options = options_section()
        start_section(overview, options)
    st.markdown("#### Results")
    results_section()
    st.markdown("#### The current model")
    current_model_section(entry)
    with st.expander("Training from the command line"):
        st.markdown(
            "`DATA_DIR` holds `train/` and `val/` (or `test/`) folders with one sub-folder of face images per "
            "emotion. Models saved in `models/` appear in the sidebar's model list."
        )
        st.code(TRAIN_COMMAND, language="bash")


def about_tab(entry: ModelEntry, engine, detector: str) -> None:
    st.markdown(
        "fer-realtime finds faces (Haar cascade or MediaPipe BlazeFace), classifies each face's expression into "
        f"{', '.join(EMOTIONS)} with a small CNN trained on 48×48 grayscale faces, tracks faces across frames "
        "and smooths their labels."
    )
    rows = {
        "Device the model runs on": engine.device if engine is not None else "no model loaded",
        "Model file": entry.path,
        "Face detector": detector,
    }
    try:
        import keras

        rows["Keras backend"] = f"{keras.backend.backend()} (Keras {keras.__version__})"
    except Exception:  # keras is present whenever a model loaded; this is only an info row
        pass
    st.markdown("\n".join(f"- **{k}:** `{v}`" for k, v in rows.items()))


def live_figures(update: LiveUpdate | None, waiting_since: float, idle_s: float = 0.0) -> None:
    import pandas as pd

    if update is None:
        st.info(f"Waiting for the first processed frame… ({time.monotonic() - waiting_since:.0f} s)")
        return
    if idle_s >= 3.0:
        st.warning(f"No frame processed for {idle_s:.0f} s; these figures are from the last one.")
    if update.error:
        st.error(f"A frame could not be processed, so it is shown unannotated: {update.error}")
        return
    cols = st.columns(3)  # the figures of `fer-realtime bench`, over the last 60 frames
    cols[0].metric("Frames/s", f"{update.fps:.1f}")
    cols[1].metric("ms per frame", f"{update.ms:.0f}", help="Median over the last 60 frames.")
    cols[2].metric("p90 ms", f"{update.ms_p90:.0f}", help="90 % of the last 60 frames took at most this long.")
    cols = st.columns(3)
    cols[0].metric("Faces", len(update.faces))
    cols[1].metric("Device", update.device)
    st.caption(f"{update.detector} face detector · model {update.model} · {update.frames} frames processed")
    if update.faces:
        st.table(
            pd.DataFrame(
                {
                    "track id": [f.track_id for f in update.faces],
                    "emotion": [f.label for f in update.faces],
                    "confidence": [f"{f.confidence:.0%}" for f in update.faces],
                }
            ),
            hide_index=True,
        )
    else:
        st.markdown("No face in view.")


def live_tab(entry: ModelEntry | None, detector: str, ice_servers: list) -> None:
    session = live_session()
    if entry is None:
        st.info("Choose a model that loads to start the live view.")
        return
    session.choose(detector, entry.path)
    video_column, figures_column = st.columns([3, 2], gap="medium")
    with video_column:
        ctx = webrtc_streamer(
            key="fer-live",
            mode=WebRtcMode.SENDRECV,
            video_frame_callback=session.process,
            media_stream_constraints={"video": {"width": 640, "height": 480}, "audio": False},
            async_processing=True,
            rtc_configuration={"iceServers": ice_servers},
        )
    if not ctx.state.playing:
        session.end_stream()
        figures_column.info("Press START and allow the camera: each face gets a box and its emotion, and the live "
                            "figures appear here.")
        return
    placeholder = figures_column.empty()
    started = time.monotonic()
    last, received_at, rendered_at = None, started, 0.0
    # The frame callback and this loop run in different threads; the figures follow the video closely, not
    # exactly. A widget change or STOP reruns the script, which ends this loop; so does a closed browser tab,
    # at the next Streamlit call, which is why the figures are redrawn at least once a second.
    while ctx.state.playing:
        update, now = session.latest(), time.monotonic()
        if update is not None:
            last, received_at = update, now
        if update is not None or now - rendered_at >= 1.0:
            with placeholder.container():
                live_figures(last, started, idle_s=now - received_at)
            rendered_at = now
        time.sleep(0.1)


# --------------------------------------------------------------------------------------------------------------
# The page
# --------------------------------------------------------------------------------------------------------------


def main() -> None:
    st.set_page_config(page_title="fer-realtime", page_icon="🙂", layout="wide")
    st.title("fer-realtime")
    st.caption("Facial-expression recognition in real time: live camera, photos, and the model behind them.")

    ml_runtime()  # before anything imports TensorFlow or MediaPipe (see there)
    entries = list_models()
    by_path = {e.path: e for e in entries}
    with st.sidebar:
        st.header("Settings")
        chosen_path = st.selectbox(
            "Model", [e.path for e in entries], format_func=lambda p: by_path[p].label, key="model"
        )
        model_upload_section()
        detector = st.radio(
            "Face detector", list(DETECTOR_NAMES), index=DETECTOR_NAMES.index(DEFAULT_DETECTOR), horizontal=True,
            key="detector",
        )
        problem = detector_problem(detector) if detector != "haar" else None
        if problem:
            st.warning(f"The {detector} detector cannot run here, so haar is used ({problem.strip().rstrip('.')}).")
            detector = "haar"

    entry = by_path[chosen_path]
    engine, usable = None, None
    if entry.error is not None:
        st.sidebar.error(entry.error)
    else:
        try:
            engine = load_engine(entry.path, _mtime(entry.path))
            usable = entry
        except ModelLoadError as exc:
            st.sidebar.error(str(exc))
        except Exception as exc:  # an unexpected loader failure still gets one sentence, not a traceback
            logger.exception("model loading failed")
            st.sidebar.error(f"{Path(entry.path).name} could not be loaded ({type(exc).__name__}: {exc}).")

    with st.sidebar:
        st.divider()
        photos_section(detector, usable)
        with st.expander("Connection"):
            ice_servers = ice_servers_setting()

    live, video, training, about = st.tabs(["Live", "Video", "Training", "About"])
    # The live tab's figure loop runs until the stream stops, so everything else is rendered before it.
    with video:
        video_tab(usable, detector)
    with training:
        training_tab(entry)
    with about:
        about_tab(entry, engine, detector)
    with live:
        live_tab(usable, detector, ice_servers)


main()
