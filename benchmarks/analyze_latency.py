"""Median ms per frame of EmotionRecognizer.analyze on 640x480 frames with one face (real photograph).

Usage: python benchmarks/analyze_latency.py [--detector haar|mediapipe] [--runs 200]
"""

from __future__ import annotations

import argparse
import time

import cv2
import numpy as np


def frame_with_astronaut() -> np.ndarray:
    from skimage import data

    face = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)[0:300, 100:360]
    frame = np.full((480, 640, 3), 100, np.uint8)
    frame[90:390, 190:450] = face
    return frame


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--detector", default="haar")
    parser.add_argument("--runs", type=int, default=200)
    args = parser.parse_args()

    from fer_realtime import EmotionRecognizer

    rec = EmotionRecognizer(detector=args.detector)
    frame = frame_with_astronaut()
    for _ in range(10):
        rec.analyze(frame)
    times, found = [], []
    for _ in range(args.runs):
        start = time.perf_counter()
        faces = rec.analyze(frame)
        times.append((time.perf_counter() - start) * 1000)
        found.append(len(faces))
    detect_ms = []
    for _ in range(args.runs):
        start = time.perf_counter()
        rec.detect(frame)
        detect_ms.append((time.perf_counter() - start) * 1000)
    print(
        f"detector={args.detector} device={rec.device} frame=640x480 faces_found={np.median(found):.0f}/1 "
        f"analyze p50={np.median(times):.2f} ms p90={np.percentile(times, 90):.2f} ms "
        f"(detection alone p50={np.median(detect_ms):.2f} ms) over {args.runs} runs"
    )


if __name__ == "__main__":
    main()
