"""Soak test of the live frame processor: a long stream where faces appear and leave, memory printed over time.

Feeds `EmotionRecognizer(...).video_processor()` 640x480 frames with 0 to 6 faces that come and go: real face
crops from ../shared/datasets/fer2013/val when present (those the detector finds alone), else the astronaut's
face of skimage, upscaled to 130-160 px (--face-size; MediaPipe's short-range model misses most FER2013 crops
below that) and drifting slowly. Every 1,000 frames it prints the process's resident memory (VmRSS from
/proc/self/status), the live tracks, the faces in the frame and found, Python's object count and the median ms
per frame; the last line is the verdict: RSS growth from frame 2,000 (after warm-up) to the end.

Usage: python benchmarks/soak_stream.py [--frames 20000] [--detector mediapipe|haar] [--every 1000]
                                        [--warmup 2000] [--max-growth-mib 30] [--seed 0] [--face-size 130 160]
Exit code 1 when the RSS growth after warm-up is above --max-growth-mib.
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from fer_realtime.evaluation.benchmark import count_found
from fer_realtime.evaluation.clips import fer_faces

ROOT = Path(__file__).resolve().parents[1]
FER_VAL = ROOT.parent / "shared" / "datasets" / "fer2013" / "val"
ASTRONAUT_FACE = (177, 66, 95, 95)  # x, y, w, h in skimage.data.astronaut()
WIDTH, HEIGHT = 640, 480
COLUMNS, ROWS = 3, 2  # one slot per face: at most 6 faces, never overlapping


def rss_mib() -> float:
    """Resident set size of this process in MiB (VmRSS of /proc/self/status)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    raise RuntimeError("no VmRSS line in /proc/self/status")


def load_face_crops(per_class: int = 20, seed: int = 0) -> tuple[list[np.ndarray], str]:
    """BGR face crops: FER2013 val faces when the data set is present, else variants of the astronaut's face."""
    if FER_VAL.is_dir():
        crops = fer_faces(FER_VAL, per_class, seed)
        return crops, f"{len(crops)} FER2013 val faces"
    from skimage import data

    x, y, w, h = ASTRONAUT_FACE
    face = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)[y : y + h, x : x + w]
    crops = [np.clip(face.astype(np.int16) + delta, 0, 255).astype(np.uint8) for delta in (-30, 0, 30)]
    crops += [cv2.flip(c, 1) for c in crops]
    return crops, "the astronaut's face (FER2013 val not found)"


def detectable_crops(crops: list[np.ndarray], detector, background: np.ndarray, size: int = 140) -> list[np.ndarray]:
    """The crops the detector finds when pasted alone at `size` px (FER2013's tight crops are often missed by
    MediaPipe's short-range model), so that faces on screen are mostly found and tracks really come and go."""
    found = []
    for crop in crops:
        frame = background.copy()
        frame[100 : 100 + size, 250 : 250 + size] = cv2.resize(crop, (size, size), interpolation=cv2.INTER_CUBIC)
        if detector.detect(frame):
            found.append(crop)
    return found if len(found) >= 5 else crops


@dataclass
class Actor:
    """One face on screen: its crop (already at its size), position, drift and remaining frames."""

    actor_id: int
    image: np.ndarray
    x: int
    y: int
    dx: int
    dy: int
    frames_left: int

    @property
    def box(self) -> tuple[int, int, int, int]:
        return self.x, self.y, self.image.shape[1], self.image.shape[0]


