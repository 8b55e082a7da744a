"""The mediapipe backend: BlazeFace networks (blazeface.py) searching the frame from coarse to fine, and video
mode's turns; or a MediaPipe Tasks model of the user's own (tasks_detector.py)."""

from __future__ import annotations

import math

import numpy as np

from .boxes import NMS_IOU_THRESHOLD, Box, box_iou
from .detector import Detection, FaceDetector, FaceDetectorOptions, finalize, to_rgb, validated_frame
from .tasks_detector import TasksFaceDetector

NEAR_REACH = 0.14
FAR_REACH = 0.075
# A tile is responsible for faces up to this fraction of its side: tiles overlap by it, so such a face lies
# wholly inside one of them; the next coarser level starts where this one ends.
TILE_OVERLAP = 0.35
FAR_SCORE_MARGIN = 0.1
# Video mode looks again around each tracked face: a square of ROI_FACTOR times its box, ROI_CELLS x ROI_CELLS of
# them per network input (a face fills about 1/ROI_FACTOR of its 64 px cell: above NEAR_REACH of 128).
ROI_FACTOR = 2.5
ROI_CELLS = 2
# Video mode, every frame: the quick look at the whole frame (it keeps near faces, the usual webcam case, as
# before) and a look around each tracked face it missed; every FAR_EVERY-th frame, one part of the
# full-range search (a 640x480 frame is searched for 24 px faces every 21 frames, a 720p one every 57). On the
# live page the detector shares 2 cores with the classifier, WebRTC's video coding and the browser: every extra
# network call per frame shows there several times over.
FAR_EVERY = 3


def search_tiles(width: int, height: int, min_face: int) -> list[Box]:
    """Square regions (x, y, side, side; clipped to the frame) that the full-range network must look at, besides
    the whole frame, to find faces down to `min_face` pixels: levels of overlapping tiles, the finest of side
    min_face / FAR_REACH, each next level 1 / (FAR_REACH / TILE_OVERLAP) times coarser, up to the level whose
    largest faces the whole frame's pass reaches."""
    longest = max(width, height)
    side = min_face / FAR_REACH
    tiles: list[Box] = []
    while side < longest:
        stride = side * (1 - TILE_OVERLAP)
        t = int(round(side))
        xs = _positions(width, t, stride)
        ys = _positions(height, t, stride)
        tiles += [(x, y, min(t, width - x), min(t, height - y)) for y in ys for x in xs]
        if side * TILE_OVERLAP >= FAR_REACH * longest:
            break
        side *= TILE_OVERLAP / FAR_REACH
    return tiles


def _positions(length: int, side: int, stride: float) -> list[int]:
    if length <= side:
        return [0]
    count = int(math.ceil((length - side) / stride)) + 1
    return [int(round(v)) for v in np.linspace(0, length - side, count)]


