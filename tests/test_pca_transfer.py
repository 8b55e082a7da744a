"""Staged fine-tuning (plan_stages / apply_stage / run_staged_training) and the optional PCA reduction."""

import keras
import numpy as np
import pytest

from fer_realtime.core.errors import FerError
from fer_realtime.core.model_file import ModelMetadata, Preprocessing, load_model, save_model
from fer_realtime.core.preprocessing import normalize
from fer_realtime.training.architectures import CNNConfig, TransferConfig, build_cnn, build_transfer
from fer_realtime.training.pca import PCAError, PCAReducer, with_pca_front
from fer_realtime.training.transfer import apply_stage, plan_stages, run_staged_training

BLOCKS = [["a1", "a2"], ["b1"], ["c1", "c2"]]


@pytest.fixture(scope="module")
def transfer(tmp_path_factory):
    keras.utils.set_random_seed(5)
    path = tmp_path_factory.mktemp("fer") / "small_cnn.keras"
    save_model(build_cnn(CNNConfig(stage_filters=(4, 8), convs_per_stage=(1, 1))), ModelMetadata(), path)
    return build_transfer(TransferConfig(base="fer", weights_path=str(path), head_units=8, augment=False))


def trainable_layer_names(model):
    return {w.path.split("/")[-2] for w in model.trainable_weights}


# ---------------------------------------------------------------------------------------------------- stages


def test_plan_stages_unfreezes_one_more_block_from_the_top_at_falling_rates():
    stages = plan_stages(BLOCKS, head_epochs=3, epochs_per_stage=2, base_lr=1e-3)
    assert [s.index for s in stages] == [0, 1, 2, 3]
    assert stages[0].trainable_layers == () and set(stages[0].frozen_layers) == {"a1", "a2", "b1", "c1", "c2"}
    assert stages[1].trainable_layers == ("c1", "c2") and stages[1].frozen_layers == ("a1", "a2", "b1")
    assert stages[2].trainable_layers == ("b1", "c1", "c2")
    assert stages[3].trainable_layers == ("a1", "a2", "b1", "c1", "c2") and stages[3].frozen_layers == ()
    rates = [s.learning_rate for s in stages]
    assert all(later < earlier for earlier, later in zip(rates, rates[1:]))
    np.testing.assert_allclose(rates, [1e-3 * 0.3**k for k in range(4)])
    assert [s.epochs for s in stages] == [3, 2, 2, 2]
    assert stages[0].name == "head" and "(c)" in stages[1].name
    assert len(plan_stages(BLOCKS, 1, 1, 1e-3, max_unfrozen_blocks=1)) == 2
    assert len(plan_stages(BLOCKS, 1, 1, 1e-3, max_unfrozen_blocks=0)) == 1
    assert len(plan_stages(BLOCKS, 1, 1, 1e-3, max_unfrozen_blocks=99)) == 4
    assert "stage9" in plan_stages(BLOCKS, 1, 1, 1e-3, block_names=["x", "y", "stage9"])[1].name


@pytest.mark.parametrize("kwargs", [dict(base_lr=0), dict(lr_decay=1.0), dict(lr_decay=0), dict(head_epochs=0),
                                    dict(epochs_per_stage=0), dict(max_unfrozen_blocks=-1)])
def test_plan_stages_rejects_bad_parameters(kwargs):
    args = dict(head_epochs=1, epochs_per_stage=1, base_lr=1e-3) | kwargs
    with pytest.raises(ValueError):
        plan_stages(BLOCKS, **args)
    with pytest.raises(ValueError):
        plan_stages([], 1, 1, 1e-3)


def test_apply_stage_trains_the_head_then_the_top_blocks_with_batchnorm_frozen(transfer):
    model, stages = transfer.model, plan_stages(transfer.backbone_blocks, 1, 1, 1e-3)
    apply_stage(model, stages[0])
    assert trainable_layer_names(model) == {"head_dense", "emotion"}
    apply_stage(model, stages[1])
    assert trainable_layer_names(model) == {"head_dense", "emotion", "stage2_conv1"}
    assert not model.get_layer("backbone").get_layer("stage2_bn1").trainable  # inference-mode statistics
    apply_stage(model, stages[2])
    assert trainable_layer_names(model) == {"head_dense", "emotion", "stage1_conv1", "stage2_conv1"}
    apply_stage(model, stages[0])
    assert trainable_layer_names(model) == {"head_dense", "emotion"}


def test_apply_stage_finds_layers_behind_a_pca_front(transfer):
    rng = np.random.default_rng(0)
    pca = PCAReducer.fit(rng.integers(0, 256, (20, 48, 48), dtype=np.uint8), n_components=5)
    wrapped = with_pca_front(transfer.model, pca)
    stages = plan_stages(transfer.backbone_blocks, 1, 1, 1e-3)
    apply_stage(wrapped, stages[1])
    assert trainable_layer_names(wrapped) == {"head_dense", "emotion", "stage2_conv1"}
    apply_stage(wrapped, stages[0])
    assert trainable_layer_names(wrapped) == {"head_dense", "emotion"}
    with pytest.raises(ValueError, match="no layers named"):
        apply_stage(wrapped, plan_stages([["nope"]], 1, 1, 1e-3)[0])


