"""The float32 step-size scalars of `_common` against the float64 formulas of the papers, at every step to 20,000,
and the optimizers using them over 10,000 steps against their float64 references (in their test modules).

These are what RAdam, AdaBelief, Adan, AdEMAMix and ScheduleFreeRAdam compute without float64 (TPUs have none).
"""

import keras
import numpy as np
import pytest
from optimizers.test_adabelief import CASES as ADABELIEF_CASES
from optimizers.test_adabelief import adabelief_pytorch
from optimizers.test_adan import HYPER as ADAN_HYPER
from optimizers.test_adan import official_adan
from optimizers.test_ademamix import official_ademamix
from optimizers.test_radam import HYPER as RADAM_HYPER
from optimizers.test_radam import torch_radam
from references import SHAPES, gradient_sequence, initial_values, run_compiled_optimizer

from tfopt.optimizers import AdaBelief, Adan, AdEMAMix, RAdam
from tfopt.optimizers._common import debias, rectification, sma_length

BETAS = [0.9, 0.95, 0.999, 0.9999]
STEPS = np.arange(1, 20001, dtype="float64")


def _float32(function, beta):
    """`function(beta, steps)` on float32 steps: checks it stays float32, returns it as float64 NumPy."""
    result = function(beta, keras.ops.convert_to_tensor(STEPS.astype("float32")))
    results = tuple(np.asarray(r, "float64") for r in (result if isinstance(result, tuple) else (result,)))
    dtypes = {keras.backend.standardize_dtype(r.dtype) for r in (result if isinstance(result, tuple) else (result,))}
    assert dtypes == {"float32"}
    return results if isinstance(result, tuple) else results[0]


def _radam_rho(beta_2):
    """Liu et al. (2019), Algorithm 2: `rho_t = rho_inf - 2 t beta_2**t / (1 - beta_2**t)`."""
    return 2 / (1 - beta_2) - 1 - 2 * STEPS * beta_2**STEPS / (1 - beta_2**STEPS)


@pytest.mark.parametrize("beta", BETAS)
def test_debias_in_float32_is_accurate(beta):
    np.testing.assert_allclose(_float32(debias, beta), 1 - beta**STEPS, rtol=1e-6)


def test_the_naive_float32_form_would_fail_that_tolerance():
    naive = 1 - np.float32(0.999) ** STEPS.astype("float32")
    assert np.max(np.abs(naive / (1 - 0.999**STEPS) - 1)) > 1e-5


@pytest.mark.parametrize("beta_2", BETAS)
def test_sma_length_in_float32_is_accurate(beta_2):
    np.testing.assert_allclose(_float32(sma_length, beta_2), _radam_rho(beta_2), rtol=1e-6, atol=1e-5)


@pytest.mark.parametrize("beta_2", BETAS)
def test_rectification_in_float32_is_accurate(beta_2):
    rho_inf, rho = 2 / (1 - beta_2) - 1, _radam_rho(beta_2)
    r_t = np.sqrt(np.maximum((rho - 4) * (rho - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho), 0))
    computed_rho, computed_factor = _float32(rectification, beta_2)
    np.testing.assert_allclose(computed_rho, rho, rtol=1e-6, atol=1e-5)
    rectified = rho > 5  # where RAdam and AdaBelief use the factor; for 0.9999, rho_5 is 4e-4 below 5
    np.testing.assert_array_equal(computed_rho > 5, rectified)
    np.testing.assert_allclose(computed_factor[rectified], (r_t * np.sqrt(1 - beta_2**STEPS))[rectified], rtol=2e-6)


# (optimizer class, its float64 reference returning the final values, hyper-parameters): the 60-step tests' cases;
# AdEMAMix's warm-ups over thousands of steps, whose float32 `1 - beta_3_t` comes from expm1.
TRAJECTORIES = [
    *[(RAdam, lambda *args, **kw: torch_radam(*args, **kw)[0], hyper) for hyper in RADAM_HYPER],
    *[(AdaBelief, lambda *args, **kw: adabelief_pytorch(*args, **kw)[0], case) for case in ADABELIEF_CASES],
    *[(Adan, official_adan, hyper) for hyper in ADAN_HYPER],
    (AdEMAMix, official_ademamix, dict(learning_rate=1e-2)),
    (AdEMAMix, official_ademamix, dict(learning_rate=1e-2, alpha_warmup=5000, beta_3_warmup=6000)),
]


@pytest.mark.slow
@pytest.mark.parametrize("optimizer_class, reference, hyper", TRAJECTORIES,
                         ids=[f"{cls.__name__}-{index}" for index, (cls, _, _) in enumerate(TRAJECTORIES)])
def test_float32_step_scalars_keep_the_float64_trajectory_over_10000_steps(optimizer_class, reference, hyper):
    """On float64 variables only the step-size scalars are float32 (the step holds no float64 of its own): over
    10,000 steps the trajectory stays at the float64 reference within the 60-step tests' tolerance."""
    gradients, start = gradient_sequence(SHAPES, 10_000), initial_values(SHAPES)
    expected = reference(gradients, start, **hyper)
    for actual, wanted in zip(run_compiled_optimizer(optimizer_class(**hyper), start, gradients, "float64"), expected,
                              strict=True):
        np.testing.assert_allclose(actual, wanted, rtol=1e-5, atol=1e-6)
