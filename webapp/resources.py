"""What the page loads once per server process and shares between sessions."""

from __future__ import annotations

import logging

import streamlit as st

logger = logging.getLogger(__name__)


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
    from fer_realtime.inference.engine import get_engine

    return get_engine(path)


@st.cache_resource(show_spinner="Starting the face detector…")
def detector_problem(name: str) -> str | None:
    """None if the detector can be created here, else the one sentence saying why not (checked once)."""
    from fer_realtime.core.errors import DetectorError
    from fer_realtime.faces.detectors import create_detector

    try:
        create_detector(name).close()
    except DetectorError as exc:
        return str(exc)
    except Exception as exc:  # a native library failing in an unforeseen way: still one sentence
        logger.exception("creating the %s detector failed", name)
        return f"creating it failed ({type(exc).__name__}: {exc})"
    return None
