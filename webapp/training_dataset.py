"""The Training tab's first step: a dataset from the server or an upload, loaded once (cached per content) and
shown as images per class and split with sample faces."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from fer_realtime import FerError
from fer_realtime.data.loader import dataset_signature
from fer_realtime.data.uploads import upload_digest

from .settings import DEFAULT_DATASET, AppPaths, repo_path

logger = logging.getLogger(__name__)

SAMPLES_PER_CLASS = 6
LOADED = "train_dataset"  # session state: the loaded dataset's overview, used to start training
# Session state: a Load pressed and not yet done, (kind, what). The request outlives the script run: a rerun (the
# WebRTC component announcing itself when the page first leaves the Live tab, another widget) interrupts a run at
# its next Streamlit call, and the button is True in that one run only.
PENDING = "train_load_pending"


def _pending(kind: str, what) -> bool:
    return st.session_state.get(PENDING) == (kind, what)


def _overview(dataset) -> dict:
    summary = dataset.summary()
    return {"source": str(dataset.source), "summary": summary, "samples": dataset.samples(per_class=SAMPLES_PER_CLASS)}


@st.cache_data(show_spinner=False, max_entries=8)
def dataset_overview(source: str, signature: tuple) -> dict:
    """Summary and sample faces of a dataset on the server (cached per path and file version: FER2013 takes a while)."""
    from fer_realtime.data.loader import load_dataset

    return _overview(load_dataset(source))


@st.cache_data(show_spinner=False, max_entries=4)
def upload_overview(digest: str, workdir: str, _files: list[tuple[str, bytes]]) -> dict:
    """The same for uploaded files, extracted once per content under `workdir` (the worker reloads from there)."""
    from fer_realtime.data.uploads import load_uploaded_dataset

    return _overview(load_uploaded_dataset(_files, Path(workdir)))


def _load_into_session(load, label: str) -> None:
    """Run `load()` (returning an overview) under a spinner; keep it for training, or show one sentence."""
    with st.spinner(f"Loading {label}… (a large dataset such as FER2013 takes a minute the first time)"):
        try:
            overview = load()
        except FerError as exc:
            st.session_state.pop(LOADED, None)
            st.error(str(exc))
            return
        except Exception as exc:  # a reader failing in an unforeseen way: still one sentence
            logger.exception("loading the dataset %s failed", label)
            st.session_state.pop(LOADED, None)
            first_line = str(exc).splitlines()[0] if str(exc) else ""
            st.error(f"{label} could not be loaded ({type(exc).__name__}: {first_line}).")
            return
    st.session_state[LOADED] = {**overview, "label": label}


def dataset_section(paths: AppPaths) -> dict | None:
    """Choose and load a dataset; returns the loaded overview (kept in the session) or None."""
    kind = st.radio("Dataset from", ["A folder or file on the server", "An upload"], horizontal=True,
                    key="train_source_kind")
    if kind == "An upload":
        files = st.file_uploader(
            "Dataset files", type=["zip", "csv", "npy"], accept_multiple_files=True, key="train_upload",
            help="One .zip of class folders (optionally inside train/, val/ or test/ folders), one FER2013 .csv, "
            "or two .npy files named X… (images) and Y… (labels).",
        )
        if st.button("Load", key="train_load_upload", disabled=not files):
            st.session_state[PENDING] = ("upload", [f.file_id for f in files])
        if _pending("upload", [f.file_id for f in files or []]):
            data = [(f.name, f.getvalue()) for f in files]
            names = ", ".join(name for name, _ in data)
            _load_into_session(lambda: upload_overview(upload_digest(data), str(paths.uploads), data), names)
            st.session_state.pop(PENDING, None)
    else:
        default = DEFAULT_DATASET if repo_path(DEFAULT_DATASET).exists() else ""
        text = st.text_input(
            "Dataset path", value=default, key="train_dataset_path", placeholder="/data/fer2013",
            help="A folder of class folders (angry/, happy/, … optionally inside train/ and val/ or test/), a "
            "FER2013 .csv, or a folder with an X.npy + Y.npy pair. Relative paths start at the repository root.",
        )
        if st.button("Load", key="train_load_path"):
            st.session_state[PENDING] = ("path", text)
        if _pending("path", text):
            if not text.strip():
                st.session_state.pop(LOADED, None)
                st.error("Type the path of a dataset on the server first.")
            else:
                source = repo_path(text.strip())
                _load_into_session(lambda: dataset_overview(str(source), dataset_signature(source)), text.strip())
            st.session_state.pop(PENDING, None)
    overview = st.session_state.get(LOADED)
    if overview is not None:
        dataset_summary_view(overview)
    return overview


def _sample_strip(images):
    gap = 4
    height, width = images.shape[1:3]
    strip = np.full((height, len(images) * (width + gap) - gap), 255, dtype=np.uint8)
    for i, image in enumerate(images):
        strip[:, i * (width + gap) : i * (width + gap) + width] = image
    return strip


def dataset_summary_view(overview: dict) -> None:
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
