"""KerasTuner search spaces for what tfopt adds: optimizers, schedules, distillation and compression.

Each function registers its hyper-parameters on the `hp` it is given (a `keras_tuner.HyperParameters`, inside any
`HyperModel.build` and with every oracle) and returns a ready object. The names they register never collide:

| function      | registers                                                                                    |
| ------------- | -------------------------------------------------------------------------------------------- |
| `optimizer`   | `optimizer`, `learning_rate`, `weight_decay`                                                 |
| `schedule`    | `schedule`, `learning_rate` (the peak, shared with `optimizer`), `schedule_pct_start`,       |
|               | `schedule_warmup_fraction`, `schedule_decay_fraction`                                        |
| `distillation`| `distillation_loss`, `distillation_temperature`, `distillation_student_loss_weight`,          |
|               | `distillation_dkd_beta`                                                                      |
| `compression` | `compression_structure`, `compression_sparsity`, `compression_qat`, `compression_scheme`     |

A knob that only one choice uses is registered in a conditional scope of that choice, so `hp.values` holds only
the active ones. A bad argument raises `keras_tuner.errors.FatalValueError` (a `ValueError`; `FatalTypeError` for
a wrong type), which stops the search: KerasTuner records other errors as failed trials and carries on. This module
never imports keras_tuner, except to raise those errors.

Example:
    >>> import keras_tuner, tfopt.tuning
    >>> hp = keras_tuner.HyperParameters()
    >>> learning_rate = tfopt.tuning.schedule(hp, total_steps=1000)
    >>> optimizer = tfopt.tuning.optimizer(hp, learning_rate=learning_rate)
    >>> sorted(hp.values)
    ['learning_rate', 'optimizer', 'schedule']
"""

import numbers
import re

import keras

from tfopt import distill, optimizers, schedules
from tfopt.tuning import _hp

_KERAS = {"adadelta": "Adadelta", "adafactor": "Adafactor", "adagrad": "Adagrad", "adam": "Adam", "adamax": "Adamax",
          "adamw": "AdamW", "ftrl": "Ftrl", "lamb": "Lamb", "lion": "Lion", "nadam": "Nadam", "rmsprop": "RMSprop",
          "sgd": "SGD"}
_TFOPT = {"adabelief": "AdaBelief", "adabound": "AdaBound", "adamp": "AdamP", "adan": "Adan", "ademamix": "AdEMAMix",
          "adopt": "ADOPT", "dadapt_adam": "DAdaptAdam", "laprop": "LaProp", "lars": "LARS", "lazy_adam": "LazyAdam",
          "madgrad": "MADGRAD", "mars": "MARS", "novograd": "NovoGrad", "prodigy": "Prodigy", "qhadam": "QHAdam",
          "radam": "RAdam", "schedule_free_radam": "ScheduleFreeRAdam", "schedule_free_sgd": "ScheduleFreeSGD",
          "sgdp": "SGDP", "shampoo": "Shampoo", "soap": "SOAP", "stable_adamw": "StableAdamW", "yogi": "Yogi"}
_LOOKAHEAD = "lookahead_"
OPTIMIZERS = tuple(sorted({**_KERAS, **_TFOPT}))
SCHEDULES = ("constant", "cosine", "one_cycle", "warmup_cosine", "wsd")
DISTILLATION_LOSSES = ("soft_targets", "decoupled_kd")
STRUCTURES = ("none", "unstructured", "2:4", "channel")
SCHEMES = ("int8", "16x8")


def _optimizer_class(name):
    if name in _KERAS:
        return getattr(keras.optimizers, _KERAS[name])
    return getattr(optimizers, _TFOPT[name])


def _is_optimizer_name(name):
    if not isinstance(name, str):
        return False
    return (name[len(_LOOKAHEAD):] if name.startswith(_LOOKAHEAD) else name) in OPTIMIZERS