def test_run_staged_training_records_each_stage_and_can_keep_the_best(transfer):
    model = transfer.model
    stages = plan_stages(transfer.backbone_blocks, head_epochs=2, epochs_per_stage=1, base_lr=1e-2)
    seen = []

    def fake_fit(m, stage):
        seen.append((stage.index, float(m.optimizer.learning_rate), len(m.trainable_weights)))
        head = m.get_layer("emotion")
        head.set_weights([w + 1.0 for w in head.get_weights()])  # "training" changes the weights
        return {"accuracy": [0.1 * (stage.index + 1)] * stage.epochs, "val_accuracy": [0.5] * stage.epochs}

    result = run_staged_training(model, stages, fake_fit)
    assert [(i, round(lr, 8)) for i, lr, _ in seen] == [(0, 1e-2), (1, 3e-3), (2, 9e-4)]
    assert [n for *_, n in seen] == [4, 5, 6]  # head (2 Dense) + one more conv kernel per stage
    assert [len(r.history["accuracy"]) for r in result.records] == [2, 1, 1]
    assert [r.heldout_accuracy for r in result.records] == [0.5, 0.5, 0.5]
    combined = result.combined_history()
    assert combined["epoch"] == [1, 2, 3, 4] and combined["stage"][:2] == ["head", "head"]

    accuracies = iter([0.6, 0.4, 0.3])
    snapshots = []

    def fit_and_snapshot(m, stage):
        fake_fit(m, stage)
        snapshots.append(m.get_layer("emotion").get_weights())
        return {}

    result = run_staged_training(model, stages, fit_and_snapshot, evaluate_fn=lambda m: next(accuracies),
                                 keep_best=True)
    assert [r.heldout_accuracy for r in result.records] == [0.6, 0.4, 0.3]
    assert result.restored_stage == 0
    for restored, kept in zip(model.get_layer("emotion").get_weights(), snapshots[0]):
        np.testing.assert_array_equal(restored, kept)


def test_run_staged_training_with_a_real_tiny_fit(transfer):
    keras.utils.set_random_seed(2)
    rng = np.random.default_rng(2)
    x, y = rng.random((30, 48, 48, 1), dtype=np.float32), rng.integers(0, 7, 30)
    stages = plan_stages(transfer.backbone_blocks, 1, 1, 1e-3, max_unfrozen_blocks=1)

    def fit(model, stage):
        return model.fit(x[:24], y[:24], validation_data=(x[24:], y[24:]), epochs=stage.epochs, batch_size=12,
                         verbose=0).history

    def compile_eagerly(model, stage):  # tracing costs more than these few batches
        model.compile(optimizer=keras.optimizers.Adam(stage.learning_rate), loss="sparse_categorical_crossentropy",
                      metrics=["accuracy"], run_eagerly=True)

    result = run_staged_training(transfer.model, stages, fit, compile_fn=compile_eagerly)
    assert len(result.records) == 2
    for record in result.records:
        assert len(record.history["loss"]) == 1 and np.isfinite(record.history["loss"][0])
        assert 0.0 <= record.heldout_accuracy <= 1.0


# ------------------------------------------------------------------------------------------------------- PCA


def rank5_faces(n, seed, noise=0.5, shape=(16, 16)):
    """Images spanned by 5 fixed basis images (plus tiny noise): the data has rank 5."""
    basis = np.random.default_rng(42).normal(size=(5, *shape))
    rng = np.random.default_rng(seed)
    coefficients = rng.normal(size=(n, 5)) * np.array([9.0, 8.0, 7.0, 6.0, 5.0])
    images = 128 + np.einsum("nk,khw->nhw", coefficients, basis) + rng.normal(0, noise, (n, *shape))
    return np.clip(np.rint(images), 0, 255).astype(np.uint8)


# Fewer images than pixels (thin SVD), more (covariance, full eigen-solver) and many more pixels (covariance,
# randomized leading eigenpairs).
@pytest.mark.parametrize("n, shape", [(100, (16, 16)), (600, (16, 16)), (1100, (32, 32))])
def test_pca_finds_the_rank_and_keeps_the_requested_variance(n, shape):
    train = rank5_faces(n, seed=0, shape=shape)
    pca = PCAReducer.fit(train, variance=0.99)
    assert pca.n_components == 5
    assert pca.variance_retained >= 0.99 and pca.variance_requested == 0.99
    assert np.all(np.diff(pca.explained_variance_ratio_) <= 0)
    np.testing.assert_allclose(pca.components_ @ pca.components_.T, np.eye(5), atol=1e-5)
    assert PCAReducer.fit(train, variance=0.5).n_components < 5
    assert PCAReducer.fit(train, n_components=3).n_components == 3


