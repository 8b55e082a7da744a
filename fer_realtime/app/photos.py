"""Photos analysed as a batch, as the page shows them: each photo's faces or its one-sentence error, and the
downloads: results as JSON (the shape `predict --json` prints), as CSV (one row per face) and the annotated
photos as PNG files in a zip."""

from __future__ import annotations

import csv
import io
import json
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from ..core.errors import FerError
from ..core.images import decode_image
from ..faces.drawing import draw_faces
from ..inference.results import FaceResult


@dataclass
class PhotoResult:
    name: str  # the uploaded file's name
    faces: list[FaceResult] = field(default_factory=list)
    error: str | None = None  # one sentence when the photo could not be read or analysed
    annotated: np.ndarray | None = None  # BGR, with boxes and labels

    def to_dict(self) -> dict:
        if self.error is not None:
            return {"image": self.name, "error": self.error}
        return {"image": self.name, "faces": [face.to_dict() for face in self.faces]}


def analyze_photo(name: str, content: bytes, recognizer) -> PhotoResult:
    """Decode and analyse one uploaded photo; a bad file gives a result with one sentence, never an exception."""
    try:
        image = decode_image(content, name)
        faces = recognizer.analyze(image)
    except FerError as exc:
        return PhotoResult(name, error=str(exc))
    return PhotoResult(name, faces=faces, annotated=draw_faces(image, faces))


def results_json(results: Sequence[PhotoResult]) -> bytes:
    return (json.dumps([r.to_dict() for r in results], indent=2) + "\n").encode()


def csv_columns(classes: Sequence[str]) -> list[str]:
    return ["image", "face", "x", "y", "w", "h", "label", "confidence", *classes, "error"]


def results_csv(results: Sequence[PhotoResult], classes: Sequence[str]) -> bytes:
    """One row per face (face numbered from 1, as on the page); a photo without faces gets one row with no face,
    a bad photo one row with its error."""
    text = io.StringIO(newline="")
    table = csv.DictWriter(text, fieldnames=csv_columns(classes))
    table.writeheader()
    for result in results:
        if result.error is not None or not result.faces:
            table.writerow({"image": result.name, "error": result.error or ""})
        for number, face in enumerate(result.faces, 1):
            x, y, w, h = face.box
            table.writerow({"image": result.name, "face": number, "x": x, "y": y, "w": w, "h": h,
                            "label": face.label, "confidence": round(face.confidence, 6),
                            **{c: round(face.scores[c], 6) for c in classes}, "error": ""})
    return text.getvalue().encode()


def annotated_name(name: str, used: set[str]) -> str:
    """`photo_annotated.png`, numbered when two uploads share a stem."""
    stem = Path(name).stem or "photo"
    candidate, n = f"{stem}_annotated.png", 2
    while candidate in used:
        candidate, n = f"{stem}_annotated_{n}.png", n + 1
    used.add(candidate)
    return candidate


def annotated_zip(results: Sequence[PhotoResult]) -> bytes:
    """The annotated photos as PNG files in one zip (photos that could not be read are left out)."""
    buffer, used = io.BytesIO(), set()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:  # PNGs are compressed already
        for result in results:
            if result.annotated is None:
                continue
            ok, encoded = cv2.imencode(".png", result.annotated)
            if ok:
                archive.writestr(annotated_name(result.name, used), encoded.tobytes())
    return buffer.getvalue()
