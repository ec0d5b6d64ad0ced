"""The training logic the Keras 3 and the tf_keras `Distiller` share: run both models, weigh the losses, step."""

import tensorflow as tf
from keras import ops

from tfopt import _checks, _compat, _surgery
from tfopt.distill import labels as _labels
from tfopt.distill._loss import DistillationLoss
from tfopt.distill.cache import CACHED_INPUTS, CACHED_TEACHER, OUTPUT

_OWNER = "Distiller"


def _layers_wanted(losses, side):
    """The layer names the losses read from the teacher or the student (side "teacher"/"student"), in order."""
    names = []
    for loss in losses:
        names += [name for name in getattr(loss, f"{side}_layers") if name not in names]
    return names


def _check_losses(losses, weights):
    _checks.satisfies(_OWNER, "distillation_losses", losses, losses is not None,
                      "given: a tfopt.distill loss, e.g. `tfopt.distill.SoftTargets()` for a classifier's logits, or "
                      "a list of them", TypeError)
    losses = list(losses) if isinstance(losses, (list, tuple)) else [losses]
    _checks.satisfies(_OWNER, "distillation_losses", losses, losses, "a distillation loss or a non-empty list of them")
    for loss in losses:
        _checks.instance(_OWNER, "distillation_losses", loss, DistillationLoss,
                         "tfopt.distill losses (SoftTargets, DecoupledKD, HintDistillation, ...)")
    names = [loss.name for loss in losses]
    _checks.satisfies(_OWNER, "distillation_losses", names, len(set(names)) == len(names),
                      "losses with distinct names (they name the logged `<name>_loss`)")
    weights = [1.0] * len(losses) if weights is None else list(weights)
    _checks.satisfies(_OWNER, "distillation_loss_weights", weights, len(weights) == len(losses),
                      f"one weight per distillation loss ({len(losses)})")
    weights = [_checks.number(_OWNER, "distillation_loss_weights", w, low=0) for w in weights]
    return losses, weights


def _weight_share(sample_weight, output):
    """This replica's share of the global batch's sample weights (of its samples without weights; 1 on one device):
    a replica's weighted mean times it sums over the replicas to `sum(w * l) / sum(w)` over the global batch."""
    if sample_weight is None:
        local = ops.cast(ops.shape(output)[0], "float32")
    else:
        local = ops.sum(ops.cast(sample_weight, "float32"))
    return local / ops.maximum(_labels.global_sum(local), 1e-12)


def _check_same_keras(teacher, student):
    """Refuses a teacher and a student that are models of different Kerases, saying so."""
    if all(isinstance(model, _compat.keras_of(model).Model) for model in (teacher, student)):
        _checks.satisfies(_OWNER, "student", student.name, _compat.is_legacy(teacher) == _compat.is_legacy(student),
                          f"a model of the teacher's Keras: the teacher is a {_compat.generation(teacher)} model, the "
                          f"student a {_compat.generation(student)} one; carry one across with "
                          "`tfopt.compat.to_keras3` or `tfopt.compat.to_tf_keras`", TypeError)


