"""CLI commands for speed and video: `bench` and `video` (registered by cli.build_parser)."""

from __future__ import annotations

import json
import sys

from .benchmark import DEFAULT_DATA
from .detection import DETECTOR_NAMES


def cmd_bench(args) -> int:
    from .benchmark import SCENES, format_rows, rows_as_dicts, run_benchmark
    from .recognizer import get_engine

    detectors = [d.strip() for d in args.detectors.split(",") if d.strip()]
    unknown = [d for d in detectors if d not in DETECTOR_NAMES]
    if unknown or not detectors:
        from .errors import FerError

        raise FerError(f"Unknown detector {', '.join(unknown) or '(none)'}; choose from {', '.join(DETECTOR_NAMES)}.")
    progress = None if args.json else (lambda text: print(f"... {text}", file=sys.stderr, flush=True))
    scenes = [s.strip() for s in args.scenes.split(",") if s.strip()]
    if not scenes or any(s not in SCENES for s in scenes):
        from .errors import FerError

        raise FerError(f"Unknown scene in {args.scenes!r}; choose from {', '.join(SCENES)}.")
    rows = run_benchmark(args.data, detectors=detectors, runs=args.runs, video_frames=args.video_frames,
                         model=args.model, detect_every=args.detect_every, progress=progress, scenes=scenes)
    engine = get_engine(args.model)
    if args.json:
        print(json.dumps({"device": engine.device, "runtime": getattr(engine, "runtime", "tensorflow"),
                          "model": str(engine.loaded.path), "rows": rows_as_dicts(rows)}, indent=2))
    else:
        print(f"model {engine.loaded.path} on {engine.device} ({getattr(engine, 'runtime', 'tensorflow')}); "
              f"faces from {args.data} and skimage photographs")
        print(format_rows(rows))
    return 0


def _progress_bar(done: int, total: int) -> None:
    if total:
        filled = int(30 * done / total)
        print(f"\r[{'#' * filled}{'.' * (30 - filled)}] {done}/{total} frames", end="", file=sys.stderr, flush=True)
    else:
        print(f"\r{done} frames", end="", file=sys.stderr, flush=True)


def cmd_video(args) -> int:
    from .recognizer import EmotionRecognizer
    from .video_file import process_video

    with EmotionRecognizer(detector=args.detector, model=args.model) as recognizer:
        summary = process_video(args.file, recognizer, csv_path=args.csv, out_path=args.out,
                                detect_every=args.detect_every, progress=None if args.quiet else _progress_bar)
    if not args.quiet:
        print(file=sys.stderr)
    labels: dict[str, int] = {}
    for row in summary.timeline:
        labels[row["label"]] = labels.get(row["label"], 0) + 1
    print(f"{summary.frames} frames of {summary.width}x{summary.height} ({summary.frames / summary.video_fps:.1f} s of "
          f"video) in {summary.seconds:.1f} s: {summary.processing_fps:.1f} frames/s with {args.detector}; "
          f"{summary.faces} face rows" + (f" ({', '.join(f'{k} {v}' for k, v in sorted(labels.items()))})" if labels else ""))
    for what, path in (("timeline", summary.csv_path), ("annotated video", summary.out_path)):
        if path is not None:
            print(f"wrote {what} {path}")
    return 0


def add_media_commands(sub) -> None:
    from .detection import DEFAULT_DETECTOR

    p = sub.add_parser("video", help="emotions of every face in a video file: timeline CSV and annotated copy")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--detector", default=DEFAULT_DETECTOR, choices=list(DETECTOR_NAMES))
    p.add_argument("--model", default=None)
    p.add_argument("--csv", default=None, metavar="OUT.csv", help="per-frame, per-face emotion timeline")
    p.add_argument("--out", default=None, metavar="ANNOTATED.mp4", help="annotated video (.mp4, .webm or .avi)")
    p.add_argument("--detect-every", type=int, default=None, metavar="K",
                   help="run the detector every K frames, tracking in between (default: haar 3, mediapipe 1)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_video)

    p = sub.add_parser("bench", help="speed and faces found: analyze, the live video path and the model")
    p.add_argument("--data", default=str(DEFAULT_DATA), help="class folders to take face crops from")
    p.add_argument("--detectors", default=",".join(DETECTOR_NAMES), help="comma-separated: haar, mediapipe")
    p.add_argument("--model", default=None)
    p.add_argument("--runs", type=int, default=200, help="frames timed per analyze row and model row")
    p.add_argument("--video-frames", type=int, default=300, help="length of the clip for the video rows")
    p.add_argument("--detect-every", type=int, default=None, metavar="K",
                   help="video rows: run the detector every K frames (default: per detector, haar 3, mediapipe 1)")
    p.add_argument("--scenes", default="faces,small,small photo,tilted,tilted photo,profile,group",
                   help="comma-separated: faces (640x480, the near-camera case), small, small photo, tilted, "
                        "tilted photo, profile, group (see fer_realtime/benchmark.py)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_bench)
