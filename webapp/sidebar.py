"""The sidebar's sections: adding a model file, the photos to analyse, the WebRTC connection setting."""

from __future__ import annotations

import json
import logging
import os

import streamlit as st

from fer_realtime import FerError
from fer_realtime.app.model_catalog import MAX_MODEL_MB, add_uploaded_model, safe_file_name
from fer_realtime.core.images import IMAGE_TYPES

from .resources import ml_runtime
from .settings import ICE_ENV, AppPaths

logger = logging.getLogger(__name__)

MODEL_UPLOAD_NOTE = "model_upload_note"  # (the upload's file id, "success" | "error", one sentence)


def _on_model_upload(paths: AppPaths) -> None:
    """The model uploader's on_change: runs before the page, so a good model is selected in the list at once."""
    uploaded = st.session_state.get("model_upload")
    if uploaded is None:
        st.session_state.pop(MODEL_UPLOAD_NOTE, None)
        return
    name = safe_file_name(uploaded.name, ".keras")
    ml_runtime()  # callbacks run before the page: TensorFlow may not have been imported yet
    try:
        path = add_uploaded_model(name, uploaded.getvalue(), paths.models, paths.uploads)
    except FerError as exc:
        note = ("error", str(exc))
    except OSError as exc:
        note = ("error", f"{name} could not be saved in {paths.models_label} ({exc.strerror or exc}).")
    except Exception as exc:  # an unforeseen loader failure: still one sentence
        logger.exception("checking the uploaded model %s failed", name)
        note = ("error", f"{name} could not be checked as a model ({type(exc).__name__}).")
    else:
        st.session_state["model"] = str(path)
        note = ("success", f"{name} loads as a fer-realtime model: added as {paths.models_label}/{path.name} and "
                "selected.")
    st.session_state[MODEL_UPLOAD_NOTE] = (uploaded.file_id, *note)


def model_upload_section(paths: AppPaths) -> None:
    uploaded = st.file_uploader(
        "Add a model (.keras)", type=["keras"], key="model_upload", on_change=_on_model_upload, args=(paths,),
        max_upload_size=MAX_MODEL_MB,
        help=f"A fer-realtime model file (up to {MAX_MODEL_MB} MB). It is loaded in Keras safe mode first; if it "
        f"loads, it is saved in {paths.models_label} and selected above.",
    )
    note = st.session_state.get(MODEL_UPLOAD_NOTE)
    if uploaded is not None and (note is None or note[0] != uploaded.file_id):
        # The on_change check did not run for this file (a rerun that came with the upload can swallow the
        # callback): check it now, and rerun so that a good model is selected in the list above.
        _on_model_upload(paths)
        st.rerun()
    if uploaded is not None and note is not None and note[0] == uploaded.file_id:
        (st.success if note[1] == "success" else st.error)(note[2])


def photos_uploader() -> list:
    """The photos to analyse; the Photos tab shows them."""
    return st.file_uploader(
        "Photos",
        type=list(IMAGE_TYPES),
        accept_multiple_files=True,
        key="photo_files",
        help="Each photo is analysed on its own and shown in the Photos tab: every face gets a box, a label and "
             "its probabilities.",
    ) or []


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