def optimizer(hp, choices=("adam", "adamw", "radam", "adan", "lookahead_adam"), learning_rate=(1e-4, 1e-1),
              weight_decay=None):
    """Registers the choice of optimizer and its rates on `hp`; returns the chosen optimizer.

    Names: Keras's adadelta, adafactor, adagrad, adam, adamax, adamw, ftrl, lamb, lion, nadam, rmsprop, sgd;
    tfopt's adabelief, adabound, adamp, adan, ademamix, adopt, dadapt_adam, lars, laprop, lazy_adam, madgrad, mars,
    novograd, prodigy, qhadam, radam, schedule_free_radam, schedule_free_sgd, sgdp, shampoo, soap, stable_adamw, yogi;
    and `"lookahead_<name>"`, any of those wrapped in `tfopt.optimizers.Lookahead` (its defaults). Every other
    argument of the optimizer keeps its default (Prodigy's and DAdaptAdam's `learning_rate` multiplies their own
    estimate: give it a range around 1).

    Args:
        hp: a `keras_tuner.HyperParameters`.
        choices: the names to choose from, registered as the Choice `optimizer` (the first is the default).
            Defaults to `("adam", "adamw", "radam", "adan", "lookahead_adam")`.
        learning_rate: a (low, high) pair, registered as the Float `learning_rate` (log sampling, default 1e-3
            clipped into the range); a number, or a `LearningRateSchedule` such as `schedule`'s, used as is.
            Defaults to `(1e-4, 1e-1)`.
        weight_decay: a (low, high) pair with low > 0, registered as the Float `weight_decay` (log sampling); a
            number used as is; or None: the optimizer's default (0.004 for AdamW, none for the others). Every
            optimizer here takes it (Keras's base class decays as AdamW unless the rule has its own decay).
            Defaults to `None`.

    Returns:
        a `keras.optimizers.Optimizer`.

    Example:
        >>> import keras_tuner, tfopt.tuning
        >>> hp = keras_tuner.HyperParameters()
        >>> hp.Fixed("optimizer", "lookahead_radam")
        'lookahead_radam'
        >>> opt = tfopt.tuning.optimizer(hp, choices=["radam", "lookahead_radam"], weight_decay=(1e-5, 1e-2))
        >>> type(opt).__name__, type(opt.inner_optimizer).__name__, sorted(hp.values)
        ('Lookahead', 'RAdam', ['learning_rate', 'optimizer', 'weight_decay'])
    """
    owner = "tuning.optimizer"
    rule = "a non-empty list of distinct names, each one of " + ", ".join(map(repr, OPTIMIZERS)) + \
        f" or '{_LOOKAHEAD}' followed by one of them"
    choices = _hp.names(owner, "choices", choices, _is_optimizer_name, rule)
    if callable(learning_rate):  # a LearningRateSchedule (or a function of no argument, as Keras takes)
        rate = learning_rate
    else:
        rate = _hp.register(hp, "learning_rate", _hp.checked(owner, "learning_rate", learning_rate), 1e-3, "log")
    if weight_decay is not None:
        pair = isinstance(weight_decay, (list, tuple))
        weight_decay = _hp.checked(owner, "weight_decay", weight_decay, low_open=pair)
        weight_decay = _hp.register(hp, "weight_decay", weight_decay, 1e-4, "log")
    name = hp.Choice("optimizer", choices)
    if not _is_optimizer_name(name):  # a value fixed on `hp` beforehand
        _hp.fail(owner, "optimizer", name, rule.replace("a non-empty list of distinct names, each ", ""))
    inner = name[len(_LOOKAHEAD):] if name.startswith(_LOOKAHEAD) else name
    kwargs = {} if weight_decay is None else {"weight_decay": weight_decay}
    built = _optimizer_class(inner)(learning_rate=rate, **kwargs)
    return optimizers.Lookahead(built) if name.startswith(_LOOKAHEAD) else built


