"""Every bool argument of every tfopt optimizer accepts only True or False, with one message per argument.

`1`, `1.0` and `"no"` are refused: Python would store the first two as given and read `"no"` as True. The other
arguments' messages are tested in each optimizer's module.
"""

import re

import pytest

import tfopt.optimizers as topt

BOOLEANS = {
    "RAdam": ["decoupled_weight_decay"],
    "AdaBelief": ["rectify", "degenerated_to_sgd"],
    "LARS": ["nesterov", "exclude_rank_1"],
    "NovoGrad": ["grad_averaging", "amsgrad"],
    "Prodigy": ["bias_correction", "safeguard_warmup"],
    "LazyAdam": ["amsgrad"],
    "ADOPT": ["decoupled_weight_decay"],
    "QHAdam": ["decoupled_weight_decay"],
    "LaProp": ["centered", "amsgrad"],
    "AdaBound": ["amsbound", "decoupled_weight_decay"],
    "StableAdamW": ["decoupled_weight_decay"],
    "AdamP": ["nesterov"],
    "SGDP": ["nesterov"],
    "MADGRAD": ["decoupled_weight_decay"],
    "MARS": ["optimize_1d", "amsgrad"],
    "ScheduleFreeRAdam": ["silent_sgd_phase"],
    "DAdaptAdam": ["bias_correction", "decoupled_weight_decay"],
    "SOAP": ["precondition_1d", "correct_bias", "normalize_gradient"],
    "Shampoo": ["decoupled_weight_decay"],
}
CASES = [(owner, argument) for owner, arguments in BOOLEANS.items() for argument in arguments]


@pytest.mark.parametrize("value", [1, 1.0, "no", None], ids=["int", "float", "string", "None"])
@pytest.mark.parametrize("owner, argument", CASES, ids=[f"{o}.{a}" for o, a in CASES])
def test_bool_arguments_accept_only_bools(owner, argument, value):
    message = f"{owner}: argument `{argument}` must be True or False. Received: {argument}={value!r}"
    with pytest.raises(TypeError, match=re.escape(message)):
        getattr(topt, owner)(**{argument: value})


@pytest.mark.parametrize("owner, argument", CASES, ids=[f"{o}.{a}" for o, a in CASES])
def test_bool_arguments_keep_the_bool(owner, argument):
    for value in (False, True):
        assert getattr(getattr(topt, owner)(**{argument: value}), argument) is value
