"""Behaviour every tfopt optimizer shares, tested once for all of them: config and `.keras` round trips, `fit`,
`jit_compile` equal to eager, `mixed_bfloat16`, a 2-replica MirroredStrategy equal to one device,
`LossScaleOptimizer` with mixed_float16, clipping, `exclude_from_weight_decay`, the sparse gradients of an
`Embedding`, a `.keras` save/load mid-training whose next steps equal an uninterrupted run, and no float64 in the
traced step (conditional branches included)."""

import types

import keras
import numpy as np
import pytest
from references import SHAPES, gradient_sequence, initial_values, numpy_centralize, run_keras_optimizer

import tfopt.optimizers as topt

# Every optimizer through fit, XLA, replicas, mixed precision and resume: minutes; `make test-fast` skips it
# (each optimizer's reference test stays fast).
pytestmark = pytest.mark.slow

# name -> (factory taking keyword overrides, whether variables evolve independently of each other)
OPTIMIZERS = {
    "RAdam": (lambda **kw: topt.RAdam(learning_rate=1e-2, **kw), True),
    "AdaBelief": (lambda **kw: topt.AdaBelief(learning_rate=1e-2, **kw), True),
    "Adan": (lambda **kw: topt.Adan(learning_rate=1e-2, **kw), True),
    "AdEMAMix": (lambda **kw: topt.AdEMAMix(learning_rate=1e-2, **kw), True),
    "Yogi": (lambda **kw: topt.Yogi(learning_rate=1e-2, **kw), True),
    "NovoGrad": (lambda **kw: topt.NovoGrad(learning_rate=1e-2, **kw), True),
    "LARS": (lambda **kw: topt.LARS(learning_rate=0.5, **kw), True),
    "Prodigy": (lambda **kw: topt.Prodigy(**kw), False),
    "LazyAdam": (lambda **kw: topt.LazyAdam(learning_rate=1e-2, **kw), True),
    "Lookahead": (lambda **kw: topt.Lookahead(keras.optimizers.Adam(1e-2, **kw), sync_period=3), True),
    "GradientCentralization": (
        lambda **kw: topt.GradientCentralization(keras.optimizers.SGD(1e-2, momentum=0.9, **kw)), True
    ),
    "Cautious": (lambda **kw: topt.Cautious(keras.optimizers.Adam(1e-2, **kw)), True),
    "ADOPT": (lambda **kw: topt.ADOPT(learning_rate=1e-2, **kw), True),
    "QHAdam": (lambda **kw: topt.QHAdam(learning_rate=1e-2, nu_1=0.7, **kw), True),
    "LaProp": (lambda **kw: topt.LaProp(learning_rate=1e-2, **kw), True),
    "AdaBound": (lambda **kw: topt.AdaBound(learning_rate=1e-2, **kw), True),
    "StableAdamW": (lambda **kw: topt.StableAdamW(learning_rate=1e-2, **{"weight_decay": 0.0, **kw}), True),
    "AdamP": (lambda **kw: topt.AdamP(learning_rate=1e-2, **kw), True),
    "SGDP": (lambda **kw: topt.SGDP(learning_rate=5e-2, momentum=0.9, **kw), True),
    "MADGRAD": (lambda **kw: topt.MADGRAD(learning_rate=1e-2, **kw), True),
    "MARS": (lambda **kw: topt.MARS(learning_rate=1e-2, learning_rate_1d=1e-2, **{"weight_decay_1d": 0.0, **kw}), True),
    "ScheduleFreeSGD": (lambda **kw: topt.ScheduleFreeSGD(learning_rate=0.05, **kw), True),
    "ScheduleFreeRAdam": (lambda **kw: topt.ScheduleFreeRAdam(learning_rate=1e-2, **kw), True),
    "DAdaptAdam": (lambda **kw: topt.DAdaptAdam(d0=1e-3, growth_rate=1.1, **kw), False),  # d overshoots unbounded
    "SOAP": (lambda **kw: topt.SOAP(learning_rate=1e-2, precondition_frequency=3, **{"weight_decay": 0.0, **kw}), True),
    # epsilon above float32's rounding of the statistics: see Shampoo's docstring (at 1e-6, jit and replicas differ)
    "Shampoo": (lambda **kw: topt.Shampoo(learning_rate=1e-2, momentum=0.5, epsilon=1e-2, **kw), True),
}


