import numpy as np
import pytest

from fer_realtime.core.model_file import load_model
from fer_realtime.inference import engine as engine_module
from fer_realtime.inference.engine import InferenceEngine
from helpers import save_tiny_model


@pytest.fixture(scope="module")
def tiny_loaded(tmp_path_factory):
    return load_model(save_tiny_model(tmp_path_factory.mktemp("engine") / "m.keras"))


def test_any_batch_size_runs_through_one_traced_graph(tiny_loaded):
    engine = InferenceEngine(tiny_loaded, runtime="tensorflow")
    engine.warm_up()
    rng = np.random.default_rng(0)
    for n in (1, 3, 8, 2, 16):
        out = engine.predict(rng.random((n, 48, 48, 1), dtype=np.float32))
        assert out.shape == (n, 7)
        np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-5)
    assert engine._forward.experimental_get_tracing_count() == 1
    assert engine.predict(np.zeros((0, 48, 48, 1), np.float32)).shape == (0, 7)
    assert engine.device.startswith(("CPU", "GPU"))
    assert engine.runtime == "TensorFlow graph"


@pytest.mark.parametrize("runtime", ["auto", "tensorflow"])
def test_batched_equals_one_by_one(tiny_loaded, runtime):
    engine = InferenceEngine(tiny_loaded, runtime=runtime)
    batch = np.random.default_rng(1).random((4, 48, 48, 1), dtype=np.float32)
    together = engine.predict(batch)
    alone = np.concatenate([engine.predict(batch[i : i + 1]) for i in range(4)])
    np.testing.assert_allclose(together, alone, atol=1e-5)


def test_tflite_runtime_matches_the_tensorflow_graph(tiny_loaded):
    fast = InferenceEngine(tiny_loaded, runtime="auto")
    graph = InferenceEngine(tiny_loaded, runtime="tensorflow")
    rng = np.random.default_rng(2)
    for n in (1, 4, 8, 12):  # 12 is above MAX_TFLITE_BATCH: the graph answers
        batch = rng.random((n, 48, 48, 1), dtype=np.float32)
        np.testing.assert_allclose(fast.predict(batch), graph.predict(batch), atol=1e-4)
    if fast.device == "CPU":
        assert fast.tflite_problem == ""
        assert sorted(fast._interpreters) == [1, 4, 8]
        assert fast.runtime.startswith("TFLite")


def test_a_conversion_that_disagrees_is_not_used(tiny_loaded, monkeypatch):
    monkeypatch.setattr(engine_module, "TFLITE_TOLERANCE", -1.0)  # no conversion can pass this check
    engine = InferenceEngine(tiny_loaded, runtime="auto")
    batch = np.random.default_rng(3).random((2, 48, 48, 1), dtype=np.float32)
    expected = InferenceEngine(tiny_loaded, runtime="tensorflow").predict(batch)
    np.testing.assert_allclose(engine.predict(batch), expected, atol=1e-6)
    if engine.device == "CPU":
        assert "differs from the Keras model" in engine.tflite_problem
        assert engine.runtime == "TensorFlow graph"


def test_flip_averaging_is_the_mean_of_face_and_mirror(tmp_path):
    import dataclasses

    loaded = load_model(save_tiny_model(tmp_path / "m.keras"))
    flipped = dataclasses.replace(loaded, metadata=dataclasses.replace(loaded.metadata, flip_tta=True))
    plain = InferenceEngine(loaded, runtime="tensorflow")
    batch = np.random.default_rng(4).random((3, 48, 48, 1), dtype=np.float32)
    expected = (plain.predict(batch) + plain.predict(batch[:, :, ::-1])) / 2
    for runtime in ("auto", "tensorflow"):
        np.testing.assert_allclose(InferenceEngine(flipped, runtime=runtime).predict(batch), expected, atol=1e-5)
