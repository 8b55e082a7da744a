"""What the input size of the ImageNet member (EfficientNet-Lite0, recipe t1) costs: training speed per stage and
inference per face, at each size.

    python benchmarks/transfer_input_size.py [--sizes 64,80,96,112] [--batches 12] [--data ../shared/datasets/fer2013]

For each size: multiply-adds per pass; training images per second (and minutes per FER2013 epoch of 25,838 fitting
faces) with the head alone (stage 0), with the stages recipe t1 ends with (top 5 groups: stage4 to the top) and with
every group unfrozen; the int8 network's ms per face at batch 1 and 8 (TFLite XNNPACK, the runtime the page uses).
All sizes are measured in turns within one process, so load on the machine reaches each alike; the figures hold for
this CPU (its vector extensions are printed).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from fer_realtime.core.model_file import Preprocessing
from fer_realtime.core.preprocessing import normalize
from fer_realtime.data.class_folders import load_class_folders
from fer_realtime.evaluation.compute import describe_cpu, multiply_adds
from fer_realtime.inference.runtimes import convert_int8, tflite_interpreter
from fer_realtime.training.architectures import PACKAGED_BASE, TransferConfig, build_transfer
from fer_realtime.training.transfer import apply_stage, plan_stages

FIT_IMAGES = 25_838  # FER2013 train/ less the selection split
MODES = {"head": 0, "t1 last stage": 5, "all": None}


def _training_speed(model, blocks, names, unfrozen: int | None, x, y, batches: int) -> float:
    import keras

    stages = plan_stages(blocks, 1, 1, 1e-4, max_unfrozen_blocks=unfrozen, block_names=names)
    apply_stage(model, stages[-1])
    model.compile(optimizer=keras.optimizers.Adam(1e-4), loss="sparse_categorical_crossentropy")
    model.fit(x[:128], y[:128], batch_size=64, epochs=1, verbose=0)  # traced and warm
    count = 64 * batches
    best = float("inf")
    for _ in range(2):  # the faster of two: a moment of load elsewhere on the machine should not count
        started = time.perf_counter()
        model.fit(x[:count], y[:count], batch_size=64, epochs=1, verbose=0)
        best = min(best, time.perf_counter() - started)
    return count / best


def _ms_per_face(content: bytes, x: np.ndarray, batch: int, runs: int = 30) -> float:
    interpreter, inp, out = tflite_interpreter(content, batch, x.shape[1:])
    chunk = np.ascontiguousarray(x[:batch])
    for _ in range(5):
        interpreter.set_tensor(inp, chunk)
        interpreter.invoke()
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        interpreter.set_tensor(inp, chunk)
        interpreter.invoke()
        interpreter.get_tensor(out)
        times.append(time.perf_counter() - started)
    return float(np.median(times)) * 1000 / batch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="64,80,96,112")
    parser.add_argument("--batches", type=int, default=16, help="timed training batches of 64 per mode and size")
    parser.add_argument("--data", default="../shared/datasets/fer2013")
    args = parser.parse_args()
    faces = load_class_folders(f"{args.data}/val")
    rng = np.random.default_rng(0)
    pick = rng.choice(len(faces.labels), size=64 * args.batches, replace=False)
    x = normalize(faces.images[pick], Preprocessing())
    y = faces.labels[pick]
    print(f"CPU: {describe_cpu()}")
    print(f"{'size':>5} {'GMAC/pass':>9} " + " ".join(f"{m + ' img/s (min/epoch)':>28}" for m in MODES)
          + f" {'int8 ms/face b1':>15} {'b8':>6}")
    for size in (int(s) for s in args.sizes.split(",")):
        built = build_transfer(TransferConfig(base=PACKAGED_BASE, image_size=size))
        speeds = [_training_speed(built.model, built.backbone_blocks, built.block_names, unfrozen, x, y, args.batches)
                  for unfrozen in MODES.values()]
        content = convert_int8(built.model, x[:64])
        cells = " ".join(f"{s:>13.0f} ({FIT_IMAGES / s / 60:>5.1f} min)      " for s in speeds)
        print(f"{size:>5} {multiply_adds(built.model) / 1e9:>9.3f} {cells} {_ms_per_face(content, x, 1):>15.2f} "
              f"{_ms_per_face(content, x, 8):>6.2f}", flush=True)


if __name__ == "__main__":
    main()
