"""Shared test setup: the repository root is importable however pytest is started, training runs keep their state
in tmp, and one model made by `train` serves the tests that need one."""

import contextlib
import io
import sys
from pathlib import Path
from types import SimpleNamespace

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


@pytest.fixture(scope="session")
def model_made_by_train(tmp_path_factory, _session_runs_in_tmp):
    """One `train` run (the default recipe, 2 epochs on write_train_val's 10 faces per class, with a handover file and
    --verbose) for the tests of what the command writes, prints and leaves behind, and those that need a model made
    by it: (args, data, out, handover, printed, runs root it used)."""
    from fer_realtime.cli.main import main
    from fer_realtime.training.run_state import runs_root
    from helpers import write_train_val

    root = tmp_path_factory.mktemp("made_by_train")
    data = write_train_val(root / "data", train_per_class=10)
    out, handover = root / "models" / "tiny.keras", root / "campaign" / "tiny.state.npz"
    args = ["train", "--data", str(data), "--epochs", "2", "--batch-size", "16", "--out", str(out),
            "--cache-dir", str(root / "cache"), "--handover", str(handover)]
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = main([*args, "--verbose"])
    assert code == 0, printed.getvalue()[-3000:]
    return SimpleNamespace(args=args, data=data, out=out, handover=handover, printed=printed.getvalue(),
                           runs_root=runs_root())
