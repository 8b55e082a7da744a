"""Memory over a long video: a clip built from FER2013 faces (30 minutes by default) through `fer-realtime video`,
the process's resident memory sampled as it runs.

Builds the clip (evaluation/clips.py: one face slot, a new FER2013 val face every 3 s, now and then none), then
runs `python -m fer_realtime video CLIP --csv OUT.csv` in a subprocess and samples its VmRSS (/proc/PID/status)
every --every seconds, with the frames done (from its progress bar). Prints the series, the growth from the
first sample after --warmup-frames to the end, and the timeline's rows; exit code 1 when the growth is above
--max-growth-mib.

Usage: python benchmarks/long_video_memory.py [--minutes 30] [--fps 10] [--every 30] [--warmup-frames 1000]
                                              [--max-growth-mib 30] [--keep DIR] [--workers N]
With --workers N the clip runs as a one-video job on Ray (`--csv-dir`, `--workers N`) and the sampled memory is
the sum over the command's process tree (driver, Ray's processes and its workers).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FER_VAL = ROOT.parent / "shared" / "datasets" / "fer2013" / "val"


def rss_mib(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as status:
                total += next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
        except (OSError, StopIteration):
            pass
    return total / 1024.0


def process_tree(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(children.get(current, []))
    return tree


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--fps", type=float, default=10.0)
    parser.add_argument("--every", type=float, default=30.0, help="seconds between samples")
    parser.add_argument("--warmup-frames", type=int, default=1000)
    parser.add_argument("--max-growth-mib", type=float, default=30.0)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--keep", default=None, metavar="DIR", help="build the clip and the CSV here and keep them")
    args = parser.parse_args()

    from fer_realtime.evaluation.clips import fer_faces, write_face_clip

    folder = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="fer-long-video-"))
    folder.mkdir(parents=True, exist_ok=True)
    clip = folder / f"fer2013-{args.minutes:g}min.mp4"
    started = time.perf_counter()
    frames = write_face_clip(clip, fer_faces(FER_VAL), seconds=args.minutes * 60, fps=args.fps, seed=1)
    print(f"clip {clip}: {frames} frames, {args.minutes:g} min at {args.fps:g} frames/s, 640x360, "
          f"{clip.stat().st_size / 2**20:.0f} MiB, built in {time.perf_counter() - started:.0f} s", flush=True)

    command = [sys.executable, "-m", "fer_realtime", "video", str(clip)]
    if args.workers:
        command += ["--csv-dir", str(folder / "timelines"), "--workers", str(args.workers)]
        csv_path = folder / "timelines" / f"{clip.stem}.csv"
    else:
        csv_path = folder / f"{clip.stem}.csv"
        command += ["--csv", str(csv_path)]
    for stale in (csv_path,):
        stale.unlink(missing_ok=True)
    print("$ " + " ".join(command), flush=True)
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    done = [0]

    def read_progress():
        for chunk in iter(lambda: process.stderr.read(256), ""):
            counts = re.findall(r"(\d+)/\d+ frames", chunk)
            if counts:
                done[0] = int(counts[-1])

    threading.Thread(target=read_progress, daemon=True).start()
    samples = []
    began = time.perf_counter()
    print(f"{'minute':>7} {'frames':>7} {'RSS MiB':>8}", flush=True)
    while process.poll() is None:
        time.sleep(args.every)
        if process.poll() is not None:
            break
        pids = process_tree(process.pid) if args.workers else [process.pid]
        samples.append((time.perf_counter() - began, done[0], rss_mib(pids)))
        print(f"{samples[-1][0] / 60:>7.1f} {samples[-1][1]:>7} {samples[-1][2]:>8.1f}", flush=True)
    out = process.stdout.read()
    print(out.strip())
    if process.returncode != 0:
        print(f"the video command failed with exit code {process.returncode}", file=sys.stderr)
        return 2
    rows = sum(1 for _ in open(csv_path)) - 1
    settled = [s for s in samples if s[1] >= args.warmup_frames]
    if len(settled) < 2:
        print("too few samples after the warm-up to judge the memory; use a longer clip or a shorter --every")
        return 2
    growth = settled[-1][2] - settled[0][2]
    peak = max(s[2] for s in samples)
    print(f"RSS {settled[0][2]:.1f} MiB at frame {settled[0][1]} -> {settled[-1][2]:.1f} MiB at frame "
          f"{settled[-1][1]} ({growth:+.1f} MiB; limit {args.max_growth_mib:g}), peak {peak:.1f} MiB; "
          f"timeline {rows} face rows in {csv_path.stat().st_size / 2**20:.1f} MiB")
    return 0 if growth <= args.max_growth_mib else 1


if __name__ == "__main__":
    sys.exit(main())
