"""SharpnessAware against a NumPy reference of SAM and ASAM on linear least squares (analytic gradients), and as a
drop-in model: fit, evaluate, predict, BatchNorm, jit, MirroredStrategy, saving."""

import keras
import numpy as np
import pytest
from references import batches, mse_gradient

from tfopt.models.sharpness_aware import SharpnessAware


def numpy_sharpness_aware(data, steps, learning_rate, rho, adaptive=False, eta=0.01):
    """SGD on the SAM / ASAM gradient of `mean((x @ w - y) ** 2)`, as SharpnessAware's docstring writes it."""
    w = np.ones((4, 1))
    for x, y in batches(data)[:steps]:
        g = mse_gradient(w, x, y)
        t = np.abs(w) + eta if adaptive else 1.0
        e = rho * t * (t * g) / (np.linalg.norm(t * g) + 1e-12)
        w = w - learning_rate * mse_gradient(w + e, x, y)
    return w


def sharpness_aware(inner, rho=0.1, adaptive=False, learning_rate=0.05, **compile_kwargs):
    model = SharpnessAware(inner, rho=rho, adaptive=adaptive)
    model.compile(keras.optimizers.SGD(learning_rate), "mse", **compile_kwargs)
    return model


@pytest.mark.parametrize(
    "adaptive, rho, steps, jit_compile",
    [(False, 0.1, 1, False), (False, 0.1, 12, True), (True, 0.5, 1, False), (True, 0.5, 12, True)],
    ids=["sam_one_step", "sam_12_steps_jit", "asam_one_step", "asam_12_steps_jit"],
)
def test_matches_numpy_reference(adaptive, rho, steps, jit_compile, linear_model, regression_data):
    x, y = regression_data
    model = sharpness_aware(linear_model("sgd", use_bias=False), rho, adaptive, jit_compile=jit_compile)
    epochs, samples = (1, 16) if steps == 1 else (3, 64)
    model.fit(x[:samples], y[:samples], batch_size=16, epochs=epochs, shuffle=False, verbose=0)
    expected = numpy_sharpness_aware(regression_data, steps, 0.05, rho, adaptive)
    np.testing.assert_allclose(model.model.get_weights()[0], expected, rtol=1e-5, atol=1e-6)


def test_logs_the_loss_at_the_unperturbed_weights(linear_model, regression_data):
    x, y = regression_data
    model = sharpness_aware(linear_model("sgd", use_bias=False), rho=0.5)
    history = model.fit(x[:16], y[:16], batch_size=16, epochs=1, verbose=0)
    expected = np.mean((x[:16].astype("float64") @ np.ones((4, 1)) - y[:16]) ** 2)
    assert history.history["loss"][0] == pytest.approx(expected, rel=1e-6)


def test_batch_norm_statistics_move_in_the_first_pass_only(regression_data):
    x, y = regression_data
    inner = keras.Sequential([keras.Input((4,)), keras.layers.BatchNormalization(momentum=0.9), keras.layers.Dense(1)])
    sharpness_aware(inner).fit(x[:16], y[:16], batch_size=16, epochs=1, verbose=0)
    batch_norm = inner.layers[0]
    np.testing.assert_allclose(batch_norm.moving_mean.numpy(), 0.1 * x[:16].mean(axis=0), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(batch_norm.moving_variance.numpy(), 0.9 + 0.1 * x[:16].var(axis=0), rtol=1e-5)


def classifier():
    keras.utils.set_random_seed(0)
    return keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(16, "relu"), keras.layers.BatchNormalization(),
         keras.layers.Dropout(0.1), keras.layers.Dense(2, "softmax")]
    )


def test_loss_decreases_on_a_small_classifier(regression_data):
    x, y = regression_data
    labels = (y[:, 0] > 0).astype("int32")
    model = SharpnessAware(classifier(), rho=0.05)
    model.compile(keras.optimizers.Adam(0.02), "sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(x, labels, batch_size=16, epochs=4, verbose=0).history
    assert sorted(history) == ["accuracy", "loss"]
    assert history["loss"][-1] < 0.6 * history["loss"][0]


def mlp():
    keras.utils.set_random_seed(1)
    return keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, "relu"), keras.layers.Dense(1)])


def test_mirrored_strategy_matches_one_device(regression_data, mirrored_strategy):
    x, y = regression_data
    one_device = sharpness_aware(mlp(), rho=0.2)
    one_device.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0)
    with mirrored_strategy.scope():
        distributed = sharpness_aware(mlp(), rho=0.2)
    distributed.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0)
    for actual, expected in zip(distributed.get_weights(), one_device.get_weights()):
        np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-6)