def schedule(hp, total_steps, choices=SCHEDULES, learning_rate=None):
    """Registers the choice of learning-rate schedule and its knobs on `hp`; returns the rate for an optimizer.

    ```python
    "constant":      peak                                    (a float)
    "cosine":        keras.optimizers.schedules.CosineDecay(peak, total_steps)
    "one_cycle":     tfopt.schedules.OneCycle(peak, total_steps, pct_start)         # schedule_pct_start
    "warmup_cosine": tfopt.schedules.WarmUp(CosineDecay(peak, total_steps - w), w)  # w = warm-up fraction * steps
    "wsd":           tfopt.schedules.WarmupStableDecay(peak, w, total_steps - w - d, d)  # d = decay fraction * steps
    ```
    `schedule_pct_start` (0.1 to 0.5), `schedule_warmup_fraction` (0.01 to 0.2) and `schedule_decay_fraction` (0.1 to
    0.3) are registered only under the choices that use them.

    Compose it with `optimizer` by calling `schedule` first and handing its result on:
    `optimizer(hp, learning_rate=schedule(hp, total_steps))`. Both share the Float `learning_rate` (the peak), so it
    is registered once, whichever function registers it first.

    Args:
        hp: a `keras_tuner.HyperParameters`.
        total_steps: an int >= 2, the number of training steps (`epochs * steps_per_epoch`).
        choices: the schedules to choose from, registered as the Choice `schedule` (the first is the default).
            Defaults to `("constant", "cosine", "one_cycle", "warmup_cosine", "wsd")`.
        learning_rate: the peak rate, a number > 0, or None: the Float `learning_rate` (1e-4 to 1e-1, log sampling,
            default 1e-3), or its value if `optimizer` registered it first. Defaults to `None`.

    Returns:
        a float or a `keras.optimizers.schedules.LearningRateSchedule`.

    Example:
        >>> import keras_tuner, tfopt.tuning
        >>> hp = keras_tuner.HyperParameters()
        >>> hp.Fixed("schedule", "one_cycle")
        'one_cycle'
        >>> rate = tfopt.tuning.schedule(hp, total_steps=100, learning_rate=0.01)
        >>> type(rate).__name__, rate.max_lr, rate.pct_start
        ('OneCycle', 0.01, 0.3)
    """
    owner = "tuning.schedule"
    if isinstance(total_steps, bool) or not isinstance(total_steps, numbers.Integral):
        _hp.fail(owner, "total_steps", total_steps, "an integer", type_error=True)
    if total_steps < 2:
        _hp.fail(owner, "total_steps", total_steps, ">= 2")
    total_steps = int(total_steps)
    choices = _hp.names(owner, "choices", choices, SCHEDULES)
    if learning_rate is None:
        peak = hp.Float("learning_rate", 1e-4, 1e-1, sampling="log", default=1e-3)
    else:
        peak = _hp.number(owner, "learning_rate", learning_rate, 0.0, None, low_open=True)
    kind = hp.Choice("schedule", choices)
    if kind not in SCHEDULES:
        _hp.fail(owner, "schedule", kind, "one of " + ", ".join(map(repr, SCHEDULES)))
    if kind == "constant":
        return peak
    if kind == "cosine":
        return keras.optimizers.schedules.CosineDecay(peak, total_steps)
    if kind == "one_cycle":
        with hp.conditional_scope("schedule", ["one_cycle"]):
            pct_start = hp.Float("schedule_pct_start", 0.1, 0.5, default=0.3)
        return schedules.OneCycle(peak, total_steps, pct_start=max(pct_start, 1.5 / total_steps))
    with hp.conditional_scope("schedule", ["warmup_cosine", "wsd"]):
        warmup = round(hp.Float("schedule_warmup_fraction", 0.01, 0.2, default=0.05) * total_steps)
    warmup = min(max(warmup, 1), total_steps - 1)
    if kind == "warmup_cosine":
        return schedules.WarmUp(keras.optimizers.schedules.CosineDecay(peak, total_steps - warmup), warmup)
    with hp.conditional_scope("schedule", ["wsd"]):
        decay = round(hp.Float("schedule_decay_fraction", 0.1, 0.3, default=0.2) * total_steps)
    decay = min(max(decay, 1), total_steps - warmup)
    return schedules.WarmupStableDecay(peak, warmup, total_steps - warmup - decay, decay)


def distillation(hp, choices=DISTILLATION_LOSSES, temperature=(1.0, 8.0), student_loss_weight=(0.0, 0.9)):
    """Registers the distillation loss, its temperature and the task loss's share on `hp`; returns the `Distiller`'s
    arguments.

    `"soft_targets"` is `tfopt.distill.SoftTargets(temperature)`; `"decoupled_kd"` is
    `tfopt.distill.DecoupledKD(beta=beta, temperature=temperature)` with the Float `distillation_dkd_beta` (1 to 10,
    default 8) registered under that choice only. Both read the models' outputs as logits.

    Args:
        hp: a `keras_tuner.HyperParameters`.
        choices: the losses to choose from, registered as the Choice `distillation_loss`. Defaults to
            `("soft_targets", "decoupled_kd")`.
        temperature: a (low, high) pair of numbers > 0, registered as the Float `distillation_temperature` (default
            4 clipped into it), or a number used as is. Defaults to `(1.0, 8.0)`.
        student_loss_weight: a (low, high) pair in [0, 1], registered as the Float
            `distillation_student_loss_weight` (default 0.5 clipped into it), or a number used as is. Defaults to
            `(0.0, 0.9)`.

    Returns:
        `{"distillation_losses": loss, "student_loss_weight": weight}`, for
        `tfopt.distill.Distiller(teacher, student, **arguments)`.

    Example:
        >>> import keras_tuner, tfopt.tuning
        >>> hp = keras_tuner.HyperParameters()
        >>> arguments = tfopt.tuning.distillation(hp)
        >>> type(arguments["distillation_losses"]).__name__, arguments["student_loss_weight"]
        ('SoftTargets', 0.5)
    """
    owner = "tuning.distillation"
    choices = _hp.names(owner, "choices", choices, DISTILLATION_LOSSES)
    temperature = _hp.checked(owner, "temperature", temperature)
    student_loss_weight = _hp.checked(owner, "student_loss_weight", student_loss_weight, high=1.0, low_open=False)
    kind = hp.Choice("distillation_loss", choices)
    if kind not in DISTILLATION_LOSSES:
        _hp.fail(owner, "distillation_loss", kind, "one of " + ", ".join(map(repr, DISTILLATION_LOSSES)))
    temperature = _hp.register(hp, "distillation_temperature", temperature, 4.0)
    weight = _hp.register(hp, "distillation_student_loss_weight", student_loss_weight, 0.5)
    if kind == "soft_targets":
        loss = distill.SoftTargets(temperature=temperature)
    else:
        with hp.conditional_scope("distillation_loss", ["decoupled_kd"]):
            beta = hp.Float("distillation_dkd_beta", 1.0, 10.0, default=8.0)
        loss = distill.DecoupledKD(beta=beta, temperature=temperature)
    return {"distillation_losses": loss, "student_loss_weight": weight}