class MediaPipeFaceDetector(FaceDetector):
    """BlazeFace networks (blazeface.py) searching the frame at the scales min_face_size needs; or, with
    `model_path`, a MediaPipe Tasks FaceDetector of your own on the whole frame."""

    name = "mediapipe"

    def __init__(self, options: FaceDetectorOptions):
        super().__init__(options)
        self._tasks = TasksFaceDetector(options.model_path, options.score_threshold) if options.model_path else None
        if self._tasks is None:
            from .blazeface import BlazeFace

            self._near_net = BlazeFace("short", score_threshold=options.score_threshold)
            self._far_net = BlazeFace("full_sparse",
                                      score_threshold=min(0.95, options.score_threshold + FAR_SCORE_MARGIN))
        self._plan: tuple[tuple[int, int], list[Box]] = ((0, 0), [])

    def _far_regions(self, width: int, height: int) -> list[Box]:
        """The whole frame, then the tiles; planned once per frame size."""
        if self._plan[0] != (width, height):
            self._plan = ((width, height), [(0, 0, width, height), *search_tiles(width, height,
                                                                                 self.options.min_face_size)])
        return self._plan[1]

    def _stages(self, frame: np.ndarray):
        if self._tasks is not None:
            return [(lambda: self._tasks.detect(to_rgb(frame)), 0.0)]
        longest = max(frame.shape[:2])
        whole, *tiles = self._far_regions(frame.shape[1], frame.shape[0])
        stages = [(lambda: _detections(self._near_net.detect(frame)), NEAR_REACH * longest),
                  (lambda: _detections(self._far_net.detect(frame, [whole])), FAR_REACH * longest)]
        if tiles:
            stages.append((lambda: _detections(self._far_net.detect(frame, tiles)), 0.0))
        return stages

    def detect_video(self, frame_bgr: np.ndarray, step: int, regions: list[Box] = ()) -> list[Detection]:
        """Every frame: the quick look at the whole frame, then the regions around the tracked faces it missed (small
        ones), four to a network input (ROI_CELLS); every FAR_EVERY-th frame, one part of the full-range search."""
        frame = validated_frame(frame_bgr)
        height, width = frame.shape[:2]
        with self._lock:
            self._check_open()
            if self._tasks is not None:
                return finalize(self._tasks.detect(to_rgb(frame)), width, height, self.options)
            found = _detections(self._near_net.detect(frame))
            missed = [box for box in regions if all(box_iou(box, d.box) < NMS_IOU_THRESHOLD for d in found)]
            looks = [_square_around(box, ROI_FACTOR, width, height) for box in missed]
            if looks:
                found += _detections(self._near_net.detect(frame, looks, cells=ROI_CELLS))
            if step % FAR_EVERY == FAR_EVERY - 1:
                far = self._far_regions(width, height)
                found += _detections(self._far_net.detect(frame, [far[(step // FAR_EVERY) % len(far)]]))
        return finalize(found, width, height, self.options)

    def _release(self) -> None:
        if self._tasks is not None:
            self._tasks.close()


def _square_around(box: Box, factor: float, width: int, height: int) -> Box:
    """A square of `factor` times the box's larger side, centred on it, shifted (not cut) to stay in the frame."""
    x, y, w, h = box
    side = int(min(max(w, h) * factor, width, height))
    cx, cy = x + w / 2, y + h / 2
    left = int(min(max(cx - side / 2, 0), width - side))
    top = int(min(max(cy - side / 2, 0), height - side))
    return left, top, side, side


# BlazeFace now and then takes a smooth blob of colour for a large face (its quick look sees a 720p frame at 1/10
# scale); the keypoints of such boxes do not sit as on a face. Measured on skimage photographs, upright, tilted
# and turned sideways: the nose lies at least 0.12 of the box's width below the eye line, the mouth below the nose;
# the false faces had the nose at -0.13 to 0.04.
MIN_NOSE_DROP = 0.07


def plausible_face(box, keypoints) -> bool:
    """Whether six BlazeFace keypoints sit as on a face: the subject's right eye left of the left eye, the eye
    line within 60° of level, the nose below it and the mouth below the nose (measured across the eye line, so
    tilted heads pass)."""
    (rx, ry), (lx, ly), (nx, ny), (mx, my) = keypoints[:4]
    ex, ey = lx - rx, ly - ry
    length = math.hypot(ex, ey)
    if length == 0 or box[2] <= 0 or ex < 0.5 * length:  # eyes in the wrong order, or the head turned past 60°
        return False
    down = (-ey / length, ex / length)  # perpendicular to the eye line, pointing chin-wards in image coordinates
    centre = ((rx + lx) / 2, (ry + ly) / 2)
    nose = ((nx - centre[0]) * down[0] + (ny - centre[1]) * down[1]) / box[2]
    mouth = ((mx - centre[0]) * down[0] + (my - centre[1]) * down[1]) / box[2]
    return nose >= MIN_NOSE_DROP and mouth > nose


def _detections(faces) -> list[Detection]:
    return [Detection(tuple(face.box), face.score, tuple((float(px), float(py)) for px, py in face.keypoints))
            for face in faces if plausible_face(face.box, face.keypoints)]
