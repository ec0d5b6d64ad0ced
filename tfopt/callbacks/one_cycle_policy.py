"""`OneCyclePolicy`: fastai's `fit_one_cycle` for Keras — one-cycle learning rate and inverse momentum per batch."""

from tfopt import _checks, _compat
from tfopt.callbacks._traced_hyperparameter import make_traced
from tfopt.callbacks.lr_scheduler import LRScheduler, _ScheduleTable
from tfopt.schedules.one_cycle import OneCycle


def _momentum_name(optimizer):
    for name in ("momentum", "beta_1"):
        value = getattr(optimizer, name, None)
        if value is not None and not callable(value):
            return name
    raise TypeError(
        f"OneCyclePolicy: cannot cycle the momentum of {type(optimizer).__name__}, which has neither `momentum` "
        "(SGD, RMSprop) nor `beta_1` (Adam family). Pass `cycle_momentum=False`."
    )


class OneCyclePolicy(LRScheduler):
    """Sets the learning rate and the momentum every batch along one cycle (Smith & Topin 2018).

    The learning rate follows `tfopt.schedules.OneCycle`; the momentum moves the opposite way, from
    `max_momentum` down to `base_momentum` while the rate warms up and back while it anneals, as PyTorch's
    `OneCycleLR` does. The momentum is SGD's and RMSprop's `momentum` or the Adam family's `beta_1`. Keras
    optimizers compile those hyper-parameters into the train step as constants; this callback makes the optimizer
    read them from a variable, so each batch's value reaches the compiled step (also under `jit_compile`).
    The rate and momentum of each epoch's last step are written to the logs. As with `LRScheduler`, they are set
    once per train function call: with `compile(steps_per_execution=k)`, once every k steps. If `fit` would run
    more steps than `total_steps` (counting those the optimizer has already taken), it raises a `ValueError` before
    the first epoch (for a dataset of unknown length, at the first batch past the cycle), as PyTorch's `OneCycleLR`
    does.

    ```python
    lr(step) = OneCycle(max_lr, total_steps, ...)(step)
    momentum(step) = same phases and anneal, from max_momentum to base_momentum and back
    ```

    Args:
        max_lr, total_steps, pct_start, div_factor, final_div_factor, anneal, three_phase: as
            `tfopt.schedules.OneCycle`; `total_steps` counts optimizer steps: `epochs * steps_per_epoch`.
        cycle_momentum: whether to cycle the momentum. Defaults to True.
        base_momentum: the momentum at the peak rate, in [0, 1). Defaults to 0.85.
        max_momentum: the momentum at the start and end, in [base_momentum, 1). Defaults to 0.95.
        verbose: 1 prints the rate at each epoch's start. Defaults to 0.

    Example:
        >>> import keras, numpy as np, tfopt
        >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
        >>> model.compile(keras.optimizers.SGD(0.1, momentum=0.9), "mse")
        >>> history = model.fit(np.ones((32, 4)), np.ones((32, 1)), batch_size=8, epochs=2, verbose=0,
        ...                     callbacks=[tfopt.callbacks.OneCyclePolicy(max_lr=0.1, total_steps=8)])
        >>> round(history.history["momentum"][-1], 3)
        0.95

    References:
        Smith & Topin, "Super-Convergence: Very Fast Training of Neural Networks Using Large Learning Rates", 2018.
    """

    _total_steps_owner = "argument `total_steps`"
    _float_rate_remedy = (", so it cannot be set each step. Create the optimizer with a float `learning_rate` (its "
                          "value does not matter): OneCyclePolicy sets it every step.")

    def __init__(self, max_lr, total_steps, pct_start=0.3, div_factor=25.0, final_div_factor=1e4, anneal="cos",
                 three_phase=False, cycle_momentum=True, base_momentum=0.85, max_momentum=0.95, verbose=0):
        schedule = OneCycle(max_lr, total_steps, pct_start, div_factor, final_div_factor, anneal, three_phase)
        super().__init__(schedule, unit="batch", verbose=verbose)
        self.cycle_momentum = _checks.boolean("OneCyclePolicy", "cycle_momentum", cycle_momentum)
        self.base_momentum = _checks.fraction("OneCyclePolicy", "base_momentum", base_momentum)
        self.max_momentum = _checks.fraction("OneCyclePolicy", "max_momentum", max_momentum)
        if self.base_momentum > self.max_momentum:
            raise ValueError(
                "OneCyclePolicy: argument `base_momentum` must not exceed `max_momentum`. "
                f"Received: base_momentum={base_momentum!r}, max_momentum={max_momentum!r}"
            )
        self._momentum = None
        self._momentum_table = None

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        if not self.cycle_momentum:
            return
        optimizer = _compat.unwrap_optimizer(self.optimizer)
        self._momentum_name = _momentum_name(optimizer)
        if self._momentum_name == "momentum" and float(optimizer.momentum) == 0:
            raise ValueError(
                f"OneCyclePolicy: the optimizer {type(optimizer).__name__} was created with momentum=0, so it keeps "
                "no momentum to cycle. Create it with momentum > 0 or pass `cycle_momentum=False`."
            )
        self._momentum = make_traced(optimizer, self._momentum_name, self.model.distribute_strategy)
        self._momentum_table = _ScheduleTable(self.schedule.momentum(self.base_momentum, self.max_momentum))

    def _prefill(self, step):
        super()._prefill(step)
        if self._momentum_table is not None:
            self._momentum_table(step)

    def _apply(self, step):
        rate = super()._apply(step)
        if self._momentum is not None:
            value = self._momentum_table(step)
            if value != self._momentum.value:
                self._momentum.assign(value)
        return rate

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch, logs)
        if logs is not None and self._momentum is not None:
            logs[self._momentum_name] = self._momentum.value
