"""Throughput of `fer-realtime serve` on /classify: 8 client threads (streams), 4 real faces per request, for 1 and
then 2 replicas on a local Ray instance; requests/s, faces/s and ms per request (p50, p90) for each.

Usage: python benchmarks/serve_throughput.py [--replicas 1,2] [--seconds 20] [--threads 8] [--faces 4] [--json]

Faces: crops of ../shared/datasets/fer2013/val when it exists, else the astronaut photograph's face, shifted.
Each setting starts its own server process (own Ray session folder) and ends it with SIGTERM to its process group.
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from serve_support import free_port, stop_session  # noqa: E402

FER2013_VAL = ROOT.parent / "shared" / "datasets" / "fer2013" / "val"


def face_batches(count: int, faces: int) -> tuple[list[bytes], str]:
    """`count` request bodies of `faces` model inputs each (.npy), and where the faces come from."""
    from fer_realtime.core.model_file import default_model_path, read_metadata
    from fer_realtime.core.preprocessing import model_input

    metadata = read_metadata(default_model_path())
    if FER2013_VAL.is_dir():
        import cv2

        from fer_realtime.evaluation.benchmark import load_face_crops

        size = tuple(reversed(metadata.input_size))
        crops = [cv2.resize(c, size) for c in load_face_crops(FER2013_VAL, count=count * faces)]
        inputs, source = model_input(np.stack(crops), metadata), f"{FER2013_VAL} crops"
    else:
        import cv2
        from skimage import data

        from fer_realtime.faces.crops import crop_faces

        frame = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
        boxes = [(177 + dx, 66 + dy, 95, 95) for dx in range(-8, 9, 2) for dy in range(-8, 9, 2)]
        inputs, source = crop_faces(frame, boxes, metadata), "astronaut crops"
    bodies = []
    for i in range(count):
        rows = [(i * faces + j) % len(inputs) for j in range(faces)]
        out = io.BytesIO()
        np.save(out, np.ascontiguousarray(inputs[rows], dtype=np.float32), allow_pickle=False)
        bodies.append(out.getvalue())
    return bodies, source


def start_server(replicas: int) -> tuple[subprocess.Popen, str, int]:
    port = free_port()
    ray_dir = tempfile.mkdtemp(prefix="fer-ray-bench-", dir="/tmp")
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0")
    env.pop("RAY_ADDRESS", None)
    process = subprocess.Popen([sys.executable, "-m", "fer_realtime", "serve", "--port", str(port), "--replicas",
                                str(replicas), "--temp-dir", ray_dir], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the server exited with {process.returncode}; run `fer-realtime serve` to see why")
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=3)
            connection.request("GET", "/info")
            if connection.getresponse().status == 200:
                return process, ray_dir, port
        except OSError:
            time.sleep(1)
    stop_server(process, ray_dir)
    raise SystemExit(f"the server with {replicas} replica(s) did not answer within 300 s")


def stop_server(process: subprocess.Popen, ray_dir: str) -> None:
    """SIGTERM to the server's process group, wait until its Ray processes are gone (the next setting measures
    alone), remove its session folder."""
    stop_session(process, ray_dir, timeout=60)
    shutil.rmtree(ray_dir, ignore_errors=True)


def run_clients(port: int, bodies: list[bytes], threads: int, seconds: float) -> list[float]:
    """ms per request of every request the threads completed in `seconds`."""
    latencies: list[float] = []
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds

    def client(index: int):
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        mine, i = [], index
        while time.monotonic() < stop_at:
            started = time.perf_counter()
            connection.request("POST", "/classify", body=bodies[i % len(bodies)])
            response = connection.getresponse()
            answer = response.read()
            if response.status != 200:
                raise RuntimeError(f"/classify answered {response.status}: {answer[:200]!r}")
            mine.append((time.perf_counter() - started) * 1000)
            i += threads
        with lock:
            latencies.extend(mine)

    workers = [threading.Thread(target=client, args=(t,)) for t in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--replicas", default="1,2", help="comma-separated replica counts")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--faces", type=int, default=4, help="faces per request")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    bodies, source = face_batches(count=64, faces=args.faces)
    rows = []
    for replicas in [int(r) for r in args.replicas.split(",")]:
        process, ray_dir, port = start_server(replicas)
        try:
            run_clients(port, bodies, args.threads, seconds=3)  # warm-up: every replica's interpreters
            latencies = run_clients(port, bodies, args.threads, args.seconds)
        finally:
            stop_server(process, ray_dir)
        requests = len(latencies) / args.seconds
        rows.append({"replicas": replicas, "threads": args.threads, "faces_per_request": args.faces,
                     "seconds": args.seconds, "requests": len(latencies), "requests_per_s": round(requests, 1),
                     "faces_per_s": round(requests * args.faces, 1),
                     "p50_ms": round(float(np.percentile(latencies, 50)), 1),
                     "p90_ms": round(float(np.percentile(latencies, 90)), 1)})
    if args.json:
        print(json.dumps({"faces": source, "cpus": os.cpu_count(), "rows": rows}, indent=2))
        return
    print(f"/classify, {args.threads} client threads, {args.faces} faces per request ({source}), "
          f"{os.cpu_count()} CPUs, {args.seconds:g} s per setting")
    for row in rows:
        print(f"replicas={row['replicas']}: {row['requests_per_s']:.1f} requests/s, {row['faces_per_s']:.1f} faces/s, "
              f"p50 {row['p50_ms']:.1f} ms, p90 {row['p90_ms']:.1f} ms per request ({row['requests']} requests)")


if __name__ == "__main__":
    main()
