"""The Photos tab: the photos uploaded in the sidebar, each annotated at full width with a table of its faces and
their seven probabilities as bars; downloads of the annotated photos (zip of PNGs) and of the results (JSON in
`predict --json`'s shape, and CSV). Many photos get a progress bar while they are analysed and pages of a few."""

from __future__ import annotations

import time

import pandas as pd
import streamlit as st

from fer_realtime.app.model_catalog import ModelEntry, file_mtime
from fer_realtime.app.photos import PhotoResult, analyze_photo, annotated_zip, results_csv, results_json

PHOTOS_PER_PAGE = 5
UPLOADED = "photo_files"  # session state: the sidebar uploader's files
RESULTS = "photo_results"  # session state: {(file id, detector, model, mtime): PhotoResult}


def _recognizer(detector: str, entry: ModelEntry):
    """The session's recognizer for photos (detection options for stills), rebuilt when the choice changes."""
    from fer_realtime.faces.detectors import still_image_options
    from fer_realtime.recognizer import EmotionRecognizer

    key = (detector, entry.path, file_mtime(entry.path))
    cached = st.session_state.get("photo_recognizer")
    if cached is None or cached[0] != key:
        if cached is not None:
            cached[1].close()
        recognizer = EmotionRecognizer(detector=still_image_options(detector), model=entry.path)
        st.session_state["photo_recognizer"] = cached = (key, recognizer)
    return cached


def _analyzed(files, detector: str, entry: ModelEntry) -> tuple[list[PhotoResult], tuple[str, ...]]:
    """Every uploaded photo's result, analysing those not seen with this detector and model (progress bar); and
    the model's classes. Each result is kept as soon as it is made: a rerun that interrupts the analysis (another
    widget, the WebRTC component announcing itself) goes on from there."""
    key, recognizer = _recognizer(detector, entry)
    stored = st.session_state.setdefault(RESULTS, {})
    wanted = [(f.file_id, key) for f in files]
    todo = [(f, k) for f, k in zip(files, wanted) if k not in stored]
    bar = st.progress(0.0, text=f"Analysing {len(todo)} photos…") if len(todo) > 1 else None
    for done, (uploaded, result_key) in enumerate(todo, 1):
        stored[result_key] = analyze_photo(uploaded.name, uploaded.getvalue(), recognizer)
        if bar is not None:
            bar.progress(done / len(todo), text=f"Analysed {done} of {len(todo)} photos")
    if bar is not None:
        bar.empty()
    for old in set(stored) - set(wanted):  # only the photos uploaded now are kept
        del stored[old]
    return [stored[k] for k in wanted], recognizer.classes


def _faces_table(result: PhotoResult, classes) -> None:
    rows = []
    for number, face in enumerate(result.faces, 1):
        x, y, w, h = face.box
        rows.append({"face": number, "box (x, y, w, h)": f"{x}, {y}, {w}, {h}", "label": face.label,
                     "confidence": face.confidence, **{c: face.scores[c] for c in classes}})
    bars = {c: st.column_config.ProgressColumn(c, min_value=0.0, max_value=1.0, format="percent", width="small")
            for c in classes}  # narrow: the seven bars fit beside the face's box and label
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch",
                 column_config={"face": st.column_config.NumberColumn(width="small"),
                                "confidence": st.column_config.NumberColumn(format="percent", width="small"),
                                **bars})


def _photo(result: PhotoResult, classes) -> None:
    if result.error is not None:
        st.error(result.error)
        return
    st.image(result.annotated, channels="BGR", caption=result.name, width="stretch")
    if result.faces:
        _faces_table(result, classes)
    else:
        st.info(f"No face found in {result.name}.")


def photos_tab(files, detector: str, entry: ModelEntry | None) -> None:
    if not files:
        st.caption("Upload photos in the sidebar (jpg, png, webp, bmp): each is shown here with every face's box, "
                   "label and probabilities, with downloads of the results.")
        return
    if entry is None:
        st.info("Choose a model that loads to analyse photos.")
        return
    results, classes = _analyzed(files, detector, entry)
    faces = sum(len(r.faces) for r in results)
    bad = sum(r.error is not None for r in results)
    st.caption(f"{len(results)} photos · {faces} faces · {detector} face detector" +
               (f" · {bad} could not be read" if bad else ""))
    stamp = time.strftime("%Y%m%d-%H%M%S")
    cols = st.columns(3)
    cols[0].download_button("Annotated photos (zip)", lambda: annotated_zip(results),
                            file_name=f"photos-{stamp}-annotated.zip", mime="application/zip",
                            key="photos_download_zip", on_click="ignore", icon="⬇️")
    cols[1].download_button("Results (JSON)", lambda: results_json(results), file_name=f"photos-{stamp}.json",
                            mime="application/json", key="photos_download_json", on_click="ignore", icon="⬇️",
                            help="One object per photo, as `fer-realtime predict --json` prints it.")
    cols[2].download_button("Results (CSV)", lambda: results_csv(results, classes),
                            file_name=f"photos-{stamp}.csv", mime="text/csv", key="photos_download_csv",
                            on_click="ignore", icon="⬇️", help="One row per face.")
    pages = max(1, -(-len(results) // PHOTOS_PER_PAGE))
    page = 1
    if pages > 1:
        page = st.number_input(f"Page (of {pages}, {PHOTOS_PER_PAGE} photos each)", min_value=1, max_value=pages,
                               value=1, step=1, key=f"photos_page_{pages}")
    for result in results[(page - 1) * PHOTOS_PER_PAGE : page * PHOTOS_PER_PAGE]:
        _photo(result, classes)

