"""Where the page keeps its files, read from the environment on every run (tests and deployments point them
elsewhere; a value frozen at import would outlive the change)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parent.parent  # the repository root
ICE_ENV = "FER_REALTIME_ICE_SERVERS"
MODELS_ENV = "FER_REALTIME_MODELS_DIR"  # where trained models go and are listed from (default models/)
RUNS_ENV = "FER_REALTIME_RUNS_DIR"  # one folder per training run started from the page (default runs/training/)
UPLOADS_ENV = "FER_REALTIME_UPLOADS_DIR"  # uploaded datasets, models and videos go here (default runs/uploads/)
TRAIN_COMMAND = "python -m fer_realtime train --data DATA_DIR --out models/NAME.keras"
DEFAULT_DATASET = "../shared/datasets/fer2013"  # relative to the repository root, offered when it exists


def repo_path(text: str | os.PathLike) -> Path:
    """A path as typed or configured: absolute, `~`-expanded, or relative to the repository root."""
    path = Path(text).expanduser()
    return path if path.is_absolute() else (ROOT / path)


class AppPaths(NamedTuple):
    models: Path  # every *.keras here is offered in the model list; training runs save into it
    runs: Path
    uploads: Path
    models_label: str  # how the models folder is named on the page: "models", or its full path when moved

    @property
    def videos(self) -> Path:
        return self.uploads / "videos"


def app_paths() -> AppPaths:
    models = repo_path(os.environ.get(MODELS_ENV) or "models")
    runs = repo_path(os.environ.get(RUNS_ENV) or "runs/training")
    uploads = repo_path(os.environ.get(UPLOADS_ENV) or runs.parent / "uploads")
    label = "models" if models.resolve() == (ROOT / "models").resolve() else str(models)
    return AppPaths(models, runs, uploads, label)
