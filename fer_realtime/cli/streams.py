"""The `bench-streams` command: simulated concurrent live streams, with the shared batching classifier and without."""

from __future__ import annotations

import json
import sys

from ..core.errors import FerError
from ..evaluation.benchmark import DEFAULT_DATA
from ..evaluation.streams import bench_streams, format_streams, streams_as_json
from ..faces.detector import DETECTOR_NAMES
from ..inference.batching import BatchingOptions


def _counts(text: str) -> list[int]:
    try:
        counts = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        counts = []
    if not counts or any(c < 1 or c > 64 for c in counts):
        raise FerError(f"--streams takes stream counts from 1 to 64 separated by commas (such as 1,2,4,8), "
                       f"not {text!r}.")
    return counts


def cmd_bench_streams(args) -> int:
    counts = _counts(args.streams)
    if not 1 <= args.faces <= 9:
        raise FerError(f"--faces must be from 1 to 9, not {args.faces}.")
    if args.seconds <= 0:
        raise FerError(f"--seconds must be positive, not {args.seconds}.")
    try:
        options = BatchingOptions(max_wait_ms=args.max_wait_ms, max_faces=args.max_faces)
    except ValueError as exc:
        raise FerError(f"{exc}.") from None
    modes = {"both": (False, True), "batched": (True,), "per-stream": (False,)}[args.mode]
    progress = None if args.json else (lambda text: print(f"... {text}", file=sys.stderr, flush=True))
    rows = bench_streams(args.data, counts, faces=args.faces, detector=args.detector, model=args.model,
                         seconds=args.seconds, warmup_s=args.warmup, options=options, modes=modes, progress=progress)
    if args.json:
        print(json.dumps(streams_as_json(rows), indent=2))
    else:
        print(f"{args.faces} face(s) per 640x480 frame, {args.detector} detector, 30 frames/s per stream, "
              f"{args.seconds:g} s per row; batching waits up to {options.max_wait_ms:g} ms, "
              f"{options.max_faces} faces per call")
        print(format_streams(rows))
    return 0


def add_bench_streams(sub) -> None:
    """The `bench-streams` command."""
    p = sub.add_parser("bench-streams", help="simulated concurrent live streams: batched model calls against "
                                             "per-stream calls")
    p.add_argument("--streams", default="1,2,4,8", help="stream counts, comma-separated (default: %(default)s)")
    p.add_argument("--faces", type=int, default=1, help="faces per frame (default: %(default)s)")
    p.add_argument("--data", default=str(DEFAULT_DATA), help="class folders to take face crops from")
    p.add_argument("--detector", default="mediapipe", choices=list(DETECTOR_NAMES))
    p.add_argument("--model", default=None)
    p.add_argument("--seconds", type=float, default=10.0, help="measured seconds per row (default: %(default)s)")
    p.add_argument("--warmup", type=float, default=2.0, help="seconds before each row is measured")
    p.add_argument("--mode", default="both", choices=["both", "batched", "per-stream"])
    p.add_argument("--max-wait-ms", type=float, default=BatchingOptions.max_wait_ms,
                   help="how long a batch waits for other streams' faces (default: %(default)s)")
    p.add_argument("--max-faces", type=int, default=BatchingOptions.max_faces,
                   help="faces per model call at most (default: %(default)s)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_bench_streams)