BASE = dict(use_ema=True, ema_momentum=0.9, ema_overwrite_frequency=3, loss_scale_factor=4.0,
            gradient_accumulation_steps=2)
# name -> a non-default value for every argument of each optimizer (learning rates exact in float32)
NON_DEFAULT = {
    "RAdam": dict(learning_rate=0.25, beta_1=0.8, beta_2=0.99, epsilon=1e-6, decoupled_weight_decay=True,
                  weight_decay=0.05),
    "AdaBelief": dict(learning_rate=0.25, beta_1=0.8, beta_2=0.99, epsilon=1e-12, rectify=False,
                      degenerated_to_sgd=False, weight_decay=0.05),
    "Adan": dict(learning_rate=0.25, beta_1=0.9, beta_2=0.8, beta_3=0.95, epsilon=1e-6, weight_decay=0.05),
    "AdEMAMix": dict(learning_rate=0.25, beta_1=0.8, beta_2=0.99, beta_3=0.999, alpha=8.0, alpha_warmup=100,
                     beta_3_warmup=200, epsilon=1e-6, weight_decay=0.05),
    "Yogi": dict(learning_rate=0.25, beta_1=0.8, beta_2=0.99, epsilon=1e-4, initial_accumulator_value=1e-3,
                 weight_decay=0.01),
    "NovoGrad": dict(learning_rate=0.25, beta_1=0.8, beta_2=0.99, epsilon=1e-4, grad_averaging=True, amsgrad=True,
                     weight_decay=0.01),
    "LARS": dict(learning_rate=0.25, momentum=0.8, eta=0.02, epsilon=1e-4, nesterov=True, exclude_rank_1=False,
                 weight_decay=0.01),
    "Prodigy": dict(learning_rate=0.25, beta_1=0.8, beta_2=0.99, beta_3=0.9, epsilon=1e-6, d0=1e-4, d_coef=0.5,
                    growth_rate=1.02, bias_correction=True, safeguard_warmup=True, weight_decay=0.01),
    "LazyAdam": dict(learning_rate=0.25, beta_1=0.8, beta_2=0.99, epsilon=1e-4, amsgrad=True, weight_decay=0.01),
    "ADOPT": dict(learning_rate=0.25, beta_1=0.8, beta_2=0.99, epsilon=1e-4, clip_exponent=0.5,
                  decoupled_weight_decay=True, weight_decay=0.05),
    "QHAdam": dict(learning_rate=0.25, beta_1=0.8, beta_2=0.99, nu_1=0.7, nu_2=0.9, epsilon=1e-4,
                   decoupled_weight_decay=True, weight_decay=0.05),
    "LaProp": dict(learning_rate=0.25, beta_1=0.8, beta_2=0.99, epsilon=1e-6, centered=True,
                   steps_before_using_centered=3, amsgrad=True, weight_decay=0.05),
    "AdaBound": dict(learning_rate=0.25, final_lr=0.05, beta_1=0.8, beta_2=0.99, gamma=1e-2, epsilon=1e-6,
                     amsbound=True, decoupled_weight_decay=False, weight_decay=0.05),
    "StableAdamW": dict(learning_rate=0.25, beta_1=0.8, beta_2=0.95, epsilon=1e-6, decoupled_weight_decay=False,
                        weight_decay=0.05),
    "AdamP": dict(learning_rate=0.25, beta_1=0.8, beta_2=0.99, epsilon=1e-6, delta=0.2, wd_ratio=0.5, nesterov=True,
                  weight_decay=0.05),
    "SGDP": dict(learning_rate=0.25, momentum=0.8, dampening=0.1, epsilon=1e-6, delta=0.2, wd_ratio=0.5,
                 nesterov=True, weight_decay=0.05),
    "MADGRAD": dict(learning_rate=0.25, momentum=0.8, epsilon=1e-4, decoupled_weight_decay=True, weight_decay=0.05),
    "MARS": dict(learning_rate=0.25, beta_1=0.9, beta_2=0.95, gamma=0.05, mars_type="lion", optimize_1d=True,
                 learning_rate_1d=0.125, beta_1_1d=0.8, beta_2_1d=0.9, weight_decay_1d=0.2, amsgrad=True, epsilon=1e-6,
                 weight_decay=0.05),
    "ScheduleFreeSGD": dict(learning_rate=0.25, momentum=0.8, r=0.5, weight_lr_power=1.0, warmup_steps=10,
                            weight_decay=0.05),
    "ScheduleFreeRAdam": dict(learning_rate=0.25, beta_1=0.8, beta_2=0.99, epsilon=1e-6, r=0.5, weight_lr_power=1.0,
                              silent_sgd_phase=False, weight_decay=0.05),
    "DAdaptAdam": dict(learning_rate=0.25, beta_1=0.8, beta_2=0.99, epsilon=1e-6, d0=1e-4, growth_rate=1.02,
                       bias_correction=True, decoupled_weight_decay=True, weight_decay=0.01),
    "SOAP": dict(learning_rate=0.25, beta_1=0.9, beta_2=0.99, shampoo_beta=0.9, epsilon=1e-6, precondition_frequency=5,
                 max_precondition_dim=100, precondition_1d=True, correct_bias=False, normalize_gradient=True,
                 weight_decay=0.05),
    "Shampoo": dict(learning_rate=0.25, momentum=0.8, preconditioning_compute_steps=3, epsilon=1e-4,
                    decoupled_weight_decay=True, weight_decay=0.05),
}


