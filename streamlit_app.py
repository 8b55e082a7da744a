"""fer-realtime in the browser: live webcam emotions (WebRTC), photos, videos, training and the model's record.

    streamlit run streamlit_app.py

A thin shell over the `fer_realtime` library; the page's parts are in `webapp/`, one module per tab or section.
The live stream's frame callback runs in a worker thread of streamlit-webrtc: it never calls Streamlit; it hands
a small typed update per frame to the page through a queue (fer_realtime.app.live), and the page shows the newest one
while the stream plays.

ICE servers for WebRTC: the sidebar's "Connection" field, or the environment variable FER_REALTIME_ICE_SERVERS
(a JSON list such as '[{"urls": ["stun:stun.example.org:3478"]}]'). The default is no ICE server at all, which
is enough when the browser and this server can reach each other directly (same machine or same network).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import streamlit as st
import streamlit_webrtc  # noqa: F401  (before TensorFlow is imported: see webapp.resources.ml_runtime)

if str(Path(__file__).resolve().parent) not in sys.path:  # `webapp` sits beside this file
    sys.path.insert(0, str(Path(__file__).resolve().parent))

from fer_realtime import ModelLoadError  # noqa: E402
from fer_realtime.app.model_catalog import ModelEntry, file_mtime, list_models  # noqa: E402
from fer_realtime.faces.detector import DETECTOR_NAMES  # noqa: E402
from fer_realtime.faces.detectors import DEFAULT_DETECTOR  # noqa: E402
from webapp.live_tab import live_tab  # noqa: E402
from webapp.model_view import about_tab  # noqa: E402
from webapp.photos_tab import photos_tab  # noqa: E402
from webapp.resources import detector_problem, load_engine, ml_runtime  # noqa: E402
from webapp.settings import app_paths  # noqa: E402
from webapp.sidebar import ice_servers_setting, model_upload_section, photos_uploader  # noqa: E402
from webapp.training_tab import training_tab  # noqa: E402
from webapp.video_tab import video_tab  # noqa: E402

logger = logging.getLogger(__name__)


def usable_engine(entry: ModelEntry):
    """The entry's inference engine, or None after one sentence in the sidebar saying why it cannot be used."""
    if entry.error is not None:
        st.sidebar.error(entry.error)
        return None
    try:
        return load_engine(entry.path, file_mtime(entry.path))
    except ModelLoadError as exc:
        st.sidebar.error(str(exc))
    except Exception as exc:  # an unexpected loader failure still gets one sentence, not a traceback
        logger.exception("model loading failed")
        st.sidebar.error(f"{Path(entry.path).name} could not be loaded ({type(exc).__name__}: {exc}).")
    return None


def main() -> None:
    st.set_page_config(page_title="fer-realtime", page_icon="🙂", layout="wide")
    st.title("fer-realtime")
    st.caption("Facial-expression recognition in real time: live camera, photos, and the model behind them.")

    ml_runtime()  # before anything imports TensorFlow or MediaPipe (see there)
    paths = app_paths()
    entries = list_models(paths.models, paths.models_label)
    by_path = {e.path: e for e in entries}
    with st.sidebar:
        st.header("Settings")
        chosen_path = st.selectbox(
            "Model", [e.path for e in entries], format_func=lambda p: by_path[p].label, key="model"
        )
        model_upload_section(paths)
        detector = st.radio(
            "Face detector", list(DETECTOR_NAMES), index=DETECTOR_NAMES.index(DEFAULT_DETECTOR), horizontal=True,
            key="detector",
        )
        problem = detector_problem(detector) if detector != "haar" else None
        if problem:
            st.warning(f"The {detector} detector cannot run here, so haar is used ({problem.strip().rstrip('.')}).")
            detector = "haar"

    entry = by_path[chosen_path]
    engine = usable_engine(entry)
    usable = entry if engine is not None else None
    with st.sidebar:
        st.divider()
        photo_files = photos_uploader()
        with st.expander("Connection"):
            ice_servers = ice_servers_setting()

    live, photos, video, training, about = st.tabs(["Live", "Photos", "Video", "Training", "About"])
    # The live tab's figure loop runs until the stream stops, so everything else is rendered before it.
    with photos:
        photos_tab(photo_files, detector, usable)
    with video:
        video_tab(usable, detector, paths)
    with training:
        training_tab(entry, paths)
    with about:
        about_tab(entry, engine, detector)
    with live:
        live_tab(usable, detector, ice_servers)


main()
