"""Many videos on Ray: videos/s and frames/s of `fer-realtime video FOLDER --csv-dir OUT --workers N` for each N,
side by side on the same folder of clips built from FER2013 faces.

Builds --clips clips of --seconds each (evaluation/clips.py, 640x360, one face slot), then for each worker count
runs the command in a subprocess with a fresh output folder and times it from start to exit (Ray's start and the
workers' model loading included, as a user waits for them). Prints a table and checks that every run wrote the
same timelines.

Usage: python benchmarks/video_workers.py [--workers 1,2] [--clips 6] [--seconds 40] [--fps 15] [--keep DIR]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FER_VAL = ROOT.parent / "shared" / "datasets" / "fer2013" / "val"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", default="1,2", help="comma-separated worker counts")
    parser.add_argument("--clips", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=40.0)
    parser.add_argument("--fps", type=float, default=15.0)
    parser.add_argument("--keep", default=None, metavar="DIR")
    args = parser.parse_args()

    from fer_realtime.evaluation.clips import fer_faces, write_face_clip

    folder = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="fer-video-workers-"))
    clips = folder / "clips"
    clips.mkdir(parents=True, exist_ok=True)
    crops = fer_faces(FER_VAL)
    frames = sum(write_face_clip(clips / f"session{i:02d}.mp4", crops, seconds=args.seconds, fps=args.fps, seed=i)
                 for i in range(args.clips))
    print(f"{args.clips} clips of {args.seconds:g} s at {args.fps:g} frames/s (640x360), {frames} frames in all")
    print(f"{'workers':>7} {'wall s':>7} {'videos/s':>9} {'frames/s':>9}")
    timelines = {}
    for run, workers in enumerate(int(w) for w in args.workers.split(",")):
        out = folder / f"timelines-{run}-{workers}"
        command = [sys.executable, "-m", "fer_realtime", "video", str(clips), "--csv-dir", str(out),
                   "--workers", str(workers), "--quiet"]
        started = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
        wall = time.perf_counter() - started
        if done.returncode != 0 or not re.search(rf"{args.clips} done", done.stdout):
            print(done.stdout + done.stderr[-2000:], file=sys.stderr)
            return 2
        timelines[run] = {p.name: p.read_bytes() for p in sorted(out.glob("*.csv"))}
        print(f"{workers:>7} {wall:>7.1f} {args.clips / wall:>9.3f} {frames / wall:>9.1f}", flush=True)
    first = next(iter(timelines.values()))
    same = all(t == first for t in timelines.values())
    print("timelines identical across worker counts" if same else "TIMELINES DIFFER across worker counts")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
