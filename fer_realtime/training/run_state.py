"""The resumable state of a training run: everything needed to continue it on another machine, in one file.

A run keeps its full-precision state in its run folder (under `FER_REALTIME_RUNS`, default
`~/.cache/fer-realtime/runs/`), replaced atomically after every epoch. For handing a run over to a fresh clone, the
same state is also written in a compact form (float16 weights and optimizer slots; integers and the record exact)
to a file inside the repository, which is committed. Whichever of the two has more epochs done is continued.

A state holds: the model's variables (weights, batch-normalisation statistics and the augmentation layers' seed
states), the optimizer's variables (its step count, so the learning-rate schedule position, and its slots), the
best epoch's weights so far, a JSON record (config, epochs done, history, best epoch) and any arrays the run
computed once and must keep (a distillation teacher's targets). The shuffling of each
epoch is seeded from the run's seed and the epoch number, so a resumed run draws what the uninterrupted one would.
"""

from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..core.atomic import write_bytes_atomic
from ..core.errors import FerError

RUNS_ENV = "FER_REALTIME_RUNS"
STATE_FILE = "state.npz"
FORMAT = "fer-realtime-run-state/1"


def runs_root() -> Path:
    """Where runs keep their state: `$FER_REALTIME_RUNS`, default `~/.cache/fer-realtime/runs`."""
    return Path(os.environ.get(RUNS_ENV) or Path.home() / ".cache" / "fer-realtime" / "runs")


@dataclass
class RunState:
    epochs_done: int
    model_variables: list[np.ndarray]
    optimizer_variables: list[np.ndarray]
    best_variables: list[np.ndarray] | None  # the model's variables at the best epoch so far
    record: dict  # config, history, best epoch and its selection accuracy
    extras: dict[str, np.ndarray] = field(default_factory=dict)  # e.g. a teacher's targets (distillation.py)


def _compact(array: np.ndarray) -> np.ndarray:
    return array.astype(np.float16) if array.dtype == np.float32 else array


def save_state(path: str | os.PathLike, state: RunState, compact: bool = False) -> None:
    """Write `state` to `path` atomically (a reader sees the old file or the new one, never half of one)."""
    shrink = _compact if compact else np.asarray
    arrays = {"format": np.array(FORMAT), "epochs_done": np.array(state.epochs_done, dtype=np.int64),
              "record": np.array(json.dumps({**state.record, "compact": compact}))}
    for prefix, group in (("m", state.model_variables), ("o", state.optimizer_variables),
                          ("b", state.best_variables or [])):
        arrays[f"{prefix}_count"] = np.array(len(group), dtype=np.int64)
        for i, value in enumerate(group):
            arrays[f"{prefix}{i}"] = shrink(np.asarray(value))
    for name, value in state.extras.items():
        arrays[f"x_{name}"] = shrink(np.asarray(value))
    buffer = io.BytesIO()
    (np.savez_compressed if compact else np.savez)(buffer, **arrays)
    write_bytes_atomic(Path(path), buffer.getvalue())


def load_state(path: str | os.PathLike) -> RunState:
    """Read a state written by `save_state` (float16 arrays come back as float32). FerError if it is not one."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as saved:
            if "format" not in saved.files or str(saved["format"]) != FORMAT:
                raise FerError(f"{path} is not a fer-realtime run state.")
            groups = {}
            for prefix in ("m", "o", "b"):
                groups[prefix] = [saved[f"{prefix}{i}"] for i in range(int(saved[f"{prefix}_count"]))]
                groups[prefix] = [_expanded(a) for a in groups[prefix]]
            return RunState(epochs_done=int(saved["epochs_done"]), model_variables=groups["m"],
                            optimizer_variables=groups["o"], best_variables=groups["b"] or None,
                            record=json.loads(str(saved["record"])),
                            extras={name[2:]: _expanded(saved[name]) for name in saved.files if name.startswith("x_")})
    except (OSError, ValueError, KeyError) as exc:
        raise FerError(f"{path} is not a readable fer-realtime run state ({exc}).") from None


def _expanded(array: np.ndarray) -> np.ndarray:
    return array.astype(np.float32) if array.dtype == np.float16 else array


def newest_state(*paths: Path | None) -> tuple[RunState, Path] | None:
    """The state with the most epochs done among the files that exist (the first given wins a tie)."""
    found = [(load_state(p), p) for p in paths if p is not None and Path(p).is_file()]
    if not found:
        return None
    # By position, not found.index(): two states at the same epoch would be compared array by array.
    return found[max(range(len(found)), key=lambda i: (found[i][0].epochs_done, -i))]


def end_run(run_dir: str | os.PathLike, handover: str | os.PathLike | None = None) -> None:
    """A run whose model is saved: its state goes, so the same command later starts a new run."""
    (Path(run_dir) / STATE_FILE).unlink(missing_ok=True)
    if handover:
        Path(handover).unlink(missing_ok=True)