def test_evaluate_and_predict_are_the_inner_models(regression_data):
    x, y = regression_data
    inner = mlp()
    model = sharpness_aware(inner, metrics=["mae"])
    inner.compile("sgd", "mse", metrics=["mae"])
    assert model.evaluate(x, y, verbose=0) == pytest.approx(inner.evaluate(x, y, verbose=0), rel=1e-6)
    np.testing.assert_array_equal(model.predict(x, verbose=0), inner.predict(x, verbose=0))


def test_config_round_trip():
    model = SharpnessAware(mlp(), rho=0.3, adaptive=True, eta=0.02, name="sam")
    again = SharpnessAware.from_config(model.get_config())
    assert again.get_config() == model.get_config()
    assert (again.name, again.rho, again.adaptive, again.eta) == ("sam", 0.3, True, 0.02)


def test_keras_file_round_trip_and_inner_model_alone(regression_data, tmp_path):
    x, y = regression_data
    model = SharpnessAware(mlp(), rho=0.2, adaptive=True, eta=0.02)
    model.compile(keras.optimizers.SGD(0.05, momentum=0.9), "mse")
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    model.save(tmp_path / "sam.keras")
    loaded = keras.saving.load_model(tmp_path / "sam.keras")
    assert (type(loaded), loaded.rho, loaded.adaptive, loaded.eta) == (SharpnessAware, 0.2, True, 0.02)
    assert loaded.optimizer.get_config() == model.optimizer.get_config()
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    loaded.model.save(tmp_path / "inner.keras")
    inner = keras.saving.load_model(tmp_path / "inner.keras")
    assert type(inner) is keras.Sequential
    np.testing.assert_array_equal(inner.predict(x, verbose=0), loaded.predict(x, verbose=0))


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"rho": 0.0}, ValueError, "SharpnessAware: argument `rho` must be > 0. Received: rho=0.0"),
        ({"eta": -0.1}, ValueError, "SharpnessAware: argument `eta` must be >= 0. Received: eta=-0.1"),
        ({"adaptive": "yes"}, TypeError,
         "SharpnessAware: argument `adaptive` must be True or False. Received: adaptive='yes'"),
        ({"adaptive": 1}, TypeError, "SharpnessAware: argument `adaptive` must be True or False. Received: adaptive=1"),
        ({"model": keras.layers.Dense(1)}, TypeError, "SharpnessAware: argument `model` must be a Keras 3 model"),
    ],
    ids=["rho_not_positive", "eta_negative", "adaptive_not_bool", "adaptive_one", "model_not_a_model"],
)
def test_errors(kwargs, error, message):
    kwargs = {"model": mlp(), **kwargs}
    with pytest.raises(error) as raised:
        SharpnessAware(**kwargs)
    assert str(raised.value).startswith(message)


class _AuxiliaryHead(keras.Model):
    """A model with a trainable layer its output doesn't use (an auxiliary head): its gradient is None."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.main, self.aux = keras.layers.Dense(1), keras.layers.Dense(2)

    def build(self, input_shape):
        self.main.build(input_shape)
        self.aux.build(input_shape)

    def call(self, inputs):
        return self.main(inputs)


@pytest.mark.filterwarnings("ignore:Gradients do not exist")
def test_a_variable_without_gradient_stays_as_it_was(regression_data):
    x, y = regression_data
    keras.utils.set_random_seed(2)
    with_head = _AuxiliaryHead(name="with_head")
    with_head.build((None, 4))
    aux = [w.copy() for w in with_head.aux.get_weights()]
    alone = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    alone.set_weights(with_head.main.get_weights())
    start = with_head.main.kernel.numpy().copy()
    for model in (with_head, alone):
        sharpness_aware(model, rho=0.2).fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)
    for actual, expected in zip(with_head.main.get_weights() + with_head.aux.get_weights(),
                                alone.get_weights() + aux, strict=True):
        np.testing.assert_allclose(actual, expected, rtol=1e-6)
    assert not np.allclose(with_head.main.kernel.numpy(), start)  # the used head did train


class _IgnoresItsWeights(_AuxiliaryHead):
    def call(self, inputs):
        return 0.0 * inputs[:, :1]


def test_no_gradient_at_all_is_keras_own_error(regression_data):
    """As plain Keras, also with a subclassed model that builds its variables on its first call."""
    x, y = regression_data
    for model in (_IgnoresItsWeights(name="plain"), SharpnessAware(_IgnoresItsWeights(name="inner"))):
        model.compile("sgd", "mse")
        with pytest.raises(ValueError, match="No gradients provided for any variable"):
            model.fit(x[:16], y[:16], batch_size=16, verbose=0)