@pytest.mark.parametrize("clip", ["clipnorm", "clipvalue", "global_clipnorm"])
@pytest.mark.parametrize("name", list(NON_DEFAULT))
def test_config_round_trip_and_keras_file(name, clip, tmp_path):
    arguments = {**NON_DEFAULT[name], **BASE, clip: 1.5, "name": f"custom_{name.lower()}"}
    cls = getattr(topt, name)
    config = cls(**arguments).get_config()
    assert {key: config[key] for key in arguments} == arguments
    assert cls.from_config(config).get_config() == config
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(cls(**arguments), "mse")
    model.optimizer.build(model.trainable_variables)
    model.save(tmp_path / "model.keras")
    restored = keras.models.load_model(tmp_path / "model.keras")
    assert type(restored.optimizer) is cls
    assert restored.optimizer.get_config() == config


def test_every_public_optimizer_is_in_the_contract():
    assert set(topt.__all__) == set(OPTIMIZERS)


@pytest.fixture(scope="module", params=list(OPTIMIZERS), ids=list(OPTIMIZERS))
def optimizer_case(request):
    return request.param, *OPTIMIZERS[request.param]


def _data(n=64):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 6)).astype("float32")
    y = (np.sin(x[:, :1]) + x[:, 1:2] ** 2 - x[:, 2:3]).astype("float32")
    return x, y


def _mlp(seed=0):
    keras.utils.set_random_seed(seed)
    return keras.Sequential([keras.Input((6,)), keras.layers.Dense(16, activation="tanh"), keras.layers.Dense(1)])


def _fit(model, epochs=2, **kwargs):
    x, y = _data()
    return model.fit(x, y, batch_size=16, epochs=epochs, shuffle=False, verbose=0, **kwargs)


def _assert_weights_close(first, second, rtol=1e-5, atol=1e-6):
    """`first` and `second` (models or lists of weights) hold the same weights."""
    weights = [w.get_weights() if isinstance(w, keras.Model) else w for w in (first, second)]
    for a, b in zip(*weights, strict=True):
        np.testing.assert_allclose(a, b, rtol=rtol, atol=atol)


@pytest.fixture(scope="module")
def plain_run(optimizer_case, tmp_path_factory):
    """The optimizer's plain float32 run on one device, which several tests compare against (traced once): `_mlp()`
    fit in three fits of 2, 2 and 1 epochs, with its weights at the start and after 2 and 4 epochs, its steps
    after 2, a `.keras` file saved after 2, and the losses of the 5 epochs."""
    _, make, _ = optimizer_case
    model = _mlp()
    run = types.SimpleNamespace(model=model, start=model.get_weights())
    run.mid = tmp_path_factory.mktemp("run") / "mid.keras"
    model.compile(make(), "mse")
    run.losses = _fit(model).history["loss"]
    run.after_2, run.steps_after_2 = model.get_weights(), int(model.optimizer.iterations)
    model.save(run.mid)
    run.losses += _fit(model).history["loss"]
    run.after_4 = model.get_weights()
    run.losses += _fit(model, epochs=1).history["loss"]
    return run


def test_fit_lowers_the_loss(plain_run):
    assert len(plain_run.losses) == 5
    assert plain_run.losses[-1] < plain_run.losses[0]


