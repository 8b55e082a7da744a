"""The chosen model's record, as stored in its file: accuracy, per-class recall, how it runs, how it was made;
and the About tab."""

from __future__ import annotations

import logging

import pandas as pd
import streamlit as st

from fer_realtime import EMOTIONS
from fer_realtime.app.model_catalog import ModelEntry
from fer_realtime.inference.tta import TestTimeAugmentation

from .text import percent

logger = logging.getLogger(__name__)


def inference_notes(meta) -> list[str]:
    notes = [f"- test-time augmentation: {TestTimeAugmentation.of(meta).describe()}"]
    int8 = meta.int8
    if int8.get("used"):
        notes.append(
            "- on CPUs: its int8 TensorFlow Lite copy (selection-split accuracy "
            f"{percent(int8.get('selection_accuracy_int8'))} against {percent(int8.get('selection_accuracy_float'))}"
            " for the float network; the same class for"
            f" {percent(int8.get('agreement_with_float'))} of faces)"
        )
    else:
        notes.append("- on CPUs: the float network through TensorFlow Lite (no int8 copy in the file)")
    return notes


def metadata_view(entry: ModelEntry) -> None:
    meta = entry.metadata
    st.subheader(entry.name)
    metrics, data = meta.metrics, meta.training_data
    accuracy = metrics.get("heldout_accuracy")
    cols = st.columns(3)
    cols[0].metric("Architecture", meta.architecture or "not recorded")
    cols[1].metric("Held-out accuracy", percent(accuracy, "not recorded"))
    cols[2].metric("Input", f"{meta.input_size[1]}×{meta.input_size[0]} {meta.preprocessing.color}")
    if metrics.get("heldout_data"):
        st.markdown(f"Held-out data: `{metrics['heldout_data']}`")
    recall = metrics.get("per_class_recall")
    if isinstance(recall, dict) and recall:
        st.markdown("**Per-class recall on the held-out data**")
        st.table(
            pd.DataFrame({"class": list(meta.classes), "recall": [percent(recall.get(c)) for c in meta.classes]}),
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


def current_model_section(entry: ModelEntry) -> None:
    if entry.metadata is not None:
        try:
            metadata_view(entry)
        except Exception as exc:  # odd values in a hand-edited file must not break the page
            logger.exception("showing the metadata of %s failed", entry.path)
            st.error(f"The record stored in {entry.name} could not be shown ({type(exc).__name__}: {exc}).")
    else:
        st.error(entry.error)


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
