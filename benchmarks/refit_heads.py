"""What trained networks' features can read with a new head: one softmax layer over the members' frozen features.

    python benchmarks/refit_heads.py MODEL [MODEL ...] [--data ../shared/datasets/fer2013]
        [--datasets ../shared/datasets] [--votes-weights 0,0.2,0.3,0.5] [--max-gmac 0.3] [--epochs 8]

MODEL: fer-realtime model files trained on the same selection split; an ensemble file counts as its members. Each
member's features (the input of its last dense layer) are read once, for each face as it is and mirrored (float
Keras). For every subset of members whose multiply-adds per face fit --max-gmac, with every member reading the face
alone or also its mirror image, a softmax layer over the concatenated features is fitted on the fitting faces (face
and mirror as samples) to (1 - W) x the original label + W x the FER+ vote shares, for each W of --votes-weights;
"own" is the members' own heads averaged (as ensemble_budget.py scores them). Each row is scored like
ensemble_budget.py: the selection split with the original labels and with the FER+ majority (the only figures a
choice may be made on), `val/` (original and FER+ majority) and CK+48 with its share read as neutral.

A new head costs no training run of the networks: it shows in minutes what a votes weight does to a set of features,
before a run is spent on it. The features of the fitting faces come from networks trained on those faces, so a head
fitted on them may trust them more than faces it has not seen would deserve.
"""

from __future__ import annotations

import argparse
import itertools

import keras
import numpy as np

from ensemble_budget import VIEWS, ScoringSets, members_of, read_all
from fer_realtime.evaluation.compute import multiply_adds


def feature_reader(model):
    """The network up to its last dense layer, whose input is returned."""
    return keras.Model(model.inputs, model.layers[-1].input)


def fit_head(features: np.ndarray, targets: np.ndarray, epochs: int, seed: int = 0):
    """A softmax layer (dropout 0.5 before it, L2 1e-4) on standardised features; returns a function of features
    to probabilities."""
    mean, scale = features.mean(axis=0), features.std(axis=0) + 1e-3
    keras.utils.set_random_seed(seed)
    head = keras.Sequential([
        keras.Input((features.shape[1],)),
        keras.layers.Dropout(0.5),
        keras.layers.Dense(targets.shape[1], activation="softmax", kernel_regularizer=keras.regularizers.l2(1e-4)),
    ])
    head.compile(keras.optimizers.Adam(1e-3), "categorical_crossentropy")
    head.fit((features - mean) / scale, targets, batch_size=256, epochs=epochs, verbose=0, shuffle=True)
    return lambda x: head.predict((x - mean) / scale, batch_size=4096, verbose=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="+", metavar="MODEL")
    parser.add_argument("--data", default="../shared/datasets/fer2013", help="the training dataset (selection split)")
    parser.add_argument("--datasets", default="../shared/datasets", help="the scorecard's datasets")
    parser.add_argument("--votes-weights", default="0,0.2,0.3,0.5", help="comma-separated weights W of the votes")
    parser.add_argument("--max-gmac", type=float, default=0.3, help="multiply-adds per face, all views (GMAC)")
    parser.add_argument("--epochs", type=int, default=8, help="of each head's fit")
    args = parser.parse_args()
    weights = [float(w) for w in args.votes_weights.split(",")]
    if any(not 0 <= w <= 1 for w in weights):
        raise SystemExit("--votes-weights must lie in [0, 1].")

    members = members_of(args.models)
    scoring = ScoringSets.for_members(members, args.data, args.datasets)
    sets = {"fit": scoring.fit_faces, **scoring.faces}
    costs, features, own_heads = {}, {}, {}
    for name, model, metadata in members:
        costs[name] = multiply_adds(model) / 1e9
        features[name] = read_all(feature_reader(model), metadata, sets)  # (plain, mirrored) features per set
        own_heads[name] = model.layers[-1]
        print(f"read {name}: {costs[name]:.3f} GMAC per view, {features[name]['fit'][0].shape[1]} features",
              flush=True)

    onehot = np.eye(scoring.fit_shares.shape[1], dtype=np.float32)[scoring.fit_labels]
    names = [m[0] for m in members]
    print(f"\nheads over frozen features within {args.max_gmac} GMAC per face (float Keras; 'own': the members' own "
          "heads averaged)")
    print(f"{'members (views)':<56}{'GMAC':>6}{'votes W':>8}" + "".join(f"{c:>16}" for c in scoring.columns))
    for size in range(1, len(names) + 1):
        for subset in itertools.combinations(names, size):
            for view in VIEWS:
                mirrored = view == VIEWS[1]
                cost = sum(costs[n] for n in subset) * (2 if mirrored else 1)
                if cost > args.max_gmac + 1e-9:
                    continue

                def joined(set_name, which, subset=subset):
                    return np.concatenate([features[n][set_name][which] for n in subset], axis=1)

                def read(predict, set_name, mirrored=mirrored):
                    plain = predict(joined(set_name, 0))
                    return (plain + predict(joined(set_name, 1))) / 2 if mirrored else plain

                def own(x, subset=subset):
                    widths = np.cumsum([0] + [features[n]["fit"][0].shape[1] for n in subset])
                    return sum(keras.ops.convert_to_numpy(own_heads[n](x[:, a:b]))
                               for n, a, b in zip(subset, widths[:-1], widths[1:])) / len(subset)

                label = " + ".join(subset) + f" ({view})"
                fit_features = np.concatenate([joined("fit", 0), joined("fit", 1)])
                for weight in ["own", *weights]:
                    if weight == "own":
                        predict = own
                    else:
                        targets = onehot.copy()
                        has = scoring.fit_has_votes
                        targets[has] = (1 - weight) * onehot[has] + weight * scoring.fit_shares[has]
                        predict = fit_head(fit_features, np.concatenate([targets, targets]), args.epochs)
                    figures = scoring.figures({s: read(predict, s).argmax(axis=1) for s in scoring.faces})
                    print(f"{label:<56}{cost:>6.3f}{weight:>8}"
                          + "".join(f"{figures[c]:>16.4f}" for c in scoring.columns), flush=True)


if __name__ == "__main__":
    main()
