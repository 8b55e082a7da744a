"""Training runs in the background: one process per run, its state in files, so any page or tab can follow it.

A run lives in its own folder under a runs folder:
    request.json   what to train (dataset, ExperimentConfig, where models go)
    status.json    state, progress, live history and results; rewritten atomically as training goes
    cancel         created to ask the run to stop
    worker.log     the worker's output
    history.json, history.csv, comparison.png   the exports, written when the run finishes

Files rather than threads of the web server: a rerun or a second browser tab only reads the same files, a
run cannot be started twice while one is active, and the server stays responsive.
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..core.atomic import write_bytes_atomic, write_json_atomic
from ..core.errors import FerError
from .experiments import ExperimentConfig

ACTIVE_STATES = ("starting", "running")
# The worker is a background job: it yields the CPU to the web server (the live stream, other tabs) whenever the
# two compete; idle cores still all go to training.
WORKER_NICENESS = 10


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a finished child not yet reaped by its parent is a zombie: not alive for us
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def run_status(run_dir: Path) -> dict[str, Any]:
    """The run's status; an active state whose worker process is gone is reported as failed."""
    status = read_json(run_dir / "status.json") or {"state": "failed", "error": "The run's status file is missing."}
    status.setdefault("run_id", run_dir.name)
    if status.get("state") in ACTIVE_STATES and not _pid_alive(status.get("pid")):
        # a starting run gets a few seconds for its worker to write its pid
        if not (status.get("state") == "starting" and time.time() - status.get("created", 0) < 30):
            status = {**status, "state": "failed", "error": "The training process ended unexpectedly; see worker.log."}
    return status


def list_runs(runs_dir: Path) -> list[dict[str, Any]]:
    """Every run's status, newest first."""
    if not runs_dir.is_dir():
        return []
    runs = [run_status(d) | {"run_dir": str(d)} for d in runs_dir.iterdir() if (d / "request.json").is_file()]
    return sorted(runs, key=lambda s: s.get("created", 0), reverse=True)


def active_run(runs_dir: Path) -> dict[str, Any] | None:
    return next((r for r in list_runs(runs_dir) if r.get("state") in ACTIVE_STATES), None)


def start_run(
    dataset_source: str,
    config: ExperimentConfig,
    runs_dir: Path,
    models_dir: Path,
    name: str = "",
    python: str = sys.executable,
) -> Path:
    """Start a background training run and return its folder; refuses while another run is active."""
    runs_dir.mkdir(parents=True, exist_ok=True)
    with open(runs_dir / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two tabs pressing "Train" at once start one run
        active = active_run(runs_dir)
        if active is not None:
            raise FerError(
                f"A training run is already in progress ({active.get('name') or active['run_id']}); "
                "wait for it to finish or cancel it first."
            )
        stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
        run_dir = Path(tempfile.mkdtemp(dir=runs_dir, prefix=f"{stamp}-"))
        run_dir.chmod(0o755)
        request = {"dataset": dataset_source, "config": asdict(config), "models_dir": str(models_dir),
                   "name": name or f"{'+'.join(config.archs)} on {Path(dataset_source).name}"}
        write_json_atomic(run_dir / "request.json", request)
        write_json_atomic(run_dir / "status.json", {"state": "starting", "created": time.time(), "name": request["name"],
                                                    "run_id": run_dir.name, "config": request["config"],
                                                    "dataset": dataset_source})
        # The worker must import this very package, whatever the server's working directory.
        package_root = str(Path(__file__).resolve().parents[2])
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))}
        with open(run_dir / "worker.log", "w") as log:
            process = subprocess.Popen(
                [python, "-m", "fer_realtime.training.jobs", str(run_dir)], stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True, env=env,
            )
        status = read_json(run_dir / "status.json") or {}
        if status.get("state") == "starting":
            write_json_atomic(run_dir / "status.json", {**status, "pid": process.pid})
    return run_dir


def cancel_run(run_dir: Path) -> None:
    (run_dir / "cancel").touch()


class _StatusWriter:
    """Keeps the status document and writes it at most every `interval` seconds (and on demand)."""

    def __init__(self, run_dir: Path, status: dict[str, Any], interval: float = 0.5):
        self.path = run_dir / "status.json"
        self.status = status
        self.interval = interval
        self._last = 0.0

    def update(self, force: bool = False, **fields) -> None:
        self.status.update(fields)
        now = time.monotonic()
        if force or now - self._last >= self.interval:
            write_json_atomic(self.path, self.status)
            self._last = now