class Scene:
    """640x480 frames where faces appear, drift and leave; 3x2 slots hold at most one face each.

    step() returns the next frame and the true boxes of the faces in it; `left` lists the ids of the faces that
    left at this step. Deterministic for a given seed.
    """

    def __init__(self, crops: list[np.ndarray], seed: int = 0, size_range=(100, 160), stay_range=(30, 400),
                 away_range=(5, 150), slots: int = COLUMNS * ROWS):
        self.crops = crops
        self.rng = np.random.default_rng(seed)
        self.size_range = size_range
        self.stay_range = stay_range
        self.away_range = away_range
        self.cell_w, self.cell_h = WIDTH // COLUMNS, HEIGHT // ROWS
        yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH]
        background = np.stack([60 + xx * 80 // WIDTH, 90 + yy * 60 // HEIGHT, 110 + (xx + yy) * 40 // (WIDTH + HEIGHT)],
                              axis=-1).astype(np.uint8)
        self.background = cv2.add(background, self.rng.integers(0, 12, background.shape, dtype=np.uint8))
        self.actors: list[Actor | None] = [None] * slots
        self.away = [int(self.rng.integers(0, away_range[1])) for _ in range(slots)]  # staggered first entrances
        self.next_id = 1
        self.left: list[int] = []

    def _enter(self, slot: int) -> Actor:
        size = int(self.rng.integers(self.size_range[0], self.size_range[1] + 1))
        crop = self.crops[int(self.rng.integers(len(self.crops)))]
        image = cv2.resize(crop, (size, size), interpolation=cv2.INTER_CUBIC)
        col, row = slot % COLUMNS, slot // COLUMNS
        x = col * self.cell_w + int(self.rng.integers(0, self.cell_w - size + 1))
        y = row * self.cell_h + int(self.rng.integers(0, self.cell_h - size + 1))
        actor = Actor(self.next_id, image, x, y, int(self.rng.integers(-1, 2)), int(self.rng.integers(-1, 2)),
                      int(self.rng.integers(self.stay_range[0], self.stay_range[1] + 1)))
        self.next_id += 1
        return actor

    def _move(self, slot: int, actor: Actor) -> None:
        col, row = slot % COLUMNS, slot // COLUMNS
        size_w, size_h = actor.image.shape[1], actor.image.shape[0]
        x0, y0 = col * self.cell_w, row * self.cell_h
        if not x0 <= actor.x + actor.dx <= x0 + self.cell_w - size_w:
            actor.dx = -actor.dx
        if not y0 <= actor.y + actor.dy <= y0 + self.cell_h - size_h:
            actor.dy = -actor.dy
        actor.x += actor.dx
        actor.y += actor.dy

    def step(self) -> tuple[np.ndarray, list[tuple[int, int, int, int]]]:
        self.left = []
        for slot, actor in enumerate(self.actors):
            if actor is not None:
                actor.frames_left -= 1
                if actor.frames_left <= 0:
                    self.left.append(actor.actor_id)
                    self.actors[slot] = None
                    self.away[slot] = int(self.rng.integers(self.away_range[0], self.away_range[1] + 1))
                else:
                    self._move(slot, actor)
            elif self.away[slot] <= 0:
                self.actors[slot] = self._enter(slot)
            else:
                self.away[slot] -= 1
        frame = self.background.copy()
        for actor in self.present():
            x, y, w, h = actor.box
            frame[y : y + h, x : x + w] = actor.image
        return frame, [actor.box for actor in self.present()]

    def present(self) -> list[Actor]:
        return [actor for actor in self.actors if actor is not None]


def run_soak(processor, scene: Scene, frames: int, every: int = 1000, warmup: int = 2000, out=sys.stdout) -> dict:
    """Feed `frames` frames of `scene` to `processor`; print a line every `every` frames; return the figures."""
    warmup = min(warmup, frames // 2)  # short runs: measure growth over their second half
    samples: dict[int, float] = {}
    max_tracks = max_faces = detected = present_total = 0
    ms: list[float] = []
    print(f"{'frame':>7} {'rss_MiB':>8} {'tracks':>6} {'faces':>5} {'found':>5} {'py_objects':>10} {'ms_p50':>7}",
          file=out, flush=True)
    samples[0] = rss_mib()
    for index in range(1, frames + 1):
        frame, boxes = scene.step()
        result = processor.process(frame)
        ms.append(result.ms)
        tracks = len(processor.tracker.tracks)
        max_tracks, max_faces = max(max_tracks, tracks), max(max_faces, len(boxes))
        found = count_found(tuple(boxes), [face.box for face in result.faces])
        detected += found
        present_total += len(boxes)
        if index == warmup:
            samples[index] = rss_mib()
        if index % every == 0 or index == frames:
            rss = samples[index] = rss_mib()
            print(f"{index:>7} {rss:>8.1f} {tracks:>6} {len(boxes):>5} {found:>5} "
                  f"{len(gc.get_objects()):>10} {float(np.median(ms)):>7.2f}", file=out, flush=True)
            ms.clear()
    growth = samples[frames] - samples[warmup]
    return {"growth_mib": growth, "rss_start": samples[warmup], "rss_end": samples[frames], "warmup": warmup,
            "max_tracks": max_tracks, "max_faces": max_faces, "detected": detected, "present": present_total}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=20_000)
    parser.add_argument("--detector", default="mediapipe", choices=["mediapipe", "haar"])
    parser.add_argument("--model", default=None, help="a fer-realtime .keras file (default: the shipped model)")
    parser.add_argument("--every", type=int, default=1000, help="print a memory line every N frames")
    parser.add_argument("--warmup", type=int, default=2000, help="RSS growth is measured from this frame")
    parser.add_argument("--max-growth-mib", type=float, default=30.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--face-size", type=int, nargs=2, default=(130, 160), metavar=("MIN", "MAX"),
                        help="side of the pasted faces in px (MediaPipe's short-range model misses most below 130)")
    args = parser.parse_args(argv)
    if args.frames < 2:
        parser.error("--frames must be at least 2")
    if not 48 <= args.face_size[0] <= args.face_size[1] <= min(WIDTH // COLUMNS, HEIGHT // ROWS):
        parser.error(f"--face-size: MIN <= MAX, between 48 and {min(WIDTH // COLUMNS, HEIGHT // ROWS)}")

    from fer_realtime import EmotionRecognizer

    crops, origin = load_face_crops(seed=args.seed)
    start = time.perf_counter()
    with EmotionRecognizer(detector=args.detector, model=args.model) as recognizer:
        usable = detectable_crops(crops, recognizer.detector, Scene(crops, seed=args.seed).background)
        origin = f"{origin}, {len(usable)} of them found alone by the detector"
        scene = Scene(usable, seed=args.seed, size_range=tuple(args.face_size))
        processor = recognizer.video_processor()
        print(f"soak: {args.frames} frames of {WIDTH}x{HEIGHT}, 0-{COLUMNS * ROWS} faces from {origin}, "
              f"detector={args.detector}, device={recognizer.device}", flush=True)
        figures = run_soak(processor, scene, args.frames, every=args.every, warmup=args.warmup)
    seconds = time.perf_counter() - start
    ok = figures["growth_mib"] <= args.max_growth_mib
    recall = figures["detected"] / figures["present"] if figures["present"] else 0.0
    print(f"verdict: {'OK' if ok else 'LEAK?'} RSS grew {figures['growth_mib']:+.1f} MiB from frame "
          f"{figures['warmup']} ({figures['rss_start']:.1f} MiB) to frame {args.frames} ({figures['rss_end']:.1f} MiB), "
          f"limit {args.max_growth_mib:g} MiB; max tracks {figures['max_tracks']} with at most {figures['max_faces']} "
          f"faces present; faces found/present {recall:.2f}; {args.frames / seconds:.0f} frames/s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
