"""Distillation: a network trained towards a teacher's probabilities, resumable without the teacher."""

import numpy as np
import pytest

from fer_realtime.cli.main import main
from fer_realtime.core.errors import FerError
from fer_realtime.core.model_file import load_model, save_model
from fer_realtime.data.dataset import stratified_split
from fer_realtime.data.ferplus import VOTE_COLUMNS, read_votes
from fer_realtime.data.loader import load_dataset
from fer_realtime.training.distillation import TARGETS, Teacher, distillation_targets
from fer_realtime.training.run_state import load_state
from fer_realtime.training.recipes import recipe_config
from fer_realtime.training.trainer import train_classifier
from helpers import Interrupted, interrupt_before_epoch, write_train_val

TINY = dict(epochs=2, batch_size=16, stage_filters=(8, 16), convs_per_stage=(1, 1))
TEACHER_INIT_SEED = 7


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_train_val(tmp_path_factory.mktemp("data"), train_per_class=12)


@pytest.fixture(scope="module")
def train(data):
    return load_dataset(data).train


@pytest.fixture(scope="module")
def teacher_run(train, tmp_path_factory):
    """The teacher's training run (on the labels alone) and its model file."""
    folder = tmp_path_factory.mktemp("teacher")
    result = train_classifier(train, recipe_config("v2", **TINY, init_seed=TEACHER_INIT_SEED), folder / "run",
                              verbose=0)
    return result, save_model(result.model, result.metadata, folder / "teacher.keras")


@pytest.fixture(scope="module")
def teacher_file(teacher_run):
    return teacher_run[1]


def test_targets_mix_the_teachers_probabilities_with_the_labels():
    teacher = np.array([[0.6, 0.3, 0.1], [0.2, 0.2, 0.6]], np.float32)
    targets = distillation_targets(np.array([1, 2]), teacher, 0.25)
    np.testing.assert_allclose(targets, [[0.15, 0.825, 0.025], [0.05, 0.05, 0.9]], atol=1e-6)
    np.testing.assert_allclose(targets.sum(axis=1), 1.0, atol=1e-6)
    with pytest.raises(FerError, match="distill-weight"):
        distillation_targets(np.array([1, 2]), teacher, 0.0)
    # label targets given as rows (the labels mixed with the FER+ votes) are mixed as they are
    mixed = np.array([[0.0, 0.5, 0.5], [0.0, 0.0, 1.0]], np.float32)
    np.testing.assert_allclose(distillation_targets(mixed, teacher, 0.25), 0.25 * teacher + 0.75 * mixed, atol=1e-6)


def test_a_student_keeps_its_teachers_reading_and_continues_without_the_teacher(train, teacher_run, tmp_path):
    on_labels, teacher_file = teacher_run
    teacher = Teacher.load(teacher_file)
    config = recipe_config("v2", **TINY, teacher=teacher.digest, distill_weight=0.5)
    with pytest.raises(Interrupted):
        train_classifier(train, config, tmp_path / "cut", verbose=0, teacher=teacher,
                         callbacks=[interrupt_before_epoch(1)], handover=tmp_path / "handover.npz")
    fit, _ = stratified_split(train.labels, config.selection_fraction, config.seed)
    expected = teacher.probabilities(train.images[fit])
    kept = load_state(tmp_path / "handover.npz").extras[TARGETS]
    np.testing.assert_array_equal(kept, expected)  # float16 values: the compact state holds them exactly
    with np.load(tmp_path / "handover.npz") as saved:
        assert saved["x_" + TARGETS].dtype == np.float16

    # A fresh machine with only the handover file: no teacher needed.
    student = train_classifier(train, config, tmp_path / "fresh", verbose=0, handover=tmp_path / "handover.npz",
                               resume=True)
    assert student.metadata.training_data["teacher"]["weights_digest"] == teacher.digest
    assert student.metadata.training_data["config"]["distill_weight"] == 0.5

    # The targets are what it learns from: with the teacher alone as target the losses differ from the labels' (the
    # teacher's own run: the same network, initial weights and faces, fitted to the labels).
    alone = train_classifier(train, recipe_config("v2", **TINY, init_seed=TEACHER_INIT_SEED, teacher=teacher.digest,
                                                  distill_weight=1.0), tmp_path / "alone", verbose=0, teacher=teacher)
    assert alone.history["loss"][0] != pytest.approx(on_labels.history["loss"][0], rel=1e-3)