def prepare_run_dir(run_dir: Path, dataset_source: str, config: ExperimentConfig, models_dir: Path, name: str) -> None:
    """Write a run's request and initial status (used for foreground runs such as the `compare` command)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    request = {"dataset": dataset_source, "config": asdict(config), "models_dir": str(models_dir), "name": name}
    write_json_atomic(run_dir / "request.json", request)
    write_json_atomic(run_dir / "status.json", {"state": "starting", "created": time.time(), "name": name,
                                                "run_id": run_dir.name, "config": request["config"],
                                                "dataset": dataset_source, "pid": os.getpid()})


def execute_run(run_dir: Path, echo=None) -> int:
    """The worker: train every requested architecture, report progress, save models and exports.

    `echo`, if given, is called with one line per finished epoch and model (the CLI prints them).
    """
    from ..core.model_file import save_model
    from ..data.dataset import train_heldout_split
    from ..data.ferplus import find_votes, read_votes
    from ..data.loader import load_dataset
    from ..evaluation.charts import comparison_png, history_csv
    from .experiments import Cancelled, history_rows, train_architecture

    request = read_json(run_dir / "request.json")
    if request is None:
        return 2
    config = ExperimentConfig(**{**request["config"], "archs": tuple(request["config"]["archs"])})
    status = read_json(run_dir / "status.json") or {}
    writer = _StatusWriter(run_dir, {**status, "state": "running", "pid": os.getpid(), "started": time.time(),
                                     "history": [], "results": {}, "progress": None})
    writer.update(force=True, phase="loading the dataset")
    should_stop = (run_dir / "cancel").exists
    runs = []
    try:
        dataset = load_dataset(request["dataset"])
        train, heldout, heldout_name = train_heldout_split(dataset)
        votes = None
        if config.labels != "original":
            votes_path = config.votes or find_votes(request["dataset"])
            if votes_path is None:
                raise FerError("Training on the FER+ votes needs ferplus_votes.csv beside the dataset; none was found.")
            votes = read_votes(votes_path)
        writer.update(force=True, heldout=heldout_name, n_train=len(train), n_heldout=len(heldout))
        pca = None
        if config.pca_variance or config.pca_components:
            from .pca import PCAReducer

            writer.update(force=True, phase="fitting PCA on the training split")
            pca = PCAReducer().fit(train.images, variance=config.pca_variance, n_components=config.pca_components)
            writer.update(force=True, pca={"components": pca.n_components, "variance_retained": pca.variance_retained})

        def on_progress(p) -> None:
            if p.batch == 0:  # an epoch ended: add its row to the live history
                writer.status["history"].append({
                    "model": p.arch, "epoch": p.epoch, "stage": p.stage,
                    "train_accuracy": p.logs.get("accuracy"), "heldout_accuracy": p.logs.get("val_accuracy"),
                    "train_loss": p.logs.get("loss"), "heldout_loss": p.logs.get("val_loss"),
                })
                if echo:
                    echo(f"{p.arch} epoch {p.epoch}/{p.epochs}{' ' + p.stage if p.stage else ''}: "
                         f"training accuracy {p.logs.get('accuracy', 0):.4f}, "
                         f"held-out accuracy {p.logs.get('val_accuracy', 0):.4f}")
            writer.update(force=p.batch == 0, progress=p._asdict(), phase=f"training {p.arch}")

        models_dir = Path(request["models_dir"])
        for index, arch in enumerate(config.archs):
            if should_stop():
                raise Cancelled()
            run = train_architecture(arch, train, heldout, config, index=index, on_progress=on_progress,
                                     should_stop=should_stop, pca=pca, votes=votes)
            runs.append(run)
            writer.update(force=True, phase=f"saving {arch}")
            model_path = models_dir / request.get("model_names", {}).get(arch, f"{run_dir.name}-{arch}.keras")
            metadata = run.metadata
            metadata.training_data["dataset"] = request["dataset"]
            metadata.metrics["heldout_data"] = heldout_name
            save_model(run.model, metadata, model_path)
            writer.status["results"][arch] = {
                "heldout_accuracy": run.report.accuracy, "per_class": run.report.per_class,
                "confusion": run.report.confusion, "classes": run.report.classes, "seconds": round(run.seconds, 1),
                "model_path": str(model_path), "notes": run.notes, "stages": run.stages,
            }
            writer.update(force=True)
        rows = history_rows(runs)
        write_json_atomic(run_dir / "history.json", {"heldout": heldout_name, "models": {
            r.arch: {**r.history, "heldout_accuracy_final": r.report.accuracy} for r in runs}})
        write_bytes_atomic(run_dir / "history.csv", history_csv(rows).encode())
        write_bytes_atomic(run_dir / "comparison.png", comparison_png(rows, f"{request['name']}: accuracy per epoch"))
        writer.update(force=True, state="finished", finished=time.time(), phase="done")
        return 0
    except Cancelled:
        writer.update(force=True, state="cancelled", finished=time.time(), phase="cancelled")
        return 1
    except FerError as exc:
        writer.update(force=True, state="failed", finished=time.time(), error=str(exc))
        return 1
    except Exception as exc:  # the page shows one sentence; the traceback goes to worker.log
        import traceback

        traceback.print_exc()
        writer.update(force=True, state="failed", finished=time.time(),
                      error=f"Training failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
        return 1


if __name__ == "__main__":
    os.nice(WORKER_NICENESS)
    sys.exit(execute_run(Path(sys.argv[1])))
