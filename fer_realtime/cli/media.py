"""Commands on images and videos, and speed: predict, video, bench."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import cv2

from ..app.photos import annotated_name
from ..core.atomic import write_bytes_atomic
from ..core.errors import FerError
from ..core.images import read_image
from ..evaluation.benchmark import DEFAULT_DATA, SCENES, format_rows, rows_as_dicts, run_benchmark
from ..evaluation.compute import cpu_description, describe_cost, describe_cpu, multiply_adds
from ..faces.detector import DETECTOR_NAMES
from ..faces.detectors import DEFAULT_DETECTOR, still_image_options
from ..faces.drawing import draw_faces
from ..inference.engine import get_engine
from ..inference.tta import TestTimeAugmentation
from ..recognizer import EmotionRecognizer
from ..video.collection import VideoOptions, plan_jobs
from ..video.files import process_video
from ..video.processor import DEFAULT_SMOOTHING, SMOOTHING


def _write_image_atomic(path: Path, image) -> None:
    ok, encoded = cv2.imencode(path.suffix, image)
    if not ok:
        raise FerError(f"could not encode {path.name}")
    write_bytes_atomic(path, encoded.tobytes())


def cmd_predict(args) -> int:
    out_dir = Path(args.out) if args.out else None
    if out_dir is not None:
        if out_dir.exists() and not out_dir.is_dir():
            raise FerError(f"--out {out_dir} is a file; give a folder for the annotated images.")
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise FerError(f"--out {out_dir}: the folder cannot be created ({exc.strerror}).") from None
    recognizer = EmotionRecognizer(detector=still_image_options(args.detector), model=args.model)
    results, failed, used_names = [], 0, set()
    for image_arg in args.images:
        path = Path(image_arg)
        try:
            frame = read_image(path)
        except FerError as exc:
            failed += 1
            results.append({"image": image_arg, "error": str(exc)})
            if not args.json:
                print(f"{image_arg}: error: {exc}", file=sys.stderr)
            continue
        faces = recognizer.analyze(frame)
        entry = {"image": image_arg, "faces": [face.to_dict() for face in faces]}
        if out_dir is not None:
            target = out_dir / annotated_name(path.name, used_names)
            _write_image_atomic(target, draw_faces(frame, faces))
            entry["annotated"] = str(target)
        results.append(entry)
        if not args.json:
            if not faces:
                print(f"{image_arg}: no face found")
            for i, face in enumerate(faces, start=1):
                others = ", ".join(f"{k} {v:.2f}" for k, v in sorted(face.scores.items(), key=lambda kv: -kv[1]))
                print(f"{image_arg}: face {i} at {tuple(face.box)}: {face.label} {face.confidence:.2f} ({others})")
    recognizer.close()
    if args.json:
        print(json.dumps(results, indent=2))
    return 1 if failed else 0


def add_predict(sub) -> None:
    """The `predict` command."""
    p = sub.add_parser("predict", help="find faces in images and classify their expressions")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    # Stills default to haar: slower but it also finds small and profile faces, e.g. in group photos.
    p.add_argument("--detector", default="haar", choices=["haar", "mediapipe"])
    p.add_argument("--model", default=None, help="a fer-realtime .keras file (default: the shipped model)")
    p.add_argument("--json", action="store_true", help="print one JSON list, one object per image")
    p.add_argument("--out", default=None, metavar="DIR", help="write annotated copies into DIR")
    p.set_defaults(func=cmd_predict)


def cmd_bench(args) -> int:
    detectors = [d.strip() for d in args.detectors.split(",") if d.strip()]
    unknown = [d for d in detectors if d not in DETECTOR_NAMES]
    if unknown or not detectors:
        raise FerError(f"Unknown detector {', '.join(unknown) or '(none)'}; choose from {', '.join(DETECTOR_NAMES)}.")
    progress = None if args.json else (lambda text: print(f"... {text}", file=sys.stderr, flush=True))
    scenes = [s.strip() for s in args.scenes.split(",") if s.strip()]
    if not scenes or any(s not in SCENES for s in scenes):
        raise FerError(f"Unknown scene in {args.scenes!r}; choose from {', '.join(SCENES)}.")
    rows = run_benchmark(args.data, detectors=detectors, runs=args.runs, video_frames=args.video_frames,
                         model=args.model, detect_every=args.detect_every, progress=progress, scenes=scenes)
    engine = get_engine(args.model)
    views = TestTimeAugmentation.of(engine.metadata).views
    cpu, extensions = cpu_description()
    if args.json:
        print(json.dumps({"device": engine.device, "runtime": getattr(engine, "runtime", "tensorflow"),
                          "model": str(engine.loaded.path), "views": views,
                          "gmac_per_face": multiply_adds(engine.loaded.model) * views / 1e9, "cpu": cpu,
                          "vector_extensions": list(extensions), "rows": rows_as_dicts(rows)}, indent=2))
    else:
        print(f"model {engine.loaded.path} on {engine.device} ({getattr(engine, 'runtime', 'tensorflow')}); "
              f"faces from {args.data} and skimage photographs")
        # The ms figures hold for this CPU: int8 speed differs tenfold between CPUs with and without AVX-512 VNNI.
        print(f"cost: {describe_cost(engine.loaded.model, views)}; CPU: {describe_cpu()}")
        print(format_rows(rows))
    return 0


def _progress_bar(done: int, total: int) -> None:
    if total:
        filled = int(30 * done / total)
        print(f"\r[{'#' * filled}{'.' * (30 - filled)}] {done}/{total} frames", end="", file=sys.stderr, flush=True)
    else:
        print(f"\r{done} frames", end="", file=sys.stderr, flush=True)


def _check_video_options(args) -> None:
    if args.uncertain_below is not None and not 0 <= args.uncertain_below <= 1:
        raise FerError(f"--uncertain-below must be a confidence from 0 to 1, got {args.uncertain_below}.")
    if args.workers is not None and args.workers < 1:
        raise FerError(f"--workers must be at least 1, got {args.workers}.")
    many = len(args.files) > 1 or Path(args.files[0]).is_dir() or args.workers is not None or args.address
    if many and (args.csv or args.out):
        raise FerError("--csv and --out name one video's outputs; for several videos or --workers give --csv-dir "
                       "(and --out-dir).")
    if many and not args.csv_dir:
        raise FerError("Give --csv-dir OUT for the timelines of several videos (one CSV per video, named after it).")
    if args.out_dir and not args.csv_dir:
        raise FerError("--out-dir goes with --csv-dir (the timelines' folder).")


def cmd_video(args) -> int:
    _check_video_options(args)
    if not args.csv_dir:
        return _video_here(args, args.files[0], args.csv, args.out)
    jobs = plan_jobs(args.files, args.csv_dir, args.out_dir)
    if len(jobs) == 1 and args.workers is None and not args.address:  # one file: in this process, no Ray
        if jobs[0].done:
            print(f"{jobs[0].video}: already done ({jobs[0].csv_path} exists)")
            return 0
        return _video_here(args, jobs[0].video, jobs[0].csv_path, jobs[0].out_path)
    return _videos_on_ray(args, jobs)


def _video_options(args) -> VideoOptions:
    return VideoOptions(detector=args.detector, model=args.model, detect_every=args.detect_every,
                        smoothing=args.smoothing, uncertain_below=args.uncertain_below)


def _video_here(args, video, csv_path, out_path) -> int:
    with EmotionRecognizer(detector=args.detector, model=args.model) as recognizer:
        summary = process_video(video, recognizer, csv_path=csv_path, out_path=out_path,
                                detect_every=args.detect_every, progress=None if args.quiet else _progress_bar,
                                smoothing=args.smoothing, uncertain_below=args.uncertain_below, keep_timeline=False)
    if not args.quiet:
        print(file=sys.stderr)
    labels = summary.label_counts
    print(f"{summary.frames} frames of {summary.width}x{summary.height} ({summary.frames / summary.video_fps:.1f} s of "
          f"video) in {summary.seconds:.1f} s: {summary.processing_fps:.1f} frames/s with {args.detector}; "
          f"{summary.faces} face rows" + (f" ({', '.join(f'{k} {v}' for k, v in sorted(labels.items()))})" if labels else ""))
    for what, path in (("timeline", summary.csv_path), ("annotated video", summary.out_path)):
        if path is not None:
            print(f"wrote {what} {path}")
    return 0


def _job_progress_bar(p) -> None:
    filled = int(30 * p.frames_done / p.frames_total) if p.frames_total else 0
    print(f"\r[{'#' * min(filled, 30)}{'.' * (30 - min(filled, 30))}] {p.frames_done}/{p.frames_total} frames, "
          f"{p.videos_done}/{p.videos_total} videos" + (f", {p.failed} failed" if p.failed else ""),
          end="", file=sys.stderr, flush=True)


def _videos_on_ray(args, jobs) -> int:
    try:
        from ..distributed.video_jobs import run_video_jobs
    except ImportError as exc:
        if (exc.name or "").split(".")[0] == "ray":
            raise FerError("Several videos run on Ray: pip install 'fer-realtime[distributed]'.") from None
        raise
    started = time.perf_counter()
    outcomes = run_video_jobs(jobs, _video_options(args), workers=args.workers, address=args.address,
                              progress=None if args.quiet else _job_progress_bar)
    seconds = time.perf_counter() - started
    if not args.quiet:
        print(file=sys.stderr)
    done = [o for o in outcomes if o.state == "done"]
    failed = [o for o in outcomes if o.state == "failed"]
    skipped = len(outcomes) - len(done) - len(failed)
    frames = sum(o.frames for o in done)
    where = args.address or f"{args.workers or os.cpu_count()} local workers"
    print(f"{len(outcomes)} videos in {seconds:.1f} s on Ray ({where}): {len(done)} done, {skipped} skipped "
          f"(already done), {len(failed)} failed; {frames} frames ({frames / seconds:.1f} frames/s), "
          f"{sum(o.faces for o in done)} face rows, {len(done) / seconds:.3f} videos/s")
    print(f"timelines in {args.csv_dir}" + (f", annotated videos in {args.out_dir}" if args.out_dir else ""))
    for outcome in failed:
        print(f"failed: {outcome.video}: {outcome.error}", file=sys.stderr)
    return 1 if failed else 0


def add_video(sub) -> None:
    """The `video` command."""
    p = sub.add_parser("video", help="emotions of every face in video files: timeline CSVs and annotated copies")
    p.add_argument("files", nargs="+", metavar="FILE_OR_DIR",
                   help="video files, and folders whose video files (at any depth) are all processed")
    p.add_argument("--detector", default=DEFAULT_DETECTOR, choices=list(DETECTOR_NAMES))
    p.add_argument("--model", default=None)
    p.add_argument("--csv", default=None, metavar="OUT.csv", help="one video: its per-frame, per-face timeline")
    p.add_argument("--out", default=None, metavar="ANNOTATED.mp4", help="one video: annotated copy (.mp4, .webm, .avi)")
    p.add_argument("--csv-dir", default=None, metavar="OUT",
                   help="one timeline CSV per video, named after it; videos whose outputs exist are skipped")
    p.add_argument("--out-dir", default=None, metavar="ANNOTATED", help="with --csv-dir: an annotated copy per video")
    p.add_argument("--workers", type=int, default=None, metavar="N",
                   help="videos processed at once, each a Ray task (default for several videos: one per CPU; a single "
                        "file without --workers is processed here, without Ray)")
    p.add_argument("--address", default=None, metavar="ADDR",
                   help="run the videos on this Ray cluster (e.g. auto, or HOST:6379) instead of a local Ray instance")
    p.add_argument("--detect-every", type=int, default=None, metavar="K",
                   help="run the detector every K frames, tracking in between (default: haar 3, mediapipe 1)")
    p.add_argument("--smoothing", default=DEFAULT_SMOOTHING, choices=list(SMOOTHING),
                   help="how steady each face's label is over frames (default: %(default)s)")
    p.add_argument("--uncertain-below", type=float, default=None, metavar="P",
                   help="label faces whose confidence is below P (0-1) 'uncertain' (drawn and in the CSV)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_video)


def add_bench(sub) -> None:
    """The `bench` command."""
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
                        "tilted photo, profile, group (see fer_realtime/evaluation/benchmark.py)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_bench)
