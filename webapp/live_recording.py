"""The Live tab's record of the stream: downloads while it plays, and after STOP its emotions over time per face,
each face's share of time per emotion, the last annotated frame, the timeline (CSV) and that frame (PNG)."""

from __future__ import annotations

import time

import pandas as pd
import streamlit as st

from fer_realtime.app.live import LiveSession
from fer_realtime.video.recording import MAX_ROWS, ROW_BYTES
from fer_realtime.video.timeline import label_shares_per_track, shares_by_time

from .charts import emotion_timeline_chart, label_share_chart

ALL_FACES = "all faces"
CHART_POINTS = 120  # about this many time bins on the emotions-over-time line


def _downloads(session: LiveSession, stamp: str) -> None:
    """The two download buttons; their data is read from the session when pressed (the stream may still run)."""
    def timeline_csv() -> bytes:
        recording = session.recording
        return recording.csv() if recording is not None else b""

    def snapshot_png() -> bytes:
        return session.snapshot_png() or b""

    cols = st.columns(2)
    cols[0].download_button("Download timeline (CSV)", timeline_csv, file_name=f"live-{stamp}-timeline.csv",
                            mime="text/csv", key="live_download_csv", on_click="ignore", icon="⬇️",
                            help="One row per face per frame: frame, time_s, track_id, box, label, confidence "
                                 "and every emotion's probability (the columns of `fer-realtime video --csv`).")
    cols[1].download_button("Download snapshot (PNG)", snapshot_png, file_name=f"live-{stamp}-snapshot.png",
                            mime="image/png", key="live_download_snapshot", on_click="ignore", icon="⬇️",
                            help="The newest annotated frame.")


def recording_while_playing(session: LiveSession) -> None:
    st.markdown("**This stream's record**")
    st.caption(f"Every processed frame's faces are recorded (the last {MAX_ROWS:,} face rows: 30 minutes at 30 "
               f"frames/s with four faces, {MAX_ROWS * ROW_BYTES / 2**20:.0f} MiB); download them now or after STOP.")
    _downloads(session, time.strftime("%Y%m%d-%H%M%S"))


def recording_after_stop(session: LiveSession) -> None:
    recording = session.recording
    if recording is None or recording.frames == 0:
        return
    st.markdown("#### The last stream")
    rows = recording.rows()
    tracks = sorted({row["track_id"] for row in rows})
    cols = st.columns(4)
    cols[0].metric("Length", f"{recording.duration_s:.1f} s")
    cols[1].metric("Frames", recording.frames)
    cols[2].metric("Face rows", len(rows), help="One per face per frame, as in the downloadable timeline.")
    cols[3].metric("Faces", len(tracks), help="Faces tracked across frames (a face that leaves and comes back "
                                              "counts again).")
    if recording.dropped_rows:
        st.caption(f"The oldest {recording.dropped_rows:,} face rows were dropped (the record keeps "
                   f"{recording.max_rows:,}).")
    if rows:
        chosen = st.selectbox("Face", [ALL_FACES, *(f"face {t}" for t in tracks)], key="live_record_face")
        track = None if chosen == ALL_FACES else int(chosen.split()[-1])
        bin_s = max(0.5, recording.duration_s / CHART_POINTS)
        shares = pd.DataFrame(shares_by_time(rows, recording.classes, bin_s, track)).set_index("time_s")
        title = "mean probability over the faces" if track is None else f"probability, face {track}"
        st.altair_chart(emotion_timeline_chart(shares, y_title=title), width="stretch")
        st.altair_chart(label_share_chart(label_shares_per_track(rows)), width="stretch")
    else:
        st.info("No face was found during the stream.")
    snapshot = session.snapshot_png()
    if snapshot:
        st.image(snapshot, caption="The last annotated frame", width=320)
    _downloads(session, time.strftime("%Y%m%d-%H%M%S"))