class DistillationSteps:
    """What a `Distiller` does, written once for both Kerases; `self._keras` is the Keras module of the models."""

    def __init__(self, teacher, student, distillation_losses=None, distillation_loss_weights=None,
                 student_loss_weight=0.5, **kwargs):
        kwargs.setdefault("name", "distiller")
        super().__init__(**kwargs)  # the Keras Model after this class in the subclass's bases
        _check_same_keras(teacher, student)
        for argument, model in (("teacher", teacher), ("student", student)):
            _checks.instance(_OWNER, argument, model, self._keras.Model, f"a {self._generation} model")
            _checks.satisfies(_OWNER, argument, model, model.built, "built (give it an `Input` or call it once)")
        _checks.satisfies(_OWNER, "student", student, student is not teacher, "a model other than the teacher")
        self.teacher, self.student = teacher, student
        self.distillation_losses, self.distillation_loss_weights = _check_losses(distillation_losses,
                                                                                 distillation_loss_weights)
        self.student_loss_weight = _checks.number(_OWNER, "student_loss_weight", student_loss_weight, low=0, high=1)
        feature_losses = [type(loss).__name__ for loss in self.distillation_losses
                          if loss.teacher_layers or loss.student_layers]
        _checks.satisfies(_OWNER, "distillation_losses", feature_losses,
                          not feature_losses or self._keras.__name__ == "keras",
                          "losses reading the models' outputs (SoftTargets, DecoupledKD) for tf_keras models: feature "
                          "losses (HintDistillation, AttentionTransfer, RelationalKD on layers) need Keras 3 models; "
                          "carry both models across with `tfopt.compat.to_keras3`", TypeError)
        self.teacher.trainable = False
        self._teacher_layers = _layers_wanted(self.distillation_losses, "teacher")
        self._student_layers = _layers_wanted(self.distillation_losses, "student")
        self._teacher_tap = self._tap("teacher_layers", self.teacher, self._teacher_layers)
        self._student_tap = self._tap("student_layers", self.student, self._student_layers)
        self._check_outputs()
        self._build_losses()
        self.loss_trackers = [self._keras.metrics.Mean(name="loss"), self._keras.metrics.Mean(name="student_loss")]
        self.loss_trackers += [self._keras.metrics.Mean(name=f"{loss.name}_loss") for loss in self.distillation_losses]
        self.built = True  # teacher, student and the losses' layers are built

    @staticmethod
    def _tap(argument, model, names):
        return _surgery.tap(_OWNER, argument, model, names) if names else None

    def _check_outputs(self):
        """Refuses a model whose output layer contradicts how a loss reads outputs: logits softened from a
        softmax's probabilities (or the log of logits) train the student toward the wrong targets, silently."""
        for loss in self.distillation_losses:
            if loss.reads_outputs_as is None:
                continue
            for side, model in (("teacher", self.teacher), ("student", self.student)):
                layer, activation = _surgery.output_activation(model)
                if activation is None:
                    continue
                if loss.reads_outputs_as == "logits":
                    _checks.satisfies(_OWNER, side, model.name, activation != "softmax",
                                      f"a model that outputs logits for {loss.name} (it reads logits); its output "
                                      f"comes from the softmax of layer '{layer.name}': {loss.softmax_remedy}")
                else:
                    _checks.satisfies(_OWNER, side, model.name, activation == "softmax",
                                      f"a model ending in a softmax for {loss.name} (it reads probabilities); its "
                                      f"output comes from layer '{layer.name}' with activation '{activation}': "
                                      f"pass `from_logits=True`")

    def _build_losses(self):
        """Hands each loss the shapes it will see, so losses with weights (projections) create them now."""
        teacher_shapes = self._shapes(self.teacher, self._teacher_tap, self._teacher_layers)
        student_shapes = self._shapes(self.student, self._student_tap, self._student_layers)
        for loss in self.distillation_losses:
            loss.build(self._pick(loss.teacher_layers, teacher_shapes), self._pick(loss.student_layers, student_shapes))
        self.projections = [layer for loss in self.distillation_losses for layer in loss.trainable_layers]

    @staticmethod
    def _shapes(model, tapped, names):
        """{OUTPUT or layer name: shape}; the output's shape is None for a subclassed model (no symbolic output)."""
        if tapped is not None:
            return dict(zip([OUTPUT, *names], [tuple(tensor.shape) for tensor in tapped.outputs]))
        outputs = getattr(model, "outputs", None)
        return {OUTPUT: tuple(outputs[0].shape) if outputs else None}

    @staticmethod
    def _pick(layers, values):
        """What a loss receives: the model's output for `layers == ()`, else the listed features in order."""
        return values[OUTPUT] if not layers else [values[name] for name in layers]

    def _run(self, model, tapped, names, inputs, training):
        if tapped is None:
            return {OUTPUT: model(inputs, training=training)}
        return dict(zip([OUTPUT, *names], tapped(inputs, training=training)))

    def _teacher_values(self, x):
        if isinstance(x, dict) and CACHED_TEACHER in x:
            cached = x[CACHED_TEACHER]
            missing = [name for name in [OUTPUT, *self._teacher_layers] if name not in cached]
            if missing:
                raise ValueError(f"{_OWNER}: the cached teacher outputs lack {missing}: pass "
                                 f"`layers={self._teacher_layers}` to `cache_teacher_outputs`.")
            return cached
        values = self._run(self.teacher, self._teacher_tap, self._teacher_layers, x, training=False)
        return {name: ops.stop_gradient(value) for name, value in values.items()}

    def call(self, inputs, training=None):
        if isinstance(inputs, dict) and CACHED_INPUTS in inputs:
            inputs = inputs[CACHED_INPUTS]
        return self.student(inputs, training=training)

    def _step_losses(self, x, y, sample_weight, training):
        """(total, student output, the logged values) for one batch, scaled for summing across replicas."""
        inputs = x[CACHED_INPUTS] if isinstance(x, dict) and CACHED_INPUTS in x else x
        teacher = self._teacher_values(x)
        student = self._run(self.student, self._student_tap, self._student_layers, inputs, training)
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        task, labels = _labels.task_loss(self._task_loss(), y, student[OUTPUT], sample_weight)
        step = self.optimizer.iterations if self.optimizer is not None else None
        share = _weight_share(sample_weight, student[OUTPUT])
        values = [loss.compute_loss(self._pick(loss.teacher_layers, teacher), self._pick(loss.student_layers, student),
                                  y=labels, sample_weight=sample_weight, step=step)
                  * (share if loss.weighs_samples else 1.0 / replicas) for loss in self.distillation_losses]
        distill = sum(w * value for w, value in zip(self.distillation_loss_weights, values))
        total = self.student_loss_weight * task + (1.0 - self.student_loss_weight) * distill
        return total, student[OUTPUT], [value * replicas for value in (total, task, *values)]

    def compile(self, optimizer="rmsprop", loss=None, metrics=None, weighted_metrics=None, **kwargs):
        """Keras's `compile`, with `loss` the student's task loss; `metrics` are counted over the labeled samples
        only (weighted by `sample_weight` too, as `weighted_metrics` are), never over the unlabeled ones."""
        listed = [*(weighted_metrics or []), *(metrics or [])]
        super().compile(optimizer=optimizer, loss=loss, weighted_metrics=listed or None, **kwargs)

    def _task_loss(self):
        if not self.loss:  # tf_keras stores a missing loss as {}
            raise ValueError(f"{_OWNER}: compile it with the student's task loss, e.g. "
                             "`distiller.compile(optimizer, loss='sparse_categorical_crossentropy')`.")
        return self._keras.losses.get(self.loss)

    def _metrics_for(self, x, y, y_pred, sample_weight, logged):
        """Updates the loss trackers, and the compiled metrics if there are labels; returns the results updated."""
        for tracker, value in zip(self.loss_trackers, logged):
            tracker.update_state(value)
        if y is None:  # fit(x): the label metrics can't be computed
            return {tracker.name: tracker.result() for tracker in self.loss_trackers}
        labeled_y, weight = _labels.for_metrics(y, y_pred, sample_weight)
        return self.compute_metrics(x, labeled_y, y_pred, sample_weight=weight)

    def train_step(self, data):
        x, y, sample_weight = self._keras.utils.unpack_x_y_sample_weight(data)
        with tf.GradientTape() as tape:
            total, y_pred, logged = self._step_losses(x, y, sample_weight, training=True)
            scaled = self.optimizer.scale_loss(total)  # a LossScaleOptimizer's scale, 1 for any other
        variables = self.trainable_weights
        self.optimizer.apply_gradients(zip(tape.gradient(scaled, variables), variables))
        return self._metrics_for(x, y, y_pred, sample_weight, logged)

    def test_step(self, data):
        x, y, sample_weight = self._keras.utils.unpack_x_y_sample_weight(data)
        _, y_pred, logged = self._step_losses(x, y, sample_weight, training=False)
        return self._metrics_for(x, y, y_pred, sample_weight, logged)

    @property
    def metrics(self):
        """The loss trackers and the compiled metrics (Keras's own `loss` tracker is replaced by the total's); Keras 3's
        compiled metrics only once built (never by `fit(x)` without labels)."""
        own = getattr(self, "loss_trackers", [])
        return own + [metric for metric in super().metrics if metric.name != "loss" and metric not in own
                      and getattr(metric, "built", True)]
