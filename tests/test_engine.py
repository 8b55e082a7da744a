import numpy as np

from fer_realtime.engine import InferenceEngine
from fer_realtime.model_io import load_model
from helpers import save_tiny_model


def test_any_batch_size_runs_through_one_traced_graph(tmp_path):
    engine = InferenceEngine(load_model(save_tiny_model(tmp_path / "m.keras")))
    engine.warm_up()
    rng = np.random.default_rng(0)
    for n in (1, 3, 8, 2, 16):
        out = engine.predict(rng.random((n, 48, 48, 1), dtype=np.float32))
        assert out.shape == (n, 7)
        np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-5)
    assert engine._forward.experimental_get_tracing_count() == 1
    assert engine.predict(np.zeros((0, 48, 48, 1), np.float32)).shape == (0, 7)
    assert engine.device.startswith(("CPU", "GPU"))


def test_batched_equals_one_by_one(tmp_path):
    engine = InferenceEngine(load_model(save_tiny_model(tmp_path / "m.keras")))
    batch = np.random.default_rng(1).random((4, 48, 48, 1), dtype=np.float32)
    together = engine.predict(batch)
    alone = np.concatenate([engine.predict(batch[i : i + 1]) for i in range(4)])
    np.testing.assert_allclose(together, alone, atol=1e-5)
