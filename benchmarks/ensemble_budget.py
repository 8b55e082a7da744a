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
from dataclasses import dataclass
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


@dataclass
class ScoringSets:
    """The faces every candidate is scored on: the members' selection split (original labels and FER+ majority,
    the only figures a choice may be made on) and the scorecard's sets (to judge the choice); also the fitting faces
    with their labels and vote shares, for what is fitted on them."""

    faces: dict[str, np.ndarray]
    labels: dict[str, np.ndarray]
    selection_ferplus: np.ndarray
    selection_kept: np.ndarray
    neutral: int
    fit_faces: np.ndarray
    fit_labels: np.ndarray
    fit_shares: np.ndarray
    fit_has_votes: np.ndarray

    @classmethod
    def for_members(cls, members, data: str, datasets: str) -> "ScoringSets":
        splits = {(int(m[2].training_data["config"]["seed"]), float(m[2].training_data["config"]["selection_fraction"]))
                  for m in members if "config" in m[2].training_data}
        if len(splits) != 1 or any("config" not in m[2].training_data for m in members):
            raise SystemExit("The members must record one and the same selection split.")
        train, _, _ = train_heldout_split(load_dataset(data))
        metadata = members[0][2]
        fit, selection = model_selection_split(metadata, train, "scored")
        votes = read_votes(find_votes(Path(data) / "train"))
        selection_ferplus, selection_kept = votes.majority([train.files[i] for i in selection], tuple(train.classes))
        fit_shares, fit_has_votes = votes.shares([train.files[i] for i in fit], tuple(train.classes))
        sets = labelled_sets(ScorecardData.under(datasets), tuple(metadata.classes), tuple(metadata.input_size))
        return cls(faces={"selection": train.images[selection], **{s.name: s.images for s in sets}},
                   labels={"selection": train.labels[selection], **{s.name: s.labels for s in sets}},
                   selection_ferplus=selection_ferplus, selection_kept=selection_kept,
                   neutral=list(metadata.classes).index("neutral"), fit_faces=train.images[fit],
                   fit_labels=train.labels[fit], fit_shares=fit_shares, fit_has_votes=fit_has_votes)

    @property
    def columns(self) -> list[str]:
        return ["selection", "selection FER+", *[s for s in SETS if s in self.faces], "CK+48 neutral"]

    def figures(self, predicted: dict[str, np.ndarray]) -> dict[str, float]:
        """Accuracy per column from each set's predicted classes."""
        figures = {s: float(np.mean(predicted[s] == self.labels[s])) for s in self.faces}
        figures["selection FER+"] = float(np.mean(predicted["selection"][self.selection_kept]
                                                  == self.selection_ferplus[self.selection_kept]))
        figures["CK+48 neutral"] = float(np.mean(predicted.get("CK+48", np.zeros(0)) == self.neutral))
        return figures


def read_all(model, metadata, faces_by_set) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Set name -> (what `model` outputs for the faces as they are, for their mirror images)."""
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
    scoring = ScoringSets.for_members(members, args.data, args.datasets)
    faces = scoring.faces

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

                figures = scoring.figures({s: averaged(s).argmax(axis=1) for s in faces})
                rows.append((figures["selection"], cost, " + ".join(f"{n} ({v})" for n, v in zip(subset, views)),
                             len(set(views)) == 1, figures))
    rows.sort(key=lambda row: -row[0])
    print(f"\nensembles within {args.max_gmac} GMAC per face, by selection accuracy (float Keras)")
    print(f"{'members (views)':<64}{'GMAC':>6}{'uniform':>8}" + "".join(f"{c:>16}" for c in scoring.columns))
    for _, cost, label, uniform, figures in rows[: args.top]:
        print(f"{label:<64}{cost:>6.3f}{'yes' if uniform else '':>8}"
              + "".join(f"{figures[c]:>16.4f}" for c in scoring.columns))


if __name__ == "__main__":
    main()
