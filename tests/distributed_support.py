"""What the data-parallel training tests share: a small learnable FER2013-format CSV, its held-out part as class
folders, and a training run in a process of its own (TensorFlow's devices are fixed when it starts), either through
the train command or, for runs that need many cheap steps, through train_classifier with a tiny network (train_tiny;
on one device it may run in the test's own process):

    python tests/distributed_support.py --data small.csv --devices 2 --epochs 3 --batch-size 8 --run-dir RUN
        --result result.json [--stop-before-epoch N] [--resume]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
EMOTIONS_USED = (0, 3, 5)  # angry, happy, surprise: one texture each
TINY_NETWORK = dict(stage_filters=(8, 16), convs_per_stage=(1, 1))


def _face(kind: int, rng: np.random.Generator) -> np.ndarray:
    """Stripes 4 pixels wide, horizontal, vertical or a checkerboard, at a random phase, plus noise: the classes
    have the same brightness and contrast and survive flips, shifts, small rotations and zoom."""
    rows, cols = np.mgrid[0:48, 0:48] + rng.integers(8)
    pattern = [(rows // 4) % 2, (cols // 4) % 2, (rows // 4 + cols // 4) % 2][kind]
    return np.clip(128 + 60 * (pattern - 0.5) + rng.normal(0, 25, (48, 48)), 0, 255).astype(np.uint8)


def write_fer_csv(path: Path, train_per_class: int, heldout_per_class: int, seed: int = 0) -> Path:
    """A FER2013 CSV (emotion,pixels,Usage): Training rows, and PublicTest rows (the held-out part)."""
    rng = np.random.default_rng(seed)
    lines = ["emotion,pixels,Usage"]
    for usage, count in (("Training", train_per_class), ("PublicTest", heldout_per_class)):
        for kind, emotion in enumerate(EMOTIONS_USED):
            lines += [f"{emotion},{' '.join(map(str, _face(kind, rng).ravel()))},{usage}" for _ in range(count)]
    path.write_text("\n".join(lines) + "\n")
    return path


def write_heldout_folders(csv_path: Path, root: Path) -> Path:
    """The CSV's held-out rows as class folders of PNG files (what `evaluate` reads)."""
    import cv2

    from fer_realtime.core.labels import EMOTIONS

    for number, line in enumerate(csv_path.read_text().splitlines()[1:]):
        emotion, pixels, usage = line.split(",")
        if usage == "PublicTest":
            folder = root / EMOTIONS[int(emotion)]
            folder.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(folder / f"{number}.png"), np.array(pixels.split(), dtype=np.uint8).reshape(48, 48))
    return root


def environment(runs: Path, **extra: str) -> dict[str, str]:
    return {**os.environ, "FER_REALTIME_RUNS": str(runs), "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(ROOT),
            **extra}


def start(args: list[str], env: dict[str, str]) -> subprocess.Popen:
    """`python ARGS` from the repository root, its output (stdout and stderr together) to a pipe."""
    return subprocess.Popen([sys.executable, *args], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def finish(processes: list[subprocess.Popen], timeout: float) -> list[tuple[int, str]]:
    """(exit code, output) of each process; all are killed if one outlives `timeout` (then the test fails)."""
    results = []
    try:
        for process in processes:
            output, _ = process.communicate(timeout=timeout)
            results.append((process.returncode, output))
    except subprocess.TimeoutExpired:
        for process in processes:
            process.kill()
        outputs = [process.communicate()[0] for process in processes]
        raise AssertionError(f"a training process ran past {timeout} s:\n" + "\n----\n".join(outputs)) from None
    return results


def train_tiny(data, epochs: int, batch_size: int, run_dir, result_file, devices: int = 1,
               stop_before_epoch: int | None = None, resume: bool = False) -> None:
    """The tiny network's run through train_classifier; what it did goes to the JSON file `result_file`. Runs on
    several devices need a process of their own (the command line below); a run on one device may be this process."""
    import keras

    from fer_realtime.core.preprocessing import normalize
    from fer_realtime.data.dataset import train_heldout_split
    from fer_realtime.data.loader import load_dataset
    from fer_realtime.training.recipes import recipe_config
    from fer_realtime.training.trainer import train_classifier

    class Stop(Exception):
        pass

    class StopBeforeEpoch(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == stop_before_epoch:
                raise Stop()

    train, heldout, _ = train_heldout_split(load_dataset(data))
    config = recipe_config("v2", epochs=epochs, batch_size=batch_size, flip_tta=False, **TINY_NETWORK)
    try:
        result = train_classifier(train, config, run_dir, devices=devices, resume=resume,
                                  callbacks=[StopBeforeEpoch()])
    except Stop:
        Path(result_file).write_text(json.dumps({"stopped": True}))
        return
    predicted = result.model.predict(normalize(heldout.images, result.metadata.preprocessing), verbose=0).argmax(1)
    Path(result_file).write_text(json.dumps({
        "stopped": False, "history": result.history, "heldout_accuracy": float(np.mean(predicted == heldout.labels)),
        "n_heldout": len(heldout), "learning_rate": config.learning_rate,
    }))


def _train_tiny(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", required=True)
    parser.add_argument("--devices", type=int, default=1)
    parser.add_argument("--epochs", type=int, required=True)
    parser.add_argument("--batch-size", type=int, required=True)
    parser.add_argument("--run-dir", required=True)
    parser.add_argument("--result", required=True)
    parser.add_argument("--stop-before-epoch", type=int, default=None)
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args(argv)
    train_tiny(args.data, args.epochs, args.batch_size, args.run_dir, args.result, devices=args.devices,
               stop_before_epoch=args.stop_before_epoch, resume=args.resume)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    _train_tiny(sys.argv[1:])