def test_gradient_accumulation_equals_the_larger_batch(optimizer_case, plain_run):
    """`gradient_accumulation_steps=2` over batches of 8 takes the steps of batches of 16 (the plain run)."""
    _, make, _ = optimizer_case
    model = _mlp()
    model.compile(make(gradient_accumulation_steps=2), "mse")
    x, y = _data()
    model.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    _assert_weights_close(model, plain_run.after_2, rtol=1e-4, atol=1e-5)


# XLA's eigensolver and QR differ from TensorFlow's kernels by float32 rounding, which SOAP's 1 / sqrt(v) and Shampoo's
# inverse roots magnify.
JIT_TOLERANCE = {"SOAP": dict(rtol=1e-4, atol=1e-5), "Shampoo": dict(rtol=1e-4, atol=1e-5)}


def test_jit_compile_equals_the_eager_step(optimizer_case):
    name, make, _ = optimizer_case
    models = []
    for mode in (dict(run_eagerly=True), dict(jit_compile=True)):
        model = _mlp()
        model.compile(make(), "mse", **mode)
        _fit(model)
        models.append(model)
    assert models[0].run_eagerly and models[1].jit_compile
    _assert_weights_close(*models, **JIT_TOLERANCE.get(name, {}))


def test_mirrored_strategy_equals_one_device(optimizer_case, mirrored_strategy, plain_run):
    _, make, _ = optimizer_case
    with mirrored_strategy.scope():
        model = _mlp()
        model.compile(make(), "mse")
    _fit(model)
    _assert_weights_close(model, plain_run.after_2, rtol=1e-4, atol=1e-5)


def _distance(first, second):
    return np.sqrt(sum(np.sum((np.asarray(a, "float64") - b) ** 2) for a, b in zip(first, second, strict=True)))


def test_loss_scale_optimizer_with_mixed_float16(optimizer_case, plain_run):
    """In float32, `LossScaleOptimizer`'s step equals the unscaled one (power-of-two scaling is exact); under
    mixed_float16, the float32 weights take the float32 run's steps to within float16's precision (eps ~1e-3): they
    end closer to its weights than 1% of the distance those moved (measured: 0.01-0.1%)."""
    _, make, _ = optimizer_case
    scaled = _mlp()
    scaled.compile(keras.optimizers.LossScaleOptimizer(make()), "mse")
    _fit(scaled)
    _assert_weights_close(scaled, plain_run.after_2, rtol=1e-6, atol=1e-7)

    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        mixed = _mlp()
    finally:
        keras.mixed_precision.set_global_policy("float32")
    # A scale at which these float16 gradients don't overflow, so that no step is skipped (at Keras's default 2**15
    # the first steps overflow and are skipped while the scale halves, and the runs can't be compared step by step).
    mixed.compile(keras.optimizers.LossScaleOptimizer(make(), initial_scale=16.0), "mse")
    _fit(mixed)
    assert mixed.layers[0].compute_dtype == "float16"
    assert {weight.dtype for weight in mixed.trainable_weights} == {"float32"}
    assert int(mixed.optimizer.iterations) == plain_run.steps_after_2 == 8
    moved = _distance(plain_run.after_2, plain_run.start)
    assert moved > 1e-3
    assert _distance(mixed.get_weights(), plain_run.after_2) < 0.01 * moved


def test_mixed_bfloat16_takes_the_float32_steps(optimizer_case, plain_run):
    """Under mixed_bfloat16 (the TPU policy; no loss scaling needed) the variables and slots stay float32 and the
    weights take the float32 run's steps to within bfloat16's precision (eps ~8e-3): closer to its weights than 5%
    of the distance those moved."""
    _, make, _ = optimizer_case
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        mixed = _mlp()
    finally:
        keras.mixed_precision.set_global_policy("float32")
    mixed.compile(make(), "mse")
    _fit(mixed)
    assert mixed.layers[0].compute_dtype == "bfloat16"
    floats = {v.dtype for v in mixed.optimizer.variables if "int" not in v.dtype} | {w.dtype for w in mixed.weights}
    assert floats == {"float32"}
    assert _distance(mixed.get_weights(), plain_run.after_2) < 0.05 * _distance(plain_run.after_2, plain_run.start)


