"""Box geometry shared by the detectors and the tracker: overlap, and merging boxes of the same face."""

from __future__ import annotations

from typing import TypeVar

Box = tuple[int, int, int, int]  # x, y, w, h in frame pixels
NMS_IOU_THRESHOLD = 0.3  # boxes overlapping more than this are the same face
# A box lying mostly inside another is the same face too: the profile cascade fires on one half of frontal faces.
NMS_CONTAINMENT_THRESHOLD = 0.6
Scored = TypeVar("Scored")  # anything with a .box and a .score, such as detector.Scored


def frame_box(x0: float, y0: float, x1: float, y1: float, width: int, height: int) -> Box | None:
    left, top = min(max(round(x0), 0), width), min(max(round(y0), 0), height)
    right, bottom = min(max(round(x1), 0), width), min(max(round(y1), 0), height)
    if right <= left or bottom <= top:
        return None
    return left, top, right - left, bottom - top


def non_max_suppression(
    detections: list[Scored],
    iou_threshold: float = NMS_IOU_THRESHOLD,
    containment_threshold: float = NMS_CONTAINMENT_THRESHOLD,
) -> list[Scored]:
    """Keep the best-scoring (then largest) box of every group of boxes of the same face.

    Two boxes are of the same face when their IoU exceeds `iou_threshold` or their intersection covers more than
    `containment_threshold` of the smaller one.
    """
    ranked = sorted(detections, key=lambda d: (d.score, d.box[2] * d.box[3]), reverse=True)
    kept: list[Scored] = []
    for candidate in ranked:
        if not any(_same_face(candidate.box, other.box, iou_threshold, containment_threshold) for other in kept):
            kept.append(candidate)
    return kept


def _same_face(a: Box, b: Box, iou_threshold: float, containment_threshold: float) -> bool:
    intersection = _intersection_area(a, b)
    smaller_area = min(a[2] * a[3], b[2] * b[3])
    return box_iou(a, b) > iou_threshold or intersection > containment_threshold * smaller_area


def _intersection_area(a: Box, b: Box) -> int:
    ix = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    return ix * iy


def box_iou(a: Box, b: Box) -> float:
    intersection = _intersection_area(a, b)
    union = a[2] * a[3] + b[2] * b[3] - intersection
    return intersection / union if union > 0 else 0.0
