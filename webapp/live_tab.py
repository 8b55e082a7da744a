"""The Live tab: the webcam through WebRTC into the session's LiveSession, its figures beside the video, the
smoothing and uncertainty controls above it and the stream's record below (live_recording.py)."""

from __future__ import annotations

import time

import av
import pandas as pd
import streamlit as st
from streamlit_webrtc import WebRtcMode, webrtc_streamer

from fer_realtime.app.live import LiveSession, LiveUpdate
from fer_realtime.app.model_catalog import ModelEntry
from fer_realtime.video.processor import DEFAULT_SMOOTHING, SMOOTHING

from .browser_fps import received_fps_meter
from .live_recording import recording_after_stop, recording_while_playing

FIGURES_EVERY_S = 0.5  # the live figures' redraws, at most

SMOOTHING_HELP = ("How steady each face's label is: each frame keeps this much of the face's earlier probabilities "
                  "(off 0, light 0.6, normal 0.8, strong 0.9). Stronger is steadier and follows a change of "
                  "expression later; see README \"Smoothing\" for the measured figures.")


def live_session() -> LiveSession:
    if "live_session" not in st.session_state:
        st.session_state["live_session"] = LiveSession()
    return st.session_state["live_session"]


def frame_callback(session: LiveSession):
    """streamlit-webrtc's queued_video_frames_callback for `session` (one per session, so every rerun hands the
    streamer the same function): it gets the frames that arrived while the last one was processed, processes the
    newest (the others are counted as dropped) and runs in a worker thread, never calling Streamlit."""
    if st.session_state.get("live_callback", (None,))[0] is not session:

        async def callback(frames: list[av.VideoFrame]) -> list[av.VideoFrame]:
            annotated = session.process_newest(frames[-1].to_ndarray(format="bgr24"), skipped=len(frames) - 1)
            return [av.VideoFrame.from_ndarray(annotated, format="bgr24")]

        st.session_state["live_callback"] = (session, callback)
    return st.session_state["live_callback"][1]


def live_figures(update: LiveUpdate | None, waiting_since: float, idle_s: float = 0.0) -> None:
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
    cols[1].metric("Device", "Ray Serve" if update.device.startswith("Ray Serve") else update.device.split(" (")[0])
    cols[2].metric("Dropped", update.dropped, help="Frames skipped since START: a newer frame had arrived before "
                                                   "they were processed, so the video stays current.")
    st.caption(f"{update.detector} face detector · model {update.model} on {update.device} · {update.frames} frames "
               "processed")
    if update.model_problem:
        st.warning(update.model_problem)
    if update.faces:
        st.table(
            pd.DataFrame(
                {
                    "track id": [f.track_id for f in update.faces],
                    "emotion": [f.shown_label for f in update.faces],
                    "confidence": [f"{f.confidence:.0%}" for f in update.faces],
                }
            ),
            hide_index=True,
        )
    else:
        st.markdown("No face in view.")


def live_options() -> tuple[str, float | None]:
    """The smoothing and the optional "uncertain" bar; both apply to the running stream at once."""
    cols = st.columns([3, 2, 3], vertical_alignment="bottom")
    smoothing = cols[0].select_slider("Smoothing", options=list(SMOOTHING), value=DEFAULT_SMOOTHING,
                                      key="live_smoothing", help=SMOOTHING_HELP)
    marked = cols[1].toggle("Mark uncertain faces", key="live_uncertain",
                            help="Faces whose confidence is below the bar are labelled \"uncertain\" instead of "
                                 "with an emotion they are not sure of.")
    bar = cols[2].slider("Uncertain below confidence", min_value=20, max_value=90, value=40, step=5, format="%d%%",
                         key="live_uncertain_below", disabled=not marked)
    return smoothing, (bar / 100 if marked else None)


def live_tab(entry: ModelEntry | None, detector: str, ice_servers: list) -> None:
    session = live_session()
    if entry is None:
        st.info("Choose a model that loads to start the live view.")
        return
    smoothing, uncertain_below = live_options()
    session.choose(detector, entry.path, smoothing, uncertain_below)
    video_column, figures_column = st.columns([3, 2], gap="medium")
    with video_column:
        ctx = webrtc_streamer(
            key="fer-live",
            mode=WebRtcMode.SENDRECV,
            queued_video_frames_callback=frame_callback(session),
            media_stream_constraints={"video": {"width": 640, "height": 480}, "audio": False},
            async_processing=True,
            rtc_configuration={"iceServers": ice_servers},
        )
    if not ctx.state.playing:
        session.end_stream()
        figures_column.info("Press START and allow the camera: each face gets a box and its emotion, and the live "
                            "figures appear here.")
        recording_after_stop(session)
        return
    with figures_column:
        received_fps_meter()
    placeholder = figures_column.empty()
    recording_while_playing(session)
    started = time.monotonic()
    last, received_at, rendered_at = None, started, 0.0
    # The frame callback and this loop run in different threads; the figures follow the video closely, not
    # exactly. A widget change or STOP reruns the script, which ends this loop; so does a closed browser tab,
    # at the next Streamlit call, which is why the figures are redrawn at least once a second. They are redrawn
    # at most FIGURES_EVERY_S: redrawing on every frame took a fifth of the server's time with one stream
    # (benchmarks/profile_streams.py --browser).
    while ctx.state.playing:
        update, now = session.latest(), time.monotonic()
        if update is not None:
            last, received_at = update, now
        if now - rendered_at >= (FIGURES_EVERY_S if last is not None and received_at > rendered_at else 1.0):
            with placeholder.container():
                live_figures(last, started, idle_s=now - received_at)
            rendered_at = now
        time.sleep(0.1)
