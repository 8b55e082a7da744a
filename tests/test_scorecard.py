"""The scorecard: val/ with both label sets, CK+48 with its share read as neutral, cost per face, and paired tests
against the reference, for several models side by side."""

import json

import pytest

from fer_realtime.cli.main import main
from fer_realtime.data.ferplus import VOTE_COLUMNS
from fer_realtime.evaluation.compute import cpu_description, multiply_adds
from helpers import save_tiny_model, tiny_model, write_class_folders


@pytest.fixture
def datasets(tmp_path):
    root = tmp_path / "datasets"
    write_class_folders(root / "fer2013" / "val", {"angry": 3, "happy": 3, "neutral": 2}, seed=1)
    rows = ["file,fer2013_label,ferplus_image," + ",".join(VOTE_COLUMNS)]
    for path in sorted((root / "fer2013" / "val").rglob("*.png")):
        votes = {"neutral": 10} if path.name.endswith("_000.png") else {path.parent.name: 10}
        rows.append(f"val/{path.parent.name}/{path.name},{path.parent.name},x.png,"
                    + ",".join(str(votes.get(c, 0)) for c in VOTE_COLUMNS))
    rows[-1] = rows[-1].rsplit(",", 10)[0] + ",0,0,0,0,0,0,0,0,10,0"  # the last face: "unknown" to the annotators
    (root / "fer2013" / "ferplus_votes.csv").write_text("\n".join(rows) + "\n")
    write_class_folders(root / "ckplus48", {"anger": 2, "contempt": 2, "happy": 2, "surprise": 1}, seed=2)
    return root


def test_scorecard_sets_models_side_by_side(tmp_path, datasets, capsys):
    reference = save_tiny_model(tmp_path / "reference.keras")
    candidate = save_tiny_model(tmp_path / "candidate.keras")
    assert main(["scorecard", str(candidate), "--reference", str(reference), "--datasets", str(datasets),
                 "--runs", "2", "--json"]) == 0
    card = json.loads(capsys.readouterr().out)
    assert [m["name"] for m in card["models"]] == ["reference.keras (reference)", "candidate.keras"]
    assert card["sets"]["val original"]["n"] == 8
    assert card["sets"]["val FER+"] == {"n": 7, "left_out": 1, "note": card["sets"]["val FER+"]["note"]}
    assert card["sets"]["CK+48"]["n"] == 5 and "contempt" in card["sets"]["CK+48"]["note"]
    ref, cand = card["models"]
    for model in card["models"]:
        assert set(model["sets"]) == {"val original", "val FER+", "CK+48"}
        assert model["ms_per_face"]["1"] > 0 and model["ms_per_face"]["8"] > 0
        assert model["gmac_per_face"] == pytest.approx(multiply_adds(tiny_model()) / 1e9)
    assert not ref["paired"] and set(cand["paired"]) == {"val original", "val FER+", "CK+48"}
    # Figures agree with `evaluate` on the same folders.
    assert main(["evaluate", str(datasets / "fer2013" / "val"), "--model", str(candidate), "--labels", "ferplus",
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["accuracy"] == cand["sets"]["val FER+"]["accuracy"]
    paired = cand["paired"]["CK+48"]
    assert paired["accuracy_a"] == cand["sets"]["CK+48"]["accuracy"]
    assert paired["accuracy_b"] == ref["sets"]["CK+48"]["accuracy"]

    assert main(["scorecard", str(candidate), "--reference", str(reference), "--datasets", str(datasets),
                 "--no-speed"]) == 0
    text = capsys.readouterr().out
    for line in ("val original (n 8)", "val FER+ (n 7)", "CK+48 (n 5)", "share read as neutral", "GMAC per face",
                 "1 faces left out", "McNemar"):
        assert line in text
    assert "ms per face" not in text
    assert cpu_description()[0] in text


def test_scorecard_without_data_says_what_it_needs(tmp_path, capsys):
    assert main(["scorecard", "--datasets", str(tmp_path), "--no-speed"]) == 2
    assert "No scorecard data found" in capsys.readouterr().err


def test_multiply_adds_of_known_layers():
    import keras

    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(4, 3, padding="same")(inputs)  # 8*8*4 outputs x 9 taps
    x = keras.layers.DepthwiseConv2D(3, padding="same")(x)  # 8*8*4 outputs x 9 taps
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(7)(x)  # 4 x 7
    assert multiply_adds(keras.Model(inputs, outputs)) == 8 * 8 * 4 * 9 * 2 + 4 * 7


def test_lite0_costs_what_its_paper_says():
    from fer_realtime.training.efficientnet_lite import EfficientNetLiteConfig, build_efficientnet_lite0

    # EfficientNet-Lite0 at 224 px: about 0.39 G multiply-adds (0.407 G published, with the small layers we skip).
    assert multiply_adds(build_efficientnet_lite0(EfficientNetLiteConfig(include_top=True))) == pytest.approx(
        0.39e9, rel=0.05)
