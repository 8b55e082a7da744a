"""Soak test of the live page in a real browser: a long fake-camera stream, the server's memory every minute.

Starts `streamlit run streamlit_app.py`, opens it in headless Chromium whose fake camera plays the astronaut
portrait (tests/browser_support.py, the browser tests' own harness), presses START and keeps the stream playing.
Every --every seconds it prints: minutes, the server's resident memory (VmRSS of its process), the frames the page
says were processed, the server's frames/s and the frames/s the browser receives (both as the page shows them),
and the faces in view. The last lines are the verdict: RSS growth after --warmup minutes, and the frames/s range.

Usage: python benchmarks/soak_browser.py [--minutes 30] [--every 60] [--warmup 2] [--max-growth-mib 50]
Exit code 1 when the RSS growth after warm-up is above --max-growth-mib or the stream stops.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from browser_support import (  # noqa: E402
    FAKE_CAMERA_ARGS,
    StreamlitServer,
    app_page,
    chromium_browser,
    live_status,
    portrait_frame,
    press_stream_button,
    wait_for_live,
    write_y4m,
)

RECEIVED = re.compile(r"Browser receives: ([0-9.]+) frames/s")


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    raise RuntimeError(f"no VmRSS for process {pid}")


def server_fps(page) -> float | None:
    metric = page.locator('[data-testid="stMetric"]').filter(has_text="Frames/s")
    try:
        return float(metric.first.locator('[data-testid="stMetricValue"]').inner_text(timeout=2000))
    except Exception:  # being redrawn
        return None


def received_fps(page) -> float | None:
    try:
        text = page.frame_locator('iframe[title="st.iframe"]').get_by_text(RECEIVED).inner_text(timeout=2000)
    except Exception:
        return None
    return float(RECEIVED.search(text).group(1))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--every", type=float, default=60.0, help="seconds between samples")
    parser.add_argument("--warmup", type=float, default=2.0, help="minutes before the growth is measured")
    parser.add_argument("--max-growth-mib", type=float, default=50.0)
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="fer-soak-"))
    camera = write_y4m(folder / "portrait.y4m", portrait_frame(), frames=30)
    server = StreamlitServer(folder / "streamlit.log", env={"FER_REALTIME_RUNS_DIR": str(folder / "runs"),
                                                            "FER_REALTIME_MODELS_DIR": str(folder / "models")})
    samples = []
    try:
        server.wait_until_serving(timeout=120)
        with chromium_browser(*FAKE_CAMERA_ARGS, f"--use-file-for-fake-video-capture={camera}") as browser, \
                app_page(browser, server.url) as page:
            press_stream_button(page, "START")
            wait_for_live(page, lambda s: (s["faces"] or 0) >= 1, timeout=120, what="the first face")
            started = time.monotonic()
            print(f"{'minute':>6} {'server RSS MiB':>14} {'frames':>8} {'server fps':>10} {'browser fps':>11} "
                  f"{'faces':>5}", flush=True)
            while True:
                elapsed = (time.monotonic() - started) / 60
                status = live_status(page) or {}
                sample = (elapsed, rss_mib(server.process.pid), status.get("frames"), server_fps(page),
                          received_fps(page), status.get("faces"))
                samples.append(sample)
                print(f"{sample[0]:>6.1f} {sample[1]:>14.1f} {sample[2] or 0:>8} {sample[3] or 0:>10.1f} "
                      f"{sample[4] or 0:>11.1f} {sample[5] or 0:>5}", flush=True)
                if elapsed >= args.minutes:
                    break
                time.sleep(max(0.0, started + 60 * (elapsed + args.every / 60) - time.monotonic()))
    finally:
        server.stop()
    after = [s for s in samples if s[0] >= args.warmup]
    growth = after[-1][1] - after[0][1] if len(after) > 1 else 0.0
    fps = [s[3] for s in after if s[3]]
    moving = len(samples) > 1 and (samples[-1][2] or 0) > (samples[-2][2] or 0)
    print(f"RSS {after[0][1]:.1f} MiB at {after[0][0]:.1f} min -> {after[-1][1]:.1f} MiB at {after[-1][0]:.1f} min: "
          f"growth {growth:+.1f} MiB (limit {args.max_growth_mib:g}); peak {max(s[1] for s in samples):.1f} MiB")
    if fps:
        print(f"server frames/s after warm-up: {min(fps):.1f} to {max(fps):.1f} (median {sorted(fps)[len(fps) // 2]:.1f})")
    print("stream still moving at the end" if moving else "STREAM STOPPED")
    return 0 if growth <= args.max_growth_mib and moving else 1


if __name__ == "__main__":
    sys.exit(main())
