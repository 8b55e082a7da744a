"""Label steadiness against lag for each smoothing setting of the live frame processor.

    python benchmarks/smoothing.py [--data ../shared/datasets/fer2013/val] [--faces 40]

Prints, per setting: label changes per second on a steady face and the frames (and ms at 30 frames/s) it takes to
follow a change of expression; see fer_realtime/evaluation/smoothing.py for how the clips are made.
"""

from __future__ import annotations

import argparse
import time

from fer_realtime.evaluation.benchmark import DEFAULT_DATA, load_labelled_crops
from fer_realtime.evaluation.smoothing import format_rows, measure_smoothing
from fer_realtime.inference.engine import get_engine


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="class folders of face crops (FER2013 val/)")
    parser.add_argument("--faces", type=int, default=40)
    parser.add_argument("--model", default=None)
    args = parser.parse_args()
    crops, _ = load_labelled_crops(args.data, count=args.faces, seed=7)
    started = time.perf_counter()
    rows = measure_smoothing(get_engine(args.model), crops)
    print(f"{len(crops)} FER2013 faces from {args.data}, steady {len(crops)} x 3 s, changes between consecutive "
          f"faces; {time.perf_counter() - started:.0f} s")
    print(format_rows(rows))


if __name__ == "__main__":
    main()
