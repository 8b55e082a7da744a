"""Frames for the benchmark's harder scenes: small and far faces, tilted heads, faces turned sideways.

Built from two kinds of real faces, never from test data the project was not given:
  FER2013 `val/` crops  tight 48x48 faces with their labels, so the accuracy through the detector path can be set
                        beside the accuracy of the same faces read directly (upright, at the model's input size)
  skimage photographs   head-and-shoulders crops with their context (hair, neck, clothes), as a camera sees a
                        person: the astronaut (frontal) and the cameraman (turned sideways, both ways by mirroring)
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

Box = tuple[int, int, int, int]

ASTRONAUT_FACE = (176, 82, 94, 94)  # x, y, w, h of the face in skimage.data.astronaut()
CAMERAMAN_FACE = (196, 118, 72, 72)  # the cameraman's face (three-quarter profile) in skimage.data.camera()


@dataclass(frozen=True)
class SceneFrame:
    image: np.ndarray  # HxWx3 uint8 BGR
    faces: tuple[Box, ...]  # where the faces are
    labels: tuple[int, ...] = ()  # class index of each face (FER2013 faces), empty for photographs
    crop_ids: tuple[int, ...] = ()  # which crop each face was made from (FER2013 faces)


def background(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """A smooth coloured 'room' with some fine noise, so detectors see texture rather than a flat colour."""
    coarse = rng.integers(40, 200, size=(6, 8, 3), dtype=np.uint8)
    image = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    noise = rng.normal(0, 6, size=image.shape)
    return np.clip(image + noise, 0, 255).astype(np.uint8)


def _person(photo: np.ndarray, face: Box, size: int, flip: bool, gain: float) -> tuple[np.ndarray, Box]:
    """A head-and-shoulders crop of `photo` scaled so its face is `size` px wide, and the face's box in it."""
    k = size / face[2]
    image = cv2.resize(photo, None, fx=k, fy=k, interpolation=cv2.INTER_AREA if k < 1 else cv2.INTER_CUBIC)
    x, y, w, h = (int(round(v * k)) for v in face)
    x0, y0 = max(0, x - int(0.9 * w)), max(0, y - int(0.5 * h))
    x1, y1 = min(image.shape[1], x + w + int(0.9 * w)), min(image.shape[0], y + h + int(1.2 * h))
    crop = image[y0:y1, x0:x1]
    face_x = x - x0
    if flip:
        crop, face_x = crop[:, ::-1], crop.shape[1] - (face_x + w)
    crop = np.clip(crop.astype(np.float32) * gain, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(crop), (face_x, y - y0, w, h)


def photographs() -> dict[str, tuple[np.ndarray, Box]]:
    from skimage import data

    return {"astronaut": (cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR), ASTRONAUT_FACE),
            "cameraman": (cv2.cvtColor(data.camera(), cv2.COLOR_GRAY2BGR), CAMERAMAN_FACE)}


def _turned(patch: np.ndarray, face: Box, angle: float) -> tuple[np.ndarray, Box]:
    """`patch` turned by `angle` degrees about the face's centre (corners repeat the border), and the face's box:
    the same size, around the turned centre."""
    x, y, w, h = face
    centre = (x + w / 2, y + h / 2)
    matrix = cv2.getRotationMatrix2D(centre, angle, 1.0)
    turned = cv2.warpAffine(patch, matrix, (patch.shape[1], patch.shape[0]), flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_REPLICATE if patch.ndim == 3 else cv2.BORDER_CONSTANT)
    return turned, face