@pytest.mark.parametrize("clipping", ["clipnorm", "global_clipnorm"])
def test_clipping_equals_feeding_clipped_gradients(optimizer_case, clipping):
    name, make, _ = optimizer_case
    gradients = gradient_sequence(SHAPES, 8)
    limit = 1.5
    clipped = []
    # a wrapper's inner optimizer clips what the wrapper hands it: GradientCentralization's centred gradients
    # (centring them again changes nothing, so the pre-clipped run may go through the wrapper as well)
    prepare = numpy_centralize if name == "GradientCentralization" else np.asarray
    for step in gradients:
        step = [prepare(g).astype("float32") for g in step]
        if clipping == "clipnorm":
            clipped.append([g * min(1.0, limit / np.linalg.norm(g)) for g in step])
        else:
            total = np.sqrt(sum(np.sum(g.astype("float64") ** 2) for g in step))
            clipped.append([(g * min(1.0, limit / total)).astype("float32") for g in step])
    with_clipping = run_keras_optimizer(make(**{clipping: limit}), initial_values(SHAPES), gradients)
    pre_clipped = run_keras_optimizer(make(), initial_values(SHAPES), clipped)
    for a, b in zip(with_clipping, pre_clipped):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_exclude_from_weight_decay(optimizer_case):
    name, make, independent = optimizer_case
    if name in ("Lookahead", "GradientCentralization", "Cautious"):
        wrapper = getattr(topt, name)
        make = lambda **kw: wrapper(keras.optimizers.AdamW(1e-2, **kw))  # noqa: E731
    names = ["bias", "kernel", "conv_kernel"]
    gradients, start = gradient_sequence(SHAPES, 20), initial_values(SHAPES)
    excluded = make(weight_decay=0.1)
    inner = getattr(excluded, "inner_optimizer", excluded)
    inner.exclude_from_weight_decay(var_names=["kernel"])
    result = run_keras_optimizer(excluded, start, gradients, names)
    decayed = run_keras_optimizer(make(weight_decay=0.1), start, gradients, names)
    assert not np.allclose(result[1], decayed[1], rtol=1e-6)  # the exclusion changed the excluded variable
    if independent:  # the other variables are decayed as before, the excluded one as without decay
        np.testing.assert_allclose(result[0], decayed[0], rtol=1e-6)
        undecayed = run_keras_optimizer(make(weight_decay=0.0), start, gradients, names)
        np.testing.assert_allclose(result[1], undecayed[1], rtol=1e-5, atol=1e-6)


def test_sparse_embedding_gradients(optimizer_case):
    _, make, _ = optimizer_case
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((5,), dtype="int32"), keras.layers.Embedding(50, 8),
                              keras.layers.GlobalAveragePooling1D(), keras.layers.Dense(1)])
    model.compile(make(), "mse")
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, 20, size=(64, 5)).astype("int32")  # rows 20..49 are never touched
    target = (tokens % 3 == 0).mean(axis=1, keepdims=True).astype("float32")
    untouched = model.layers[0].get_weights()[0][20:].copy()
    history = model.fit(tokens, target, batch_size=16, epochs=5, shuffle=False, verbose=0)
    assert np.isfinite(history.history["loss"]).all() and history.history["loss"][-1] < history.history["loss"][0]
    np.testing.assert_array_equal(model.layers[0].get_weights()[0][20:], untouched)


def test_keras_file_mid_training_resumes_identically(plain_run):
    """The plain run's file saved after 2 epochs, loaded and fit 2 more, ends where the plain run's next 2 took it."""
    restored = keras.models.load_model(plain_run.mid)
    assert type(restored.optimizer) is type(plain_run.model.optimizer)
    _fit(restored, epochs=2)
    _assert_weights_close(restored, plain_run.after_4, rtol=1e-6, atol=1e-7)


def test_no_float64_in_the_compiled_step(optimizer_case):
    import tensorflow as tf  # noqa: PLC0415 - only this test reads the traced graph

    name, make, _ = optimizer_case
    variables = [keras.Variable(value) for value in initial_values(SHAPES)]
    optimizer = make()
    optimizer.build(variables)
    step = tf.function(lambda grads: optimizer.apply(grads, variables))
    graph = step.get_concrete_function([tf.TensorSpec(v.shape, "float32") for v in variables]).graph.as_graph_def()
    nodes = [*graph.node, *(node for function in graph.library.function for node in function.node_def)]  # in conds
    double = tf.float64.as_datatype_enum
    float64 = sorted({node.op for node in nodes for attr in node.attr.values()
                      if attr.type == double or double in attr.list.type})
    assert not float64, f"{name}: float64 ops in the step: {float64}"
