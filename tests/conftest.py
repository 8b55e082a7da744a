"""Shared test setup: the repository root is importable however pytest is started."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# pylibsrtp (under streamlit-webrtc's aiortc) segfaults when it is first imported after TensorFlow, as in a
# pytest process where earlier tests loaded a model; the page itself imports streamlit_webrtc first. Do the same.
try:
    import streamlit_webrtc  # noqa: F401
except ImportError:
    pass


import pytest  # noqa: E402


@pytest.fixture(autouse=True, scope="session")
def _session_runs_in_tmp(tmp_path_factory):
    """Module- and session-scoped fixtures that train run before any function fixture: without this their run
    state went to the user's ~/.cache/fer-realtime/runs, where a run of the same name could be overwritten."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FER_REALTIME_RUNS", str(tmp_path_factory.mktemp("fer-runs")))
        yield


@pytest.fixture(autouse=True)
def _runs_in_tmp(tmp_path, monkeypatch):
    """Training runs keep their state under FER_REALTIME_RUNS: a test's own folder, never the user's cache."""
    monkeypatch.setenv("FER_REALTIME_RUNS", str(tmp_path / "fer-runs"))
