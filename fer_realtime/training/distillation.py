"""Knowledge distillation: a network trained towards a teacher's probabilities as well as the labels.

The teacher is any fer-realtime model file trained on the same selection split (typically an ensemble, too slow for
the frame budget); the student is one network of a recipe. The teacher reads every fitting face once, as the
engine runs it (its test-time views and temperature), and the student's target for that face becomes
`weight * teacher + (1 - weight) * label` (Hinton et al., "Distilling the Knowledge in a Neural Network", 2015, with
the teacher's calibrated probabilities in place of softened logits). The student is trained on augmented faces
towards the teacher's reading of the face as it is. The selection split stays out of the teacher's hands: a
teacher trained on another split would have seen the faces the student's epochs are chosen on.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..core.errors import FerError
from ..core.model_file import LoadedModel, load_model, weights_digest
from ..inference.engine import InferenceEngine, dataset_probabilities
from ..inference.tta import TestTimeAugmentation

TARGETS = "teacher_targets"  # the name of the teacher's probabilities among a run state's extra arrays


@dataclass(frozen=True)
class Teacher:
    loaded: LoadedModel
    digest: str  # of its weights: the run's config names the teacher by it

    @classmethod
    def load(cls, path: str | os.PathLike) -> Teacher:
        """The teacher in `path` (ModelLoadError with one sentence if it is not a model file). The trainer checks
        that it was trained on the student's selection split."""
        loaded = load_model(Path(path))
        return cls(loaded, weights_digest(loaded.model))

    def probabilities(self, faces: np.ndarray) -> np.ndarray:
        """(N, K) probabilities of grayscale faces as the engine gives them, rounded to float16 so that a run
        continued from its compact handover state trains towards the same targets."""
        engine = InferenceEngine(self.loaded)
        return dataset_probabilities(engine, faces).astype(np.float16).astype(np.float32)

    def describe(self) -> dict:
        metadata = self.loaded.metadata
        return {"file": self.loaded.path.name, "weights_digest": self.digest, "architecture": metadata.architecture,
                "tta": TestTimeAugmentation.of(metadata).name, "temperature": metadata.temperature,
                "selection_accuracy": metadata.metrics.get("selection_accuracy")}


def distillation_targets(labels: np.ndarray, teacher_probabilities: np.ndarray, weight: float) -> np.ndarray:
    """`weight` times the teacher's probabilities plus `1 - weight` times the label targets, per face: `labels` are
    class indices (one-hot targets) or target rows already (the labels mixed with the FER+ votes, say)."""
    if not 0.0 < weight <= 1.0:
        raise FerError(f"--distill-weight must be in (0, 1], got {weight}.")
    label_targets = labels if labels.ndim == 2 else np.eye(teacher_probabilities.shape[1], dtype=np.float32)[labels]
    return (weight * teacher_probabilities + (1.0 - weight) * label_targets).astype(np.float32)