def _is_structure(name):
    if name in STRUCTURES:
        return True
    match = isinstance(name, str) and re.fullmatch(r"([1-9][0-9]*):([1-9][0-9]*)", name)
    return bool(match) and int(match.group(1)) < int(match.group(2))


def compression(hp, structures=STRUCTURES, sparsity=(0.5, 0.9), qat=(False, True), schemes=SCHEMES):
    """Registers how to compress the model on `hp` (pruning structure and sparsity, QAT and its scheme); returns it.

    The returned dict's keys, each ready for `tfopt.prune` / `tfopt.quantize`:

    ```python
    "sparsity":  float, the target: PolynomialDecay(0.0, sparsity, ...)'s `final`; 0.0 = don't prune
    "structure": None (unstructured or not pruned), "channel" or "N:M": prune_low_magnitude(structure=...)
    "qat":       bool, whether to apply quantize_model
    "scheme":    "int8", "16x8", or None when `qat` is False: quantize_model(scheme=...)
    ```
    Structures: `"none"` (no pruning), `"unstructured"`, `"channel"` (both at the Float `compression_sparsity`,
    registered under them only) and `"N:M"` such as `"2:4"` (sparsity N/M). The Choice `compression_scheme` is
    registered only when `compression_qat` is True.

    Args:
        hp: a `keras_tuner.HyperParameters`.
        structures: the structures to choose from, registered as the Choice `compression_structure` (the first is
            the default). Defaults to `("none", "unstructured", "2:4", "channel")`.
        sparsity: a (low, high) pair in (0, 1), registered as the Float `compression_sparsity` (step 0.05), or a
            number used as is. Defaults to `(0.5, 0.9)`.
        qat: `(False, True)`: the Boolean `compression_qat` (default False); True or False: fixed. Defaults to
            `(False, True)`.
        schemes: the QAT schemes to choose from, registered as the Choice `compression_scheme`. Defaults to
            `("int8", "16x8")`.

    Returns:
        a dict with the keys "sparsity", "structure", "qat" and "scheme".

    Example:
        >>> import keras_tuner, tfopt.tuning
        >>> hp = keras_tuner.HyperParameters()
        >>> hp.Fixed("compression_structure", "2:4")
        '2:4'
        >>> hp.Fixed("compression_qat", True)
        True
        >>> tfopt.tuning.compression(hp)
        {'sparsity': 0.5, 'structure': '2:4', 'qat': True, 'scheme': 'int8'}
    """
    owner = "tuning.compression"
    structures = _hp.names(owner, "structures", structures, _is_structure,
                        "a non-empty list of distinct names, each one of " + ", ".join(map(repr, STRUCTURES)) +
                        " or 'N:M' with 0 < N < M")
    sparsity = _hp.checked(owner, "sparsity", sparsity, high=1.0)
    if max(sparsity if isinstance(sparsity, tuple) else (sparsity,)) >= 1.0:
        _hp.fail(owner, "sparsity", sparsity, "in (0, 1)")
    if not (isinstance(qat, bool) or (isinstance(qat, (list, tuple)) and sorted(qat) == [False, True]
                                      and all(isinstance(q, bool) for q in qat))):
        _hp.fail(owner, "qat", qat, "True, False or (False, True)")
    schemes = _hp.names(owner, "schemes", schemes, SCHEMES)
    structure = hp.Choice("compression_structure", structures)
    if not _is_structure(structure):
        _hp.fail(owner, "compression_structure", structure, "one of " + ", ".join(map(repr, STRUCTURES)) + " or 'N:M'")
    if structure == "none":
        target = 0.0
    elif structure in ("unstructured", "channel"):
        with hp.conditional_scope("compression_structure", ["unstructured", "channel"]):
            target = _hp.register(hp, "compression_sparsity", sparsity, 0.5, step=0.05)
    else:
        n, m = (int(part) for part in structure.split(":"))
        target = n / m
    quantize = hp.Fixed("compression_qat", qat) if isinstance(qat, bool) else hp.Boolean("compression_qat")
    scheme = None
    if quantize:
        with hp.conditional_scope("compression_qat", [True]):
            scheme = hp.Choice("compression_scheme", schemes)
    return {"sparsity": float(target), "structure": None if structure in ("none", "unstructured") else structure,
            "qat": bool(quantize), "scheme": scheme}
