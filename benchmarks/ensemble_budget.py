"""Which ensembles of trained networks fit a compute budget per face, and how they read the scorecard's sets.

    python benchmarks/ensemble_budget.py MODEL [MODEL ...] [--data ../shared/datasets/fer2013]
        [--datasets ../shared/datasets] [--max-gmac 0.3] [--top 20]

MODEL: fer-realtime model files trained on the same selection split; an ensemble file counts as its members. Every
member reads each face as it is and mirrored (float Keras, once); every subset of members, each with one view or
with its mirror image, whose multiply-adds per face fit --max-gmac, is then scored by averaging probabilities:
on the selection split with the original labels and with the FER+ majority (the only figures a choice may be made
on), and, to judge the choice, on `val/` (original and FER+ majority) and CK+48 with its share read as neutral.
Rows are ranked by selection accuracy. "uniform" marks combinations an ensemble file can hold today (one set of
views for all members); the others would need views per member.
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import numpy as np

from fer_realtime.core.model_file import load_model
from fer_realtime.core.preprocessing import model_input
from fer_realtime.data.dataset import train_heldout_split
from fer_realtime.data.ferplus import find_votes, read_votes
from fer_realtime.data.loader import load_dataset
from fer_realtime.evaluation.compute import multiply_adds
from fer_realtime.evaluation.scorecard import SETS, ScorecardData, labelled_sets
from fer_realtime.training.ensemble import unpack_ensemble
from fer_realtime.training.trainer import model_selection_split

VIEWS = ("face", "face+mirror")


def members_of(paths):
    """(name, keras model, metadata) of every network in `paths`, ensembles opened into their members."""
    members = []
    for path in paths:
        loaded = load_model(path)
        if loaded.metadata.training_data.get("members"):
            members += [(Path(m.file).stem, m.model, m.metadata) for m in unpack_ensemble(loaded)]
        else:
            members.append((Path(path).stem, loaded.model, loaded.metadata))
    return members


def read_all(model, metadata, faces_by_set) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Set name -> (probabilities of the faces as they are, of their mirror images)."""
    out = {}
    for name, faces in faces_by_set.items():
        x = model_input(faces, metadata)
        plain = model.predict(x, batch_size=256, verbose=0)
        mirrored = model.predict(np.ascontiguousarray(x[:, :, ::-1]), batch_size=256, verbose=0)
        out[name] = (plain, mirrored)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="+", metavar="MODEL")
    parser.add_argument("--data", default="../shared/datasets/fer2013", help="the training dataset (selection split)")
    parser.add_argument("--datasets", default="../shared/datasets", help="the scorecard's datasets")
    parser.add_argument("--max-gmac", type=float, default=0.3, help="multiply-adds per face, all views (GMAC)")
    parser.add_argument("--top", type=int, default=20)
    args = parser.parse_args()

    members = members_of(args.models)
    seeds = {(int(m[2].training_data["config"]["seed"]), float(m[2].training_data["config"]["selection_fraction"]))
             for m in members if "config" in m[2].training_data}
    if len(seeds) != 1 or any("config" not in m[2].training_data for m in members):
        raise SystemExit("The members must record one and the same selection split.")
    dataset = load_dataset(args.data)
    train, _, _ = train_heldout_split(dataset)
    metadata = members[0][2]
    _, selection = model_selection_split(metadata, train, "scored")
    votes = read_votes(find_votes(Path(args.data) / "train"))
    selection_ferplus, selection_kept = votes.majority([train.files[i] for i in selection], tuple(train.classes))
    sets = labelled_sets(ScorecardData.under(args.datasets), tuple(metadata.classes), tuple(metadata.input_size))
    faces = {"selection": train.images[selection], **{s.name: s.images for s in sets}}
    labels = {"selection": train.labels[selection], **{s.name: s.labels for s in sets}}
    neutral = list(metadata.classes).index("neutral")

    costs, readings = {}, {}
    for name, model, member_metadata in members:
        costs[name] = multiply_adds(model) / 1e9
        readings[name] = read_all(model, member_metadata, faces)
        print(f"read {name}: {costs[name]:.3f} GMAC per view", flush=True)

    rows = []
    names = [m[0] for m in members]
    for size in range(1, len(names) + 1):
        for subset in itertools.combinations(names, size):
            for views in itertools.product(VIEWS, repeat=size):
                cost = sum(costs[n] * (2 if v == VIEWS[1] else 1) for n, v in zip(subset, views))
                if cost > args.max_gmac + 1e-9:
                    continue

                def averaged(set_name, subset=subset, views=views):
                    parts = [readings[n][set_name][0] if v == VIEWS[0] else sum(readings[n][set_name]) / 2
                             for n, v in zip(subset, views)]
                    return sum(parts) / len(parts)

                predicted = {s: averaged(s).argmax(axis=1) for s in faces}
                figures = {s: float(np.mean(predicted[s] == labels[s])) for s in faces}
                figures["selection FER+"] = float(np.mean(predicted["selection"][selection_kept]
                                                          == selection_ferplus[selection_kept]))
                figures["CK+48 neutral"] = float(np.mean(predicted.get("CK+48", np.zeros(0)) == neutral))
                rows.append((figures["selection"], cost, " + ".join(f"{n} ({v})" for n, v in zip(subset, views)),
                             len(set(views)) == 1, figures))
    rows.sort(key=lambda row: -row[0])
    columns = ["selection", "selection FER+", *[s for s in SETS if s in faces], "CK+48 neutral"]
    print(f"\nensembles within {args.max_gmac} GMAC per face, by selection accuracy (float Keras)")
    print(f"{'members (views)':<64}{'GMAC':>6}{'uniform':>8}" + "".join(f"{c:>16}" for c in columns))
    for _, cost, label, uniform, figures in rows[: args.top]:
        print(f"{label:<64}{cost:>6.3f}{'yes' if uniform else '':>8}"
              + "".join(f"{figures[c]:>16.4f}" for c in columns))


if __name__ == "__main__":
    main()
