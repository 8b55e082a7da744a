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
from fer_realtime.model_io import ModelMetadata, default_model_path, read_metadata

ROOT = Path(__file__).resolve().parent
MODELS_DIR = ROOT / "models"  # user-trained models: every *.keras here is offered in the model list
ICE_ENV = "FER_REALTIME_ICE_SERVERS"
TRAIN_COMMAND = "python -m fer_realtime train --data DATA_DIR --out models/NAME.keras"

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
                entries.append(_entry(path, f"models/{path.name}"))
    return entries


def _mtime(path: str) -> float:
    try:
        return os.stat(path).st_mtime
    except OSError:
        return 0.0


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


def make_recognizer(detector: str, model_path: str):
    from fer_realtime.recognizer import EmotionRecognizer

    return EmotionRecognizer(detector=detector, model=model_path)


# --------------------------------------------------------------------------------------------------------------
# Live stream: the state shared between the page and the frame callback
# --------------------------------------------------------------------------------------------------------------


class LiveUpdate(NamedTuple):
    """What the frame callback tells the page about one processed frame."""

    faces: tuple  # FaceResult, smoothed per track
    fps: float
    ms: float  # median processing time per frame
    frames: int
    device: str
    detector: str
    model: str  # the model file's name
    error: str | None = None  # set when the frame could not be processed (the raw frame was sent back)


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
                       processor.recognizer.device, detector, Path(model_path).name)
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
        st.session_state["photo_recognizer"] = (key, make_recognizer(detector, entry.path))
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


def _percent(value, missing: str = "–") -> str:
    return f"{value:.1%}" if isinstance(value, (int, float)) else missing


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


def training_tab(entry: ModelEntry) -> None:
    st.markdown("#### The current model")
    if entry.metadata is not None:
        try:
            metadata_view(entry)
        except Exception as exc:  # odd values in a hand-edited file must not break the page
            logger.exception("showing the metadata of %s failed", entry.path)
            st.error(f"The record stored in {entry.name} could not be shown ({type(exc).__name__}: {exc}).")
    else:
        st.error(entry.error)
    st.markdown("#### Train a new model")
    st.markdown(
        "Training runs from the command line. `DATA_DIR` holds `train/` and `val/` (or `test/`) folders with one "
        "sub-folder of face images per emotion. Models saved in `models/` appear in the sidebar's model list."
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
    cols = st.columns(4)
    cols[0].metric("Frames/s", f"{update.fps:.1f}")
    cols[1].metric("ms per frame", f"{update.ms:.0f}")
    cols[2].metric("Faces", len(update.faces))
    cols[3].metric("Device", update.device)
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

    entries = list_models()
    by_path = {e.path: e for e in entries}
    with st.sidebar:
        st.header("Settings")
        chosen_path = st.selectbox(
            "Model", [e.path for e in entries], format_func=lambda p: by_path[p].label, key="model"
        )
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

    live, training, about = st.tabs(["Live", "Training", "About"])
    # The live tab's figure loop runs until the stream stops, so everything else is rendered before it.
    with training:
        training_tab(entry)
    with about:
        about_tab(entry, engine, detector)
    with live:
        live_tab(usable, detector, ice_servers)


main()
