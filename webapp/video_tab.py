"""The Video tab: every frame of an uploaded video through the live frame processor; emotions over time, an
annotated copy and the per-face timeline (fer_realtime.app.video_uploads keeps the files)."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import streamlit as st

from fer_realtime import FerError
from fer_realtime.app.model_catalog import ModelEntry, file_mtime, safe_file_name
from fer_realtime.app.video_uploads import VIDEO_TYPES, VideoResult, process_upload

from .charts import emotion_timeline_chart
from .settings import AppPaths

logger = logging.getLogger(__name__)

MAX_VIDEO_MB = 200  # per uploaded video (MiB, as Streamlit's uploader counts)
RESULT = "video_result"  # session state: (key, VideoResult); key = (upload file id, detector, model path, mtime)


def _drop_result() -> None:
    stored = st.session_state.pop(RESULT, None)
    if stored is not None:
        shutil.rmtree(stored[1].folder, ignore_errors=True)


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
    stem = safe_file_name(Path(result.name).stem, "") or "video"
    cols = st.columns(2)
    cols[0].download_button("Timeline (CSV)", _file_bytes(result.csv_path), file_name=f"{stem}-timeline.csv",
                            mime="text/csv", key="video_download_csv", on_click="ignore", icon="⬇️")
    cols[1].download_button("Annotated video (WebM)", _file_bytes(result.video_path),
                            file_name=f"{stem}-annotated.webm", mime="video/webm", key="video_download_video",
                            on_click="ignore", icon="⬇️")


def _process_now(uploaded, detector: str, entry: ModelEntry, paths: AppPaths) -> VideoResult | None:
    if uploaded.size > MAX_VIDEO_MB * 2**20:
        st.error(f"{uploaded.name} is {uploaded.size / 2**20:.0f} MB; videos are limited to {MAX_VIDEO_MB} MB.")
        return None
    bar = st.progress(0.0, text=f"Processing {uploaded.name}…")

    def progress(done: int, total: int) -> None:
        share = min(1.0, done / total) if total else 0.0
        bar.progress(share, text=f"Processing {uploaded.name}: {done} of {total or '?'} frames")

    try:
        result = process_upload(uploaded, uploaded.name, detector, entry.path, paths.videos, progress)
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


def video_tab(entry: ModelEntry | None, detector: str, paths: AppPaths) -> None:
    uploaded = st.file_uploader(
        "Video file", type=list(VIDEO_TYPES), key="video_upload", max_upload_size=MAX_VIDEO_MB,
        help=f"{', '.join(VIDEO_TYPES)}; up to {MAX_VIDEO_MB} MB. Every frame goes through the live view's "
        "processing (faces tracked, labels smoothed).",
    )
    stored = st.session_state.get(RESULT)
    if stored is not None and (uploaded is None or stored[0][0] != uploaded.file_id):
        _drop_result()  # a different file, or none: its results go with it
        stored = None
    if uploaded is None:
        st.caption(f"Upload a video ({', '.join(VIDEO_TYPES)}; up to {MAX_VIDEO_MB} MB) to see its emotions over "
                   "time, an annotated copy and a per-face timeline (CSV).")
        return
    if entry is None:
        st.info("Choose a model that loads to process videos.")
        return
    key = (uploaded.file_id, detector, entry.path, file_mtime(entry.path))
    settings = f"the sidebar's {detector} face detector and model {Path(entry.path).name}"
    if st.button("Process video" if stored is None else "Process again", key="video_process", type="primary",
                 help=f"Uses {settings}."):
        st.session_state["video_pending"] = key
    # The request outlives the script run: a rerun (another widget, the WebRTC component announcing itself)
    # interrupts a run at its next Streamlit call, and the next run must then start the processing again.
    if st.session_state.get("video_pending") == key:
        new = _process_now(uploaded, detector, entry, paths)
        st.session_state.pop("video_pending", None)
        if new is not None:
            _drop_result()
            st.session_state[RESULT] = stored = (key, new)
    if stored is None:
        st.caption(f"Processing uses {settings}.")
        return
    processed_with, result = stored
    if processed_with != key:
        st.caption(f"Processed with the {result.detector} detector and model {result.model}; press Process again "
                   f"to use {settings}.")
    video_result_view(result)
