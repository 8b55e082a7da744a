"""Where a live frame's time goes on the server, for N concurrent streams, with the browser on this machine and
without it.

Samples the server process's Python threads with py-spy (30 samples/s, without pausing it) and sorts each
running thread's sample by the first frame of its stack that names a stage:
  receive   aiortc receiving packets (ICE, DTLS/SRTP, RTP, jitter buffer)
  decode    aiortc's video decoder (VP8/H.264 to YUV frames)
  convert   YUV <-> BGR for the frame callback (av to_ndarray / from_ndarray / reformat)
  detect    face detection          crop   face crops            model   the model call (batcher included)
  track     tracking and results    draw   boxes and labels
  encode    aiortc's video encoder  send   RTP packetising and sending
  page      Streamlit (script runs, websocket)     other   anything else running
A thread counts when it is running or waiting for a core (not when it sleeps or waits on a lock or socket). Thread
pools inside TFLite (the model's and the detector's XNNPACK threads) are not Python threads: their work shows as
the calling thread's model or detect samples. Beside the shares: frames/s per stream over the sampled time, and the
server's and the browser's CPU use in cores (of 2 here), all measured without the profiler (which slows the
server down) except the shares.

  --browser   `streamlit run` + headless Chromium with N tabs, each streaming the fake camera (the astronaut)
  (default)   `fer-realtime bench-streams` with N simulated streams (no WebRTC: receive, decode, encode, send are 0)

Usage: python benchmarks/profile_streams.py [--browser [--settle 20]] [--streams 1,2,4,8] [--seconds 20] [--batched]
Needs py-spy (pip install py-spy) and, with --browser, Debian's chromium.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

RATE = 30  # samples per second per thread: more slows the process it watches
STAGES = ("receive", "decode", "convert", "detect", "crop", "model", "track", "draw", "encode", "send", "page",
          "other")
# (stage, substrings of a frame "function (file:line)"); the leaf-most frame that matches decides
RULES = (
    ("decode", ("codecs/vpx.py", "codecs/h264.py")),
    # the frame callback's own lines and the simulated streams' worker only convert frames (av's Cython calls do
    # not show as frames of their own)
    ("convert", ("to_ndarray", "from_ndarray", "reformat", "webapp/live_tab.py", "_Stream.work")),
    ("detect", ("faces/blazeface", "faces/detector.py", "faces/haar.py", "faces/tasks_detector.py")),
    ("crop", ("faces/crops.py",)),
    ("model", ("inference/engine.py", "inference/batching.py", "inference/tta.py", "inference/calibration.py")),
    ("track", ("faces/tracking.py", "inference/results.py", "video/recording.py")),
    ("draw", ("faces/drawing.py",)),
    ("send", ("rtcrtpsender.py", "rtp.py", "rtcsrtptransport", "rtcdtlstransport.py", "rtcicetransport.py",
              "aioice")),
    ("receive", ("rtcrtpreceiver.py", "jitterbuffer.py")),
    ("page", ("streamlit/", "tornado/")),
)


def stage_of(stack: str) -> str:
    frames = stack.split(";")
    for frame in reversed(frames):  # leaf first
        for stage, needles in RULES:
            if any(n in frame for n in needles):
                if stage == "decode" and "encode" in frame:
                    return "encode"
                return stage
    return "other"


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and all its threads (children of it not included)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children_cpu(names: tuple[str, ...]) -> float:
    total = 0.0
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if any(n in (entry / "comm").read_text() for n in names):
                    total += cpu_seconds(int(entry.name))
            except OSError:
                pass
    return total


def record(pid: int, seconds: float, out: Path) -> Counter:
    subprocess.run([str(Path(sys.executable).parent / "py-spy"), "record", "--pid", str(pid), "--duration",
                    str(int(seconds)), "--rate", str(RATE), "--nonblocking", "--format", "raw", "--output", str(out)],
                   check=True, capture_output=True)
    counts: Counter = Counter()
    for line in out.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        counts[stage_of(stack)] += int(n)
    return counts


def profile_row(pid: int, seconds: float, folder: Path, streams: int, browser_cpu=None) -> dict:
    cpu_before, chrome_before, start = cpu_seconds(pid), browser_cpu() if browser_cpu else 0.0, time.monotonic()
    counts = record(pid, seconds, folder / f"profile-{streams}.txt")
    wall = time.monotonic() - start
    cpu = (cpu_seconds(pid) - cpu_before) / wall
    samples = sum(counts.values())
    shares = {s: counts[s] / samples if samples else 0.0 for s in STAGES}
    return {"streams": streams, "server_cores": round(cpu, 2),
            "browser_cores": round((browser_cpu() - chrome_before) / wall, 2) if browser_cpu else None,
            "shares": {s: round(v, 3) for s, v in shares.items()}}


def simulated(counts: list[int], seconds: float, batched: bool, folder: Path) -> list[dict]:
    rows = []
    for n in counts:
        command = [sys.executable, "-m", "fer_realtime", "bench-streams", "--streams", str(n), "--seconds",
                   str(seconds + 8), "--warmup", "4", "--mode", "batched" if batched else "per-stream", "--json"]
        process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        time.sleep(14)  # start-up (TensorFlow, model, detectors) and the bench's warm-up
        row = profile_row(process.pid, seconds, folder, n)
        bench = json.loads(process.communicate(timeout=300)[0])[0]
        row.update(fps_per_stream=bench["fps_per_stream"], p50_ms=bench["p50_ms"], p90_ms=bench["p90_ms"])
        rows.append(row)
        print_row(row)
    return rows


def in_browser(counts: list[int], seconds: float, folder: Path, settle: float) -> list[dict]:
    from browser_support import (FAKE_CAMERA_ARGS, StreamlitServer, app_page, chromium_browser,
                                 portrait_frame, press_stream_button, wait_for_live, write_y4m)

    camera = write_y4m(folder / "portrait.y4m", portrait_frame(), frames=30)
    rows = []
    for n in counts:
        server = StreamlitServer(folder / f"streamlit-{n}.log", env={"FER_REALTIME_RUNS_DIR": str(folder / "runs")})
        try:
            server.wait_until_serving(timeout=120)
            with chromium_browser(*FAKE_CAMERA_ARGS, f"--use-file-for-fake-video-capture={camera}") as browser, \
                    contextlib.ExitStack() as tabs:
                pages = [tabs.enter_context(app_page(browser, server.url)) for _ in range(n)]
                started = []
                for page in pages:
                    press_stream_button(page, "START")
                    try:
                        wait_for_live(page, lambda s: (s["faces"] or 0) >= 1, timeout=120, what="the first face")
                        started.append(page)
                    except AssertionError as exc:  # on a saturated machine a stream may not get going at all
                        print(f"a stream did not start: {exc}", file=sys.stderr)
                pages = started
                time.sleep(settle)  # WebRTC's bandwidth estimate ramps the streams up over the first seconds
                browser_cpu = lambda: children_cpu(("chromium", "chrome"))  # noqa: E731
                before, start = [_frames(page) for page in pages], time.monotonic()
                server_before, browser_before = cpu_seconds(server.process.pid), browser_cpu()
                time.sleep(seconds)  # frames/s and CPU without the profiler watching (it slows the server down)
                server_cores = (cpu_seconds(server.process.pid) - server_before) / (time.monotonic() - start)
                browser_cores = (browser_cpu() - browser_before) / (time.monotonic() - start)
                after, wall = [_frames(page) for page in pages], time.monotonic() - start
                row = profile_row(server.process.pid, seconds, folder, n)
                row.update(server_cores=round(server_cores, 2), browser_cores=round(browser_cores, 2))
                row["fps_per_stream"] = round(sum(b - a for a, b in zip(before, after)) / wall / max(1, len(pages)), 1)
                row["started"] = len(pages)
                rows.append(row)
                print_row(row)
        finally:
            server.stop()
    return rows


def _frames(page) -> int:
    """The frames the page says its stream has processed."""
    from browser_support import live_status

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        status = live_status(page)
        if status is not None:
            return status["frames"]
        time.sleep(0.2)
    raise RuntimeError("the live figures did not show")


def print_row(row: dict) -> None:
    shares = " ".join(f"{100 * row['shares'][s]:>7.0f}" for s in STAGES)
    speed = f"{row.get('fps_per_stream', 0):>6.1f}"
    if row.get("started", row["streams"]) != row["streams"]:
        speed += f" ({row['started']} of {row['streams']} streams started)"
    print(f"{row['streams']:>7} {speed} {row['server_cores']:>6.2f} "
          f"{row['browser_cores'] if row['browser_cores'] is not None else '-':>7} {shares}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--browser", action="store_true")
    parser.add_argument("--streams", default="1,2,4,8")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--settle", type=float, default=20.0,
                        help="--browser: seconds of streaming, once every tab shows a face, before sampling")
    parser.add_argument("--batched", action="store_true", help="simulated streams: through the batching classifier")
    parser.add_argument("--json", default=None, metavar="OUT.json")
    args = parser.parse_args()
    counts = [int(c) for c in args.streams.split(",")]
    folder = Path(tempfile.mkdtemp(prefix="fer-profile-"))
    print(f"{'streams':>7} {'fps':>6} {'server':>6} {'browser':>7} "
          + " ".join(f"{s:>7}" for s in STAGES) + "   (cores; % of Python samples)", flush=True)
    rows = in_browser(counts, args.seconds, folder, args.settle) if args.browser else simulated(counts, args.seconds, args.batched,
                                                                                  folder)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