def _grid(width: int, height: int, count: int) -> list[Box]:
    cols = int(np.ceil(np.sqrt(count * width / height)))
    rows = int(np.ceil(count / cols))
    w, h = width // cols, height // rows
    return [((i % cols) * w, (i // cols) * h, w, h) for i in range(count)]


def _place(frame: np.ndarray, patch: np.ndarray, face: Box, slot: Box, rng: np.random.Generator,
           mask: np.ndarray | None = None) -> Box | None:
    """Paste `patch` (where `mask` is set, if given) at a random place in `slot` (cut to the frame); the face's box
    in the frame, or None if the face would not lie wholly inside the frame."""
    sx, sy, sw, sh = slot
    ph, pw = patch.shape[:2]
    x = sx + int(rng.integers(0, max(1, sw - pw) + 1)) if pw < sw else sx - int(rng.integers(0, pw - sw + 1))
    y = sy + int(rng.integers(0, max(1, sh - ph) + 1)) if ph < sh else sy - int(rng.integers(0, ph - sh + 1))
    fx, fy, fw, fh = face[0] + x, face[1] + y, face[2], face[3]
    height, width = frame.shape[:2]
    if fx < 0 or fy < 0 or fx + fw > width or fy + fh > height:
        return None
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + pw, width), min(y + ph, height)
    part = patch[y0 - y : y1 - y, x0 - x : x1 - x]
    if mask is None:
        frame[y0:y1, x0:x1] = part
    else:
        keep = mask[y0 - y : y1 - y, x0 - x : x1 - x] > 127
        frame[y0:y1, x0:x1][keep] = part[keep]
    return fx, fy, fw, fh


def fer_scene(crops, labels, count: int, faces: int, size_range: tuple[int, int], frame_size: tuple[int, int],
              seed: int, turn: tuple[float, float] | None = None) -> list[SceneFrame]:
    """Frames of `faces` labelled FER2013 faces each, `size_range` px wide, optionally turned by ±turn degrees."""
    rng = np.random.default_rng(seed)
    width, height = frame_size
    frames = []
    for _ in range(count):
        frame = background(rng, width, height)
        boxes, face_labels, ids = [], [], []
        for slot in _grid(width, height, faces):
            size = int(rng.integers(size_range[0], min(size_range[1], slot[2] - 4, slot[3] - 4) + 1))
            index = int(rng.integers(len(crops)))
            patch = cv2.cvtColor(cv2.resize(crops[index], (size, size), interpolation=cv2.INTER_AREA if size < 48
                                            else cv2.INTER_CUBIC), cv2.COLOR_GRAY2BGR)
            face, mask = (0, 0, size, size), None
            if turn:  # the square crop turned like a tilted print on the background
                pad = size // 4
                patch = cv2.copyMakeBorder(patch, pad, pad, pad, pad, cv2.BORDER_CONSTANT)
                mask = np.zeros(patch.shape[:2], np.uint8)
                mask[pad : pad + size, pad : pad + size] = 255
                angle = _signed(rng, turn)
                patch, face = _turned(patch, (pad, pad, size, size), angle)
                mask, _ = _turned(mask, (pad, pad, size, size), angle)
            box = _place(frame, patch, face, slot, rng, mask)
            if box is not None:
                boxes.append(box)
                face_labels.append(int(labels[index]))
                ids.append(index)
        frames.append(SceneFrame(frame, tuple(boxes), tuple(face_labels), tuple(ids)))
    return frames


def photo_scene(name: str, count: int, faces: int, size_range: tuple[int, int], frame_size: tuple[int, int],
                seed: int, turn: tuple[float, float] | None = None, mirror_half: bool = True) -> list[SceneFrame]:
    """Frames of `faces` people from one skimage photograph, faces `size_range` px wide, varied in brightness,
    half of them mirrored (for the cameraman: turned the other way), optionally tilted by ±turn degrees."""
    photo, face = photographs()[name]
    rng = np.random.default_rng(seed)
    width, height = frame_size
    frames = []
    for n in range(count):
        frame = background(rng, width, height)
        boxes = []
        for i, slot in enumerate(_grid(width, height, faces)):
            size = int(rng.integers(size_range[0], size_range[1] + 1))
            patch, box_in_patch = _person(photo, face, size, mirror_half and (n + i) % 2 == 1, rng.uniform(0.6, 1.3))
            if turn:
                patch, box_in_patch = _turned(patch, box_in_patch, _signed(rng, turn))
            box = _place(frame, patch, box_in_patch, slot, rng)
            if box is not None:
                boxes.append(box)
        frames.append(SceneFrame(frame, tuple(boxes)))
    return frames


def drifting_scene(frames: list[SceneFrame], count: int, seed: int, segment: int = 30) -> list[SceneFrame]:
    """A clip of `count` frames: `segment` frames from each of `frames` in turn, the whole picture panning slowly
    (a few pixels per frame) with its faces, as a camera on a scene; then a cut to the next scene."""
    rng = np.random.default_rng(seed)
    phases = rng.uniform(0, 2 * np.pi, size=len(frames))
    clip = []
    for t in range(count):
        index = (t // segment) % len(frames)
        scene, phase = frames[index], phases[index]
        height, width = scene.image.shape[:2]
        dx = int(round(12 * np.sin(phase + t / 30)))
        dy = int(round(8 * np.sin(phase + t / 45)))
        matrix = np.float32([[1, 0, dx], [0, 1, dy]])
        image = cv2.warpAffine(scene.image, matrix, (width, height), borderMode=cv2.BORDER_REPLICATE)
        boxes = tuple((x + dx, y + dy, w, h) for x, y, w, h in scene.faces)
        clip.append(SceneFrame(image, boxes, scene.labels, scene.crop_ids))
    return clip


def _signed(rng: np.random.Generator, magnitude: tuple[float, float]) -> float:
    return float(rng.uniform(*magnitude) * rng.choice([-1.0, 1.0]))
