"""Accuracy through the detector path for each smallest turn upright (fer_realtime/evaluation/upright.py).

    python benchmarks/upright_turn.py --data ../shared/datasets/fer2013 [--limit 1500] [--sizes 32,48,96,160]
        [--tilts 0,25] [--detectors mediapipe,haar] [--model weights/fer_cnn.keras]

Faces of the model's selection split (never its held-out data), as they are (tilt 0) and turned by a random angle
up to each tilt; per detector, source (photo search, video mode's look around a tracked face), face size and tilt:
faces found, the median error of the measured tilt, and the accuracy when turns below each angle are not made.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from fer_realtime.data.dataset import train_heldout_split
from fer_realtime.data.loader import load_dataset
from fer_realtime.evaluation.upright import format_scores, upright_scores
from fer_realtime.inference.engine import get_engine
from fer_realtime.training.trainer import model_selection_split


def _numbers(text: str) -> list[float]:
    return [float(v) for v in text.split(",") if v.strip()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="the dataset the model was trained on (FER2013)")
    parser.add_argument("--model", default=None, help="default: the shipped model")
    parser.add_argument("--limit", type=int, default=1500, help="selection faces (seed 0)")
    parser.add_argument("--sizes", default="32,48,96,160", help="face widths in 640x480 frames (px)")
    parser.add_argument("--tilts", default="0,25", help="largest tilt (degrees) of each run; 0: faces as they are")
    parser.add_argument("--detectors", default="mediapipe,haar")
    args = parser.parse_args()
    engine = get_engine(args.model)
    train, _, _ = train_heldout_split(load_dataset(args.data))
    _, selection = model_selection_split(engine.metadata, train, "measured")
    selection = np.sort(np.random.default_rng(0).permutation(selection)[: args.limit])
    faces, labels = train.images[selection], train.labels[selection]
    started = time.perf_counter()
    scores = []
    for detector in [d.strip() for d in args.detectors.split(",") if d.strip()]:
        for tilt in _numbers(args.tilts):
            for size in _numbers(args.sizes):
                new = upright_scores(engine, faces, labels, detector, int(size), tilt)
                print("\n".join(format_scores(new).splitlines()[1:]), flush=True)
                scores += new
    print(f"{len(faces)} selection faces of {args.data}; {time.perf_counter() - started:.0f} s")
    print(format_scores(scores))


if __name__ == "__main__":
    main()
