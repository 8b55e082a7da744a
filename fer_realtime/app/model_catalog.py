"""The models a person can choose from: the shipped default plus every model in a folder, listed cheaply from
their metadata; and adding an uploaded model file to that folder once it has been checked."""

from __future__ import annotations

import logging
import os
import re
import tempfile
from pathlib import Path
from typing import NamedTuple

from ..core.atomic import write_bytes_atomic
from ..core.errors import FerError, ModelLoadError
from ..core.model_file import ModelMetadata, default_model_path, read_metadata

logger = logging.getLogger(__name__)

MAX_MODEL_MB = 100  # per uploaded model file (MiB)


class ModelEntry(NamedTuple):
    path: str
    name: str  # as listed: "fer_cnn.keras (shipped)", "models/mine.keras"
    metadata: ModelMetadata | None
    error: str | None  # one sentence when the file is not a usable fer-realtime model

    @property
    def label(self) -> str:
        if self.error is not None:
            return f"{self.name} (unreadable)"
        accuracy = self.metadata.metrics.get("heldout_accuracy")
        if isinstance(accuracy, (int, float)):
            return f"{self.name} · held-out accuracy {accuracy:.1%}"
        return f"{self.name} · held-out accuracy not recorded"


def model_entry(path: Path, name: str) -> ModelEntry:
    """The entry for one file; a file that is not a usable model gets its one-sentence error, never an exception."""
    try:
        return ModelEntry(str(path), name, read_metadata(path), None)
    except FerError as exc:
        return ModelEntry(str(path), name, None, str(exc))
    except Exception as exc:  # the reader is meant to raise only FerError; still, one sentence, no traceback
        logger.exception("reading %s failed", path)
        return ModelEntry(str(path), name, None, f"{path.name} could not be read as a model file ({exc}).")


def list_models(models_dir: Path, label: str = "models") -> list[ModelEntry]:
    """The default model first, then every *.keras in `models_dir` (created when missing), listed as label/NAME."""
    default = default_model_path()
    shipped = "shipped" if "FER_REALTIME_MODEL" not in os.environ else "FER_REALTIME_MODEL"
    entries = [model_entry(default, f"{default.name} ({shipped})")]
    try:
        models_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        logger.warning("cannot create %s: %s", models_dir, exc)
    if models_dir.is_dir():
        for path in sorted(models_dir.glob("*.keras")):
            # save_model writes ".NAME-xxxx.keras" temporaries and renames them; skip hidden files
            if not path.name.startswith(".") and path.resolve() != default.resolve():
                entries.append(model_entry(path, f"{label}/{path.name}"))
    return entries


def file_mtime(path: str | os.PathLike) -> float:
    """The file's modification time, 0.0 when it cannot be read (a cache key for 'this version of the file')."""
    try:
        return os.stat(path).st_mtime
    except OSError:
        return 0.0


def safe_file_name(name: str, suffix: str) -> str:
    """An uploaded file's base name, kept to letters, digits, '.', '-' and '_', not hidden, ending in `suffix`."""
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(name).name).lstrip("._")
    if not base.lower().endswith(suffix):
        base = f"{base or 'upload'}{suffix}"
    return base


def _same_bytes(path: Path, data: bytes) -> bool:
    try:
        return path.stat().st_size == len(data) and path.read_bytes() == data
    except OSError:
        return False


def _free_target(models_dir: Path, name: str, data: bytes) -> Path:
    """models_dir/NAME, or NAME-2, NAME-3… when a different file has that name (the same bytes reuse it)."""
    target, number = models_dir / name, 1
    while target.exists() and not _same_bytes(target, data):
        number += 1
        target = models_dir / f"{Path(name).stem}-{number}.keras"
    return target


def add_uploaded_model(name: str, data: bytes, models_dir: Path, scratch_dir: Path,
                       max_mb: int = MAX_MODEL_MB) -> Path:
    """Check an uploaded model by loading it in Keras safe mode from a folder under `scratch_dir` (removed
    afterwards); if it is a usable fer-realtime model, write it atomically into `models_dir` and return its path.
    Raises ModelLoadError otherwise; nothing is left in `models_dir` then."""
    from ..core.model_file import load_model

    if len(data) > max_mb * 2**20:
        raise ModelLoadError(f"{name} is {len(data) / 2**20:.0f} MB; uploaded models are limited to {max_mb} MB.")
    scratch_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".model-", dir=scratch_dir) as scratch:
        candidate = Path(scratch) / name  # the user's file name, so that errors name it
        candidate.write_bytes(data)
        load_model(candidate)  # safe mode; the network must match its metadata (input size, class count)
    target = _free_target(models_dir, name, data)
    if not target.exists():
        write_bytes_atomic(target, data)
    return target