def test_pca_reconstructs_from_the_training_fit_only():
    train, other = rank5_faces(200, seed=0), rank5_faces(50, seed=1)
    pca = PCAReducer.fit(train, variance=0.99)
    mean, components = pca.mean_.copy(), pca.components_.copy()
    rebuilt = pca.reconstruct(other)
    np.testing.assert_array_equal(pca.mean_, mean)  # transforming other data does not refit
    np.testing.assert_array_equal(pca.components_, components)
    np.testing.assert_allclose(pca.mean_, train.reshape(200, -1).mean(axis=0), atol=1e-3)
    assert rebuilt.dtype == np.uint8 and rebuilt.shape == other.shape
    assert np.abs(rebuilt.astype(int) - other).max() <= 3  # in the span: only the noise is removed
    assert pca.reconstruct(other[..., None]).shape == (50, 16, 16, 1)
    assert pca.transform(other).shape == (50, 5)
    noise = np.random.default_rng(3).integers(0, 256, (4, 16, 16), dtype=np.uint8)
    assert np.abs(pca.reconstruct(noise).astype(int) - noise).mean() > 20  # out of the span: not kept
    with pytest.raises(PCAError, match="16x16"):
        pca.transform(np.zeros((2, 8, 8), np.uint8))


def test_pca_round_trips_through_dict_and_npz(tmp_path):
    import json

    pca = PCAReducer.fit(rank5_faces(100, seed=0), n_components=4)
    record = json.loads(json.dumps(pca.to_dict()))
    for copy in (PCAReducer.from_dict(record), PCAReducer.load(pca.save(tmp_path / "pca.npz"))):
        assert copy.n_components == 4 and copy.variance_requested is None
        np.testing.assert_array_equal(copy.components_, pca.components_)
        np.testing.assert_array_equal(copy.mean_, pca.mean_)
        np.testing.assert_allclose(copy.explained_variance_ratio_, pca.explained_variance_ratio_)
    assert "components" not in pca.to_dict(include_arrays=False)
    with pytest.raises(PCAError):
        PCAReducer.from_dict(record | {"components": record["mean"]})


@pytest.mark.parametrize("kwargs", [dict(variance=0.0), dict(variance=1.5), dict(variance=-0.1),
                                    dict(n_components=0), dict(n_components=51), dict(n_components=2.5),
                                    dict(variance=0.9, n_components=3)])
def test_pca_rejects_bad_parameters(kwargs):
    images = rank5_faces(50, seed=0)
    with pytest.raises(PCAError) as info:
        PCAReducer.fit(images, **kwargs)
    assert isinstance(info.value, FerError) and isinstance(info.value, ValueError)


def test_pca_accepts_the_bounds():
    images = rank5_faces(50, seed=0)
    assert PCAReducer.fit(images, n_components=50).n_components == 50  # min(N, H*W)
    assert PCAReducer.fit(images, variance=1.0).variance_retained == pytest.approx(1.0)


def test_pca_rejects_bad_images():
    with pytest.raises(PCAError, match="at least 2"):
        PCAReducer.fit(np.zeros((1, 8, 8), np.uint8), n_components=1)
    with pytest.raises(PCAError, match="identical"):
        PCAReducer.fit(np.full((5, 8, 8), 7, np.uint8))
    with pytest.raises(PCAError, match="shaped"):
        PCAReducer.fit(np.zeros((5, 64), np.uint8))


def test_pca_front_matches_reconstruct_and_loads_in_safe_mode(tmp_path):
    rng = np.random.default_rng(0)
    train = rank5_faces(60, seed=0, shape=(48, 48))
    pca = PCAReducer.fit(train, variance=0.99)
    inner = keras.Sequential([keras.Input((48, 48, 1)), keras.layers.Flatten(), keras.layers.Dense(7, "softmax")])
    prep = Preprocessing(scale=2 / 255, offset=-1.0)
    model = with_pca_front(inner, pca, prep)
    assert [id(w) for w in model.trainable_weights] == [id(w) for w in inner.trainable_weights]  # PCA never trains
    faces = rng.integers(0, 256, (3, 48, 48), dtype=np.uint8)
    x = normalize(faces, prep)
    rebuilt = np.clip(pca.inverse_transform(pca.transform(faces)), 0, 255)[..., None] * prep.scale + prep.offset
    np.testing.assert_allclose(model(x, training=False), inner(rebuilt, training=False), atol=1e-4)
    rounded = inner(normalize(pca.reconstruct(faces), prep), training=False)  # the same up to whole grey levels
    np.testing.assert_allclose(model(x, training=False), rounded, atol=1e-2)
    path = save_model(model, ModelMetadata(training_data={"pca": pca.to_dict(include_arrays=False)}),
                      tmp_path / "pca_model.keras")
    np.testing.assert_allclose(load_model(path).model(x, training=False), model(x, training=False), atol=1e-6)
