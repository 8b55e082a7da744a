"""FER+ votes: reading them, the majority with its left-out faces, vote-share targets, and `evaluate --labels`."""

import json

import numpy as np
import pytest

from fer_realtime.cli.main import main
from fer_realtime.core.errors import DatasetError
from fer_realtime.core.labels import EMOTIONS
from fer_realtime.data.ferplus import VOTE_COLUMNS, find_votes, read_votes, training_targets
from fer_realtime.data.loader import load_dataset
from helpers import save_tiny_model, write_class_folders

HEADER = "file,fer2013_label,ferplus_image," + ",".join(VOTE_COLUMNS)


def _row(file: str, **votes) -> str:
    return ",".join([file, "x", "fer0.png", *(str(votes.get(c, 0)) for c in VOTE_COLUMNS)])


def write_votes(path, rows) -> None:
    path.write_text("\n".join([HEADER, *rows]) + "\n")


def test_majority_leaves_out_ties_and_non_emotions_and_shares_drop_them(tmp_path):
    write_votes(tmp_path / "votes.csv", [
        _row("train/angry/a.png", angry=6, sad=4),
        _row("train/angry/tie.png", angry=5, neutral=5),
        _row("train/fear/c.png", contempt=6, fear=4),
        _row("train/fear/u.png", unknown=7, not_face=3),
        _row("train/sad/n.png", neutral=9, sad=1),
    ])
    votes = read_votes(tmp_path / "votes.csv")
    files = ["angry/a.png", "angry/tie.png", "fear/c.png", "fear/u.png", "sad/n.png", "sad/none.png"]
    labels, kept = votes.majority(files)
    assert kept.tolist() == [True, False, False, False, True, False]
    assert [EMOTIONS[i] for i in labels[kept]] == ["angry", "neutral"]
    shares, has = votes.shares(files)
    assert has.tolist() == [True, True, True, False, True, False]
    assert np.allclose(shares.sum(axis=1)[has], 1.0)
    assert shares[2, EMOTIONS.index("fear")] == 1.0  # contempt's votes dropped, fear's kept
    assert shares[0, EMOTIONS.index("angry")] == pytest.approx(0.6)


def test_targets_mix_the_label_with_the_vote_shares(tmp_path):
    write_votes(tmp_path / "votes.csv", [_row("sad/n.png", neutral=8, sad=2)])
    votes = read_votes(tmp_path / "votes.csv")
    labels = np.array([EMOTIONS.index("sad"), EMOTIONS.index("happy")])
    targets, with_votes = training_targets(labels, ["sad/n.png", "happy/x.png"], 7, votes, 0.5)
    assert with_votes == 1
    assert targets[0, EMOTIONS.index("sad")] == pytest.approx(0.5 + 0.5 * 0.2)
    assert targets[0, EMOTIONS.index("neutral")] == pytest.approx(0.4)
    assert targets[1].tolist() == np.eye(7)[EMOTIONS.index("happy")].tolist()  # no votes: its own label
    assert np.allclose(training_targets(labels, ["sad/n.png", "h.png"], 7, votes, 0.0)[0], np.eye(7)[labels])


def test_bad_votes_files_get_one_sentence(tmp_path):
    (tmp_path / "a.csv").write_text("file,angry\nx.png,1\n")
    with pytest.raises(DatasetError, match="not a FER\\+ votes file"):
        read_votes(tmp_path / "a.csv")
    write_votes(tmp_path / "b.csv", [_row("x.png").replace(",0,", ",many,", 1)])
    with pytest.raises(DatasetError, match="line 2"):
        read_votes(tmp_path / "b.csv")
    with pytest.raises(DatasetError, match="cannot be read"):
        read_votes(tmp_path / "missing.csv")


def test_dataset_faces_carry_their_files_through_the_cache(tmp_path):
    write_class_folders(tmp_path / "data" / "train", {"happy": 2, "sad": 1})
    first = load_dataset(tmp_path / "data", cache_dir=tmp_path / "cache").train
    cached = load_dataset(tmp_path / "data", cache_dir=tmp_path / "cache").train
    assert first.files == cached.files == ("happy/happy_000.png", "happy/happy_001.png", "sad/sad_000.png")
    assert find_votes(tmp_path / "data" / "train") is None


def test_evaluate_reads_the_folders_or_the_ferplus_majority(tmp_path, capsys):
    root = tmp_path / "fer"
    write_class_folders(root / "val", {"angry": 3, "happy": 3})
    write_votes(root / "ferplus_votes.csv", [
        *(_row(f"val/angry/angry_00{i}.png", happy=10) for i in range(3)),
        _row("val/happy/happy_000.png", happy=10), _row("val/happy/happy_001.png", unknown=10),
    ])
    model = save_tiny_model(tmp_path / "m.keras")
    assert main(["evaluate", str(root / "val"), "--model", str(model), "--json"]) == 0
    original = json.loads(capsys.readouterr().out)
    assert original["n"] == 6 and original["labels"] == "original" and original["left_out"] == 0
    assert main(["evaluate", str(root / "val"), "--model", str(model), "--labels", "ferplus", "--json"]) == 0
    ferplus = json.loads(capsys.readouterr().out)
    assert ferplus["n"] == 4 and ferplus["left_out"] == 2  # one "unknown" majority, one without votes
    assert ferplus["per_class"]["happy"]["n"] == 4 and ferplus["per_class"]["angry"]["n"] == 0
    assert main(["evaluate", str(root / "val"), "--model", str(model), "--labels", "ferplus"]) == 0
    assert "2 of 6 faces left out" in capsys.readouterr().out
    (root / "ferplus_votes.csv").unlink()
    assert main(["evaluate", str(root / "val"), "--model", str(model), "--labels", "ferplus"]) == 2
    assert "needs the FER+ votes" in capsys.readouterr().err
