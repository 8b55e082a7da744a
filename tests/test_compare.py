import json

from fer_realtime.cli.main import main
from fer_realtime.core.model_file import load_model
from fer_realtime.evaluation.charts import comparison_png, history_csv
from helpers import write_class_folders

CLASSES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")


def test_compare_cnn_and_rnn_writes_chart_history_and_models(tmp_path, capsys):
    write_class_folders(tmp_path / "data" / "train", {c: 8 for c in CLASSES}, seed=1)
    write_class_folders(tmp_path / "data" / "val", {c: 2 for c in CLASSES}, seed=2)
    out = tmp_path / "cmp"
    code = main(["compare", "--data", str(tmp_path / "data"), "--archs", "cnn,rnn", "--epochs", "2",
                 "--batch-size", "16", "--out", str(out)])
    assert code == 0
    history = json.loads((out / "history.json").read_text())
    assert "val split" in history["heldout"]
    for arch in ("cnn", "rnn"):
        h = history["models"][arch]
        assert h["epoch"] == [1, 2] and len(h["accuracy"]) == 2 and len(h["heldout_accuracy"]) == 2
        assert load_model(out / f"cmp-{arch}.keras").metadata.architecture == arch
    assert (out / "comparison.png").read_bytes().startswith(b"\x89PNG")
    text = capsys.readouterr().out
    assert "held-out" in text and "rnn" in text


def test_chart_and_csv_exports():
    rows = [{"model": m, "epoch": e, "stage": "", "train_accuracy": 0.1 * e, "heldout_accuracy": 0.08 * e,
             "train_loss": 1.0, "heldout_loss": 1.1} for m in ("cnn", "rnn") for e in (1, 2, 3)]
    assert comparison_png(rows).startswith(b"\x89PNG")
    lines = history_csv(rows).splitlines()
    assert lines[0] == "model,epoch,stage,train_accuracy,heldout_accuracy,train_loss,heldout_loss"
    assert len(lines) == 7


def test_train_transfer_in_stages_from_a_fer_model(tmp_path, capsys):
    from helpers import save_tiny_model

    base = save_tiny_model(tmp_path / "base.keras")
    write_class_folders(tmp_path / "data", {c: 6 for c in CLASSES}, seed=3)  # no split: stratified held-out part
    out = tmp_path / "transfer.keras"
    code = main(["train", "--data", str(tmp_path / "data"), "--arch", "transfer", "--epochs", "3",
                 "--batch-size", "16", "--transfer-base", "fer", "--transfer-weights", str(base), "--out", str(out)])
    assert code == 0
    meta = load_model(out).metadata
    stages = meta.metrics["stages"]
    assert stages[0]["stage"] == "head" and len(stages) == 3
    assert [s["learning_rate"] for s in stages] == sorted((s["learning_rate"] for s in stages), reverse=True)
    assert any("base.keras" in note for note in meta.training_data["notes"])
    assert "stratified" in meta.metrics["heldout_data"]
