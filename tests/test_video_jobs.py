"""Many videos: planning the outputs, and the `video` command on a folder with Ray workers (the Ray runs are
subprocesses, so each starts and stops its own local Ray instance; runs that start no Ray, the sequential references
and reruns with nothing left to do, are the command in this process)."""

import csv
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from fer_realtime import EMOTIONS
from fer_realtime.core.errors import FerError
from fer_realtime.video.collection import plan_jobs
from serve_support import free_port, stop_session
from test_video_file import write_clip

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args, timeout=300, cwd=None, env=None):
    code = "import sys; from fer_realtime.cli.main import main; rc = main(sys.argv[1:]); " \
           "print('ray imported' if 'ray' in sys.modules else 'no ray', file=sys.stderr); sys.exit(rc)"
    return subprocess.run([sys.executable, "-c", code, "video", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd or ROOT, env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0", **(env or {})})


def run_here(capsys, *args) -> tuple[int, str]:
    """The `video` command in this process (no interpreter and TensorFlow to start): its exit code and printout."""
    from fer_realtime.cli.main import main

    capsys.readouterr()
    code = main(["video", *map(str, args)])
    return code, capsys.readouterr().out


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return path


def test_outputs_are_named_after_each_video_and_keep_their_folders(tmp_path):
    clips = tmp_path / "clips"
    for name in ("b.mp4", "a.avi", "day1/a.MOV", ".hidden/x.mp4", "notes.txt", "day2/.partial.mp4"):
        touch(clips / name)
    jobs = plan_jobs([clips], tmp_path / "out", tmp_path / "annotated")
    assert [j.video.relative_to(clips).as_posix() for j in jobs] == ["a.avi", "b.mp4", "day1/a.MOV"]
    assert [j.csv_path.relative_to(tmp_path).as_posix() for j in jobs] == ["out/a.csv", "out/b.csv", "out/day1/a.csv"]
    assert [j.out_path.relative_to(tmp_path).as_posix() for j in jobs] == [
        "annotated/a.avi", "annotated/b.mp4", "annotated/day1/a.mp4"]


def test_videos_that_would_share_a_name_get_a_stable_distinct_one(tmp_path):
    first = touch(tmp_path / "cam1" / "s.mp4")
    touch(tmp_path / "cam2" / "s.mp4")
    jobs = plan_jobs([tmp_path / "cam1", tmp_path / "cam2", first], tmp_path / "out")
    assert len(jobs) == 2  # the same file given twice is one job
    names = [j.csv_path.name for j in jobs]
    assert len(set(names)) == 2 and all(n.startswith("s-") and n.endswith(".csv") for n in names)
    assert [j.csv_path for j in plan_jobs([tmp_path / "cam2", tmp_path / "cam1"], tmp_path / "out")] == \
        [jobs[1].csv_path, jobs[0].csv_path]
    dotted = plan_jobs([touch(tmp_path / "take.v2.mp4")], tmp_path / "out")
    assert dotted[0].csv_path.name == "take.v2.csv"


def test_a_job_is_done_only_when_all_its_outputs_exist(tmp_path):
    job = plan_jobs([touch(tmp_path / "v.mp4")], tmp_path / "out", tmp_path / "ann")[0]
    assert not job.done
    touch(job.csv_path)
    assert not job.done
    touch(job.out_path)
    assert job.done


def test_bad_folders_are_one_sentence(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FerError, match="has no video files"):
        plan_jobs([tmp_path / "empty"], tmp_path / "out")
    touch(tmp_path / "file")
    with pytest.raises(FerError, match="--csv-dir .* is a file"):
        plan_jobs([touch(tmp_path / "v.mp4")], tmp_path / "file")


@pytest.mark.parametrize("args, message", [
    (["{clips}", "--csv", "t.csv"], "--csv and --out name one video's outputs"),
    (["{clips}"], "Give --csv-dir OUT"),
    (["{clips}/a.avi", "--csv-dir", "out", "--workers", "0"], "--workers must be at least 1"),
    (["{clips}/a.avi", "--out-dir", "ann"], "--out-dir goes with --csv-dir"),
])
def test_bad_options_are_one_sentence(tmp_path, args, message, capsys):
    from fer_realtime.cli.main import main

    write_clip(touch(tmp_path / "clips" / "a.avi"), frames=2)
    assert main(["video", *(a.format(clips=tmp_path / "clips") for a in args)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and len(err.splitlines()) == 1


def test_one_file_without_workers_runs_here_without_ray(tmp_path, capsys):
    write_clip(tmp_path / "a.avi", frames=6)
    done = run_cli(tmp_path / "a.avi", "--csv-dir", tmp_path / "out", "--quiet")
    assert done.returncode == 0, done.stderr
    assert "no ray" in done.stderr and (tmp_path / "out" / "a.csv").is_file()
    code, printed = run_here(capsys, tmp_path / "a.avi", "--csv-dir", tmp_path / "out", "--quiet")
    assert code == 0 and "already done" in printed


def test_a_folder_on_two_ray_workers_gives_the_sequential_timelines(tmp_path, capsys):
    clips = tmp_path / "clips"
    write_clip(touch(clips / "a.avi"), frames=24)
    write_clip(touch(clips / "b.avi"), frames=18, shift=5)
    write_clip(touch(clips / "day2" / "c.avi"), frames=12, shift=-1)
    (clips / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 300)  # an mp4 header, no movie

    sequential = tmp_path / "sequential.csv"
    assert run_here(capsys, clips / "a.avi", "--csv", sequential, "--quiet")[0] == 0

    first = run_cli(clips, "--csv-dir", tmp_path / "out", "--workers", "2")
    assert first.returncode == 1, first.stderr  # one file failed, the others finished
    out = tmp_path / "out"
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == ["a.csv", "b.csv", "day2", "day2/c.csv"]
    assert (out / "a.csv").read_bytes() == sequential.read_bytes()
    for name, frames in (("a.csv", 24), ("b.csv", 18), ("day2/c.csv", 12)):
        with open(out / name, newline="") as handle:
            rows = list(csv.DictReader(handle))
        assert len(rows) >= frames - 2 and {r["label"] for r in rows} <= set(EMOTIONS)
        assert sorted({int(r["frame"]) for r in rows}) == list(range(frames))[: len({int(r["frame"]) for r in rows})]
    assert "4 videos" in first.stdout and "3 done, 0 skipped (already done), 1 failed" in first.stdout
    failures = [line for line in first.stderr.splitlines() if line.startswith("failed: ")]
    assert len(failures) == 1 and "broken.mp4" in failures[0]
    assert "Traceback" not in first.stderr
    # the bar redraws itself with "\r", which text mode reads as a line break: its last state counts every frame
    bars = [line for line in first.stderr.splitlines() if line.startswith("[") and " videos" in line]
    assert bars and bars[-1].endswith("] 54/54 frames, 4/4 videos, 1 failed"), bars[-3:]

    # nothing left to run (the broken file fails before any worker would start): no Ray instance, so in this process
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*.csv")}
    code, printed = run_here(capsys, clips, "--csv-dir", out, "--workers", "2", "--quiet")
    assert code == 1 and "0 done, 3 skipped (already done), 1 failed" in printed
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.csv")} == stamps


def test_an_existing_ray_cluster_runs_the_videos(tmp_path, capsys):
    """`--address`: a cluster started with `ray start --head` (its own session folder, stopped by its processes)."""
    clips = tmp_path / "clips"
    write_clip(touch(clips / "a.avi"), frames=12)
    write_clip(touch(clips / "b.avi"), frames=8, shift=4)
    port = free_port()
    ray_dir = tempfile.mkdtemp(prefix="fer-ray-", dir="/tmp")  # short: Ray's socket paths live in it
    # The cluster's shared secret, as a cluster with token authentication gives it to its clients.
    auth = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(16), "RAY_USAGE_STATS_ENABLED": "0"}
    head = subprocess.Popen(
        [str(Path(sys.executable).with_name("ray")), "start", "--head", "--block", f"--port={port}",
         "--node-ip-address=127.0.0.1", "--num-cpus=2", "--include-dashboard=false", "--disable-usage-stats",
         f"--temp-dir={ray_dir}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True, env={**os.environ, **auth})
    try:
        # the sequential reference, in this process while the head starts
        assert run_here(capsys, clips / "b.avi", "--csv", tmp_path / "b.csv", "--quiet")[0] == 0
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert head.poll() is None, "ray start --head exited"
            time.sleep(0.5)
        else:
            pytest.fail("the Ray head did not listen within 90 s")
        on_cluster = run_cli(clips, "--csv-dir", tmp_path / "out", "--address", f"127.0.0.1:{port}", "--quiet",
                             env=auth)
        assert on_cluster.returncode == 0, on_cluster.stderr
        assert f"on Ray (127.0.0.1:{port}): 2 done" in on_cluster.stdout
        assert (tmp_path / "out" / "b.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()
        assert len((tmp_path / "out" / "a.csv").read_text().splitlines()) > 1
    finally:
        # `ray start --block` takes its processes down gracefully, one after another, over about 30 s once a job has
        # run; this cluster has nothing to keep, so what is left after a second is killed.
        stop_session(head, ray_dir, timeout=1)
        shutil.rmtree(ray_dir, ignore_errors=True)


def test_the_bar_counts_a_finished_video_whole_even_before_its_last_report_arrives():
    """A worker's last frame report travels to the counter actor on its own, so the driver may see the task's result
    first: finished videos count the frames of their outcome, running ones what they last reported."""
    from fer_realtime.distributed.video_jobs import _frames_done
    from fer_realtime.video.collection import VideoOutcome

    totals = {0: 24, 1: 18, 3: 12}  # video 2 failed before any worker started: it has no frames to count
    outcomes = {0: VideoOutcome(Path("a.avi"), "done", frames=24), 2: VideoOutcome(Path("x.mp4"), "failed"),
                3: VideoOutcome(Path("c.avi"), "done", frames=12)}
    lagging = {0: 20, 1: 7}  # video 0's last report and video 3's only one are still on their way
    assert _frames_done(totals, outcomes, lagging) == 24 + 7 + 12
    assert _frames_done(totals, {**outcomes, 1: VideoOutcome(Path("b.avi"), "done", frames=18)}, lagging) == 54
