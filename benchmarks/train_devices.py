"""Training throughput of the shipped CNN recipe (v2) on 1 and on 2 devices (`train --devices N`): images/s of each
epoch's training steps after the first (warm-up) epoch, one process per device count, run one after the other.

Usage: python benchmarks/train_devices.py [--data DIR_OR_CSV] [--devices 1,2] [--images 2000] [--epochs 3]
       [--batch-size 64] [--json]

Data: a fixed subset (the same every run: `--images` training images, stratified, seed 0) of the training part of
--data, default ../shared/datasets/fer2013. Each device count trains the same recipe v2 network from the same seed
through train_classifier (what `train` runs), its run state in a temporary folder. Without GPUs, N devices are the
CPU split into N logical devices; with GPUs, the first N GPUs, and a count the machine lacks is reported as such.
The time counted is from the start of an epoch to the start of its evaluation on the selection split.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FER2013 = ROOT.parent / "shared" / "datasets" / "fer2013"


def _child(args) -> dict:
    """Train once on `args.devices` devices; the per-epoch training seconds and images."""
    sys.path.insert(0, str(ROOT))
    import keras

    from fer_realtime.core.errors import FerError
    from fer_realtime.data.dataset import FaceArrays, stratified_split
    from fer_realtime.data.loader import load_dataset
    from fer_realtime.training.recipes import recipe_config
    from fer_realtime.training.trainer import train_classifier

    try:
        from fer_realtime.training.devices import training_strategy

        training_strategy(args.devices, args.batch_size)  # the devices first, before TensorFlow starts
    except FerError as exc:
        return {"devices": args.devices, "unavailable": str(exc)}
    train = load_dataset(args.data, cache_dir=args.cache_dir).train
    if len(train) > args.images:
        _, chosen = stratified_split(train.labels, args.images / len(train), seed=0)
        train = FaceArrays(train.images[chosen], train.labels[chosen], train.classes)

    class EpochTimer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.epochs: list[dict] = []

        def on_epoch_begin(self, epoch, logs=None):
            self.epochs.append({"epoch": epoch + 1, "started": time.perf_counter(), "batches": 0})

        def on_train_batch_end(self, batch, logs=None):
            self.epochs[-1]["batches"] += 1

        def on_test_begin(self, logs=None):
            if "seconds" not in self.epochs[-1]:  # fit's evaluation on the selection split starts: training ended
                self.epochs[-1]["seconds"] = time.perf_counter() - self.epochs[-1].pop("started")

    timer = EpochTimer()
    config = recipe_config("v2", epochs=args.epochs, batch_size=args.batch_size)
    with tempfile.TemporaryDirectory(prefix="train-devices-") as run_dir:
        result = train_classifier(train, config, run_dir, callbacks=[timer], verbose=0, devices=args.devices)
    fitted = result.metadata.training_data["n_fit"]
    for epoch in timer.epochs:
        epoch["images"] = min(epoch["batches"] * args.batch_size, fitted)
        epoch["images_per_s"] = epoch["images"] / epoch["seconds"]
    import tensorflow as tf

    return {"devices": args.devices, "images": len(train), "fitted": fitted, "epochs": timer.epochs,
            "device_kind": "GPU" if tf.config.list_physical_devices("GPU") else "CPU",
            "selection_accuracy": result.selection_report.accuracy}


def _run_child(devices: int, args) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "result.json"
        command = [sys.executable, __file__, "--child", "--devices", str(devices), "--data", str(args.data),
                   "--images", str(args.images), "--epochs", str(args.epochs), "--batch-size", str(args.batch_size),
                   "--cache-dir", args.cache_dir, "--result", str(out)]
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
        run = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
        if run.returncode != 0 or not out.is_file():
            raise SystemExit(f"--devices {devices} failed (exit {run.returncode}):\n{run.stdout}{run.stderr}")
        return json.loads(out.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=str(FER2013), help="a dataset `train` reads (default: %(default)s)")
    parser.add_argument("--devices", default="1,2", help="comma-separated device counts (default: %(default)s)")
    parser.add_argument("--images", type=int, default=2000, help="training images used (default: %(default)s)")
    parser.add_argument("--epochs", type=int, default=3, help="the first is warm-up (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=64, help="global batch (default: %(default)s)")
    parser.add_argument("--cache-dir", default=str(Path.home() / ".cache" / "fer-realtime"))
    parser.add_argument("--json", action="store_true", help="also print the measurements as JSON")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        args.devices = int(args.devices)
        Path(args.result).write_text(json.dumps(_child(args)))
        return
    if args.epochs < 2:
        raise SystemExit("--epochs must be at least 2: the first is warm-up.")
    if not Path(args.data).exists():
        raise SystemExit(f"{args.data} does not exist; give --data (a class-folder root or a FER2013 CSV).")
    counts = [int(n) for n in args.devices.split(",") if n.strip()]
    results = [_run_child(n, args) for n in counts]
    print(f"recipe v2, global batch {args.batch_size}, {args.epochs} epochs (the first is warm-up), "
          f"data {args.data}, {os.cpu_count()} CPU cores")
    print(f"{'devices':>7} {'images':>7} {'fitted':>7} {'per epoch after warm-up: images/s':>36} {'mean':>7}")
    for result in results:
        if "unavailable" in result:
            print(f"{result['devices']:>7} unavailable: {result['unavailable']}")
            continue
        rates = [epoch["images_per_s"] for epoch in result["epochs"][1:]]
        print(f"{result['devices']:>7} {result['images']:>7} {result['fitted']:>7} "
              f"{', '.join(f'{r:.1f}' for r in rates):>36} {sum(rates) / len(rates):>7.1f}  "
              f"({result['device_kind']}; {result['epochs'][1]['images']} images/epoch)")
    if args.json:
        print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