def test_a_student_learns_from_its_teacher_and_the_votes_together(data, train, teacher_file, tmp_path):
    """--teacher with --labels mix: each target is W x the teacher's probabilities + (1 - W) x the label mixed with
    the FER+ votes (here all ten annotators call every face neutral)."""
    rows = ["file,fer2013_label,ferplus_image," + ",".join(VOTE_COLUMNS)]
    for path in sorted((data / "train").rglob("*.png")):
        rows.append(f"train/{path.parent.name}/{path.name},{path.parent.name},x.png,"
                    + ",".join("10" if column == "neutral" else "0" for column in VOTE_COLUMNS))
    (tmp_path / "votes.csv").write_text("\n".join(rows) + "\n")
    votes = read_votes(tmp_path / "votes.csv")
    teacher = Teacher.load(teacher_file)
    distilled = dict(**TINY, init_seed=3, teacher=teacher.digest, distill_weight=0.5)
    with_votes = train_classifier(train, recipe_config("v2", **distilled, labels="mix", votes_weight=0.5),
                                  tmp_path / "votes", verbose=0, teacher=teacher, votes=votes)
    config = with_votes.metadata.training_data["config"]
    assert (config["labels"], config["votes_weight"], config["distill_weight"]) == ("mix", 0.5, 0.5)
    on_labels = train_classifier(train, recipe_config("v2", **distilled), tmp_path / "labels", verbose=0,
                                 teacher=teacher)
    assert with_votes.history["loss"][0] != pytest.approx(on_labels.history["loss"][0], rel=1e-3)


def test_a_teacher_must_be_given_and_share_the_selection_split(train, teacher_file, tmp_path):
    teacher = Teacher.load(teacher_file)
    with pytest.raises(FerError, match="give its model file"):
        train_classifier(train, recipe_config("v2", **TINY, teacher=teacher.digest, distill_weight=0.5),
                         tmp_path / "a", verbose=0)
    with pytest.raises(FerError, match="another selection split"):
        train_classifier(train, recipe_config("v2", **TINY, seed=99, teacher=teacher.digest, distill_weight=0.5),
                         tmp_path / "b", verbose=0, teacher=teacher)


def test_train_command_distils(data, teacher_file, tmp_path, capsys):
    out = tmp_path / "student.keras"
    assert main(["train", "--data", str(data), "--teacher", str(teacher_file), "--distill-weight", "0.7",
                 "--epochs", "1", "--batch-size", "16", "--out", str(out), "--cache-dir", str(tmp_path / "cache"),
                 "--verbose"]) == 0
    assert "reading the" in capsys.readouterr().out
    teacher = load_model(out).metadata.training_data["teacher"]
    assert teacher["file"] == "teacher.keras" and teacher["tta"]
    assert main(["train", "--data", str(data), "--distill-weight", "0.7", "--out", str(out)]) == 2
    assert "needs --teacher" in capsys.readouterr().err
    assert main(["train", "--data", str(data), "--teacher", str(teacher_file), "--distill-weight", "1.5",
                 "--out", str(out)]) == 2
    assert "--distill-weight must be in (0, 1]" in capsys.readouterr().err
    assert main(["train", "--data", str(data), "--teacher", str(tmp_path / "missing.keras"), "--out", str(out)]) == 2
    assert "missing.keras" in capsys.readouterr().err
