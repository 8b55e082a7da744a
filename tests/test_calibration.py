import numpy as np

from fer_realtime.evaluation.metrics import evaluate_predictions
from fer_realtime.inference.calibration import apply_temperature, expected_calibration_error, fit_temperature, log_loss


def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _calibrated_sample(n=6000, seed=0):
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 2, (n, 7))
    truth = _softmax(logits)
    labels = np.array([rng.choice(7, p=p) for p in truth])
    return logits, truth, labels


def test_temperature_undoes_overconfidence_and_keeps_the_top_class():
    logits, truth, labels = _calibrated_sample()
    overconfident = _softmax(logits * 2.0)  # as if divided by T = 0.5
    temperature = fit_temperature(overconfident, labels)
    assert 1.8 < temperature < 2.2
    fixed = apply_temperature(overconfident, temperature)
    np.testing.assert_array_equal(fixed.argmax(axis=1), overconfident.argmax(axis=1))
    assert log_loss(fixed, labels) < log_loss(overconfident, labels)
    assert expected_calibration_error(fixed, labels) < 0.03 < expected_calibration_error(overconfident, labels)
    np.testing.assert_allclose(fixed.sum(axis=1), 1.0, atol=1e-5)
    assert apply_temperature(truth, 1.0) is truth


def test_calibrated_probabilities_have_small_error():
    _, truth, labels = _calibrated_sample(seed=1)
    assert expected_calibration_error(truth, labels) < 0.03
    assert 0.8 < fit_temperature(truth, labels) < 1.2


def test_absent_classes_have_no_recall_and_macro_recall_skips_them():
    true = np.array([0, 0, 1, 1, 1, 1])
    predicted = np.array([0, 2, 1, 1, 1, 0])
    report = evaluate_predictions(true, predicted, ["a", "b", "c"])
    assert report.per_class["c"]["recall"] is None and report.per_class["c"]["precision"] == 0.0
    assert report.macro_recall == (0.5 + 0.75) / 2
    text = report.format_text()
    assert "macro recall 0.6250 (mean over the 2 classes present)" in text
    assert [line.split() for line in text.splitlines() if line.startswith("c ")][0] == ["c", "0", "–", "0.0000"]
    never_predicted = evaluate_predictions(np.array([0, 1]), np.array([0, 0]), ["a", "b"])
    assert never_predicted.per_class["b"]["precision"] is None
