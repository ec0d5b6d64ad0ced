"""Steps/s of 1 process and of 2 worker processes (`tfopt.distribute.MultiWorkerMirroredStrategy` on loopback) for
plain Keras Adam and each tfopt training feature, and each feature's step time ÷ Adam's under both, in one run.

Model: the demo's digits CNN on a repeated in-memory `tf.data` pipeline of global batches of 64 (each of the 2
workers takes 32 of them, so both sides see the same global batches). Three worker processes run this script: one
alone, with no strategy (the "1 process" side), and two forming a cluster on free 127.0.0.1 ports through
`TF_CONFIG`. Each holds TensorFlow to one thread, so the 2 workers use one core each. The two sides take turns round
by round; in a round, each variant (Adam, each feature, and a second Adam model as a control) fits `--epochs`
digits epochs twice, in turns, the order rotated each round; new models are built every `--per-set` rounds.
Wall-clock time is measured from the end of a fit's first step to its end (a worker's step includes waiting for
the other), averaged over the 2 workers. Printed: each variant's steps/s, its step time ÷ Adam's (the mean of the
two Adam models) on each side, and that ratio under 2 workers ÷ under 1 process; each is a median over the rounds
with its spread (min-max).
Goal: no feature's ratio larger under 2 workers than under 1 process (last column <= 1, give or take the control's
deviation from 1, at least 0.05).

Runtime on 2 shared cores: ~9 min at load average 3-8 (6 rounds: 11-12.5 min; `--quick`, four variants: ~2.5 min).

Example:
    python benchmarks/scaling.py --rounds 6 --per-set 6
"""

import argparse
import contextlib
import functools
import json
import os
import socket
import statistics
import sys
import tempfile
import time

import _timing
import keras

import tfopt
from tfopt.demo.model import compile_for_digits, digits_cnn

BATCH = 64
STEPS_PER_EPOCH = 22  # the digits' 1437 training images in global batches of 64
CONTROL = "Adam (control)"
VARIANTS = ("Adam", "LRScheduler", "OneCyclePolicy", "RAdam", "AdaBelief", "Lookahead(Adam)", "SharpnessAware",
            "prune_low_magnitude", "quantize_model", "Distiller", "SWA", CONTROL)
QUICK = ("Adam", "LRScheduler", "SharpnessAware", "quantize_model", CONTROL)  # a callback, a wrapper model, QAT
SIDES = ("1 process", "2 workers")
# A model's one cycle (LRScheduler, OneCyclePolicy) spans all its fits here: a fit past the cycle is refused, and a
# step costs the same anywhere in it.
CYCLE_FITS = 100


def _variant(name, steps):
    """(compiled model, callbacks()) of variant `name`; `callbacks()` makes new ones for each fit, as a script does."""
    model, optimizer, callbacks = digits_cnn(), keras.optimizers.Adam(1e-3), list
    if name == "LRScheduler":
        callbacks = lambda: [tfopt.callbacks.LRScheduler(tfopt.schedules.OneCycle(1e-2, steps))]  # noqa: E731
    elif name == "OneCyclePolicy":
        callbacks = lambda: [tfopt.callbacks.OneCyclePolicy(max_lr=1e-2, total_steps=steps)]  # noqa: E731
    elif name in ("RAdam", "AdaBelief"):
        optimizer = getattr(tfopt.optimizers, name)(1e-3)
    elif name == "Lookahead(Adam)":
        optimizer = tfopt.optimizers.Lookahead(optimizer)
    elif name == "SharpnessAware":
        model = tfopt.models.SharpnessAware(model, rho=0.05)
    elif name == "prune_low_magnitude":
        model = tfopt.prune.prune_low_magnitude(model, tfopt.prune.ConstantSparsity(0.8, begin_step=0, frequency=10))
        callbacks = lambda: [tfopt.prune.UpdatePruningStep()]  # noqa: E731
    elif name == "quantize_model":
        model = tfopt.quantize.quantize_model(model)
    elif name == "Distiller":
        model = tfopt.distill.Distiller(digits_cnn(seed=1), model, tfopt.distill.SoftTargets(temperature=2.0))
    elif name == "SWA":  # averages at each epoch's end; BatchNorm statistics are not recomputed (update_bn=False)
        callbacks = lambda: [tfopt.callbacks.SWA(start_epoch=0, update_bn=False)]  # noqa: E731
    return compile_for_digits(model, optimizer), callbacks


class _Clock(keras.callbacks.Callback):
    """Wall-clock seconds of a fit from the end of its first step to its end: what the steps cost, without the
    fit's start (under 2 workers ~0.3 s: distributing the dataset, first step). A worker's steps include waiting
    for the other worker."""

    def on_train_begin(self, logs=None):
        self.start = None

    def on_train_batch_end(self, batch, logs=None):
        if self.start is None:
            self.start = time.perf_counter()

    def on_train_end(self, logs=None):
        self.seconds = time.perf_counter() - self.start


def _fit(model, callbacks, dataset, epochs):
    """Fits `epochs` epochs of the digits (22 global batches each); returns the `_Clock`'s seconds."""
    clock = _Clock()
    model.fit(dataset, epochs=epochs, steps_per_epoch=STEPS_PER_EPOCH, verbose=0, shuffle=False,
              callbacks=[*callbacks(), clock])
    return clock.seconds


def _rounds(workers, names, epochs, per_set):
    """The rounds of one worker process: under the multi-worker strategy if `workers` > 1, else plain Keras."""
    _timing.one_thread()
    import tensorflow as tf

    from tfopt.demo.data import load_digits_split

    scope = tfopt.distribute.MultiWorkerMirroredStrategy().scope if workers > 1 else contextlib.nullcontext
    split = load_digits_split()
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    dataset = (tf.data.Dataset.from_tensor_slices((split.x_train, split.y_train)).batch(BATCH, drop_remainder=True)
               .cache().repeat().with_options(options))

    def maker(name):
        def make():
            with scope():
                model, callbacks = _variant(name, CYCLE_FITS * epochs * STEPS_PER_EPOCH)
            for _ in range(2):  # traces, then warms up
                model.fit(dataset, steps_per_epoch=2, verbose=0, shuffle=False, callbacks=callbacks())
            return functools.partial(_fit, model, callbacks, dataset, epochs)
        return make

    return _timing.Rounds({name: maker(name) for name in names}, per_set, measure=lambda run: run())


class _Process(_timing.Worker):
    """One worker process of a side; `send` starts a round, `receive` returns its times (the workers of a cluster
    run each round together, so all are sent to before any is read from)."""

    def send(self):
        self.process.stdin.write("round\n")
        self.process.stdin.flush()

    def receive(self):
        return json.loads(self._answer("{"))


def _free_ports(count):
    """`count` TCP ports on 127.0.0.1 that were free a moment ago."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]


def _side(workers, args, log):
    """The `workers` processes of one side, started; with more than one, a cluster configured by TF_CONFIG."""
    cluster = {"worker": [f"127.0.0.1:{port}" for port in _free_ports(workers)]}
    processes = []
    for index in range(workers):
        config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}) if workers > 1 else ""
        processes.append(_Process(__file__, ["--worker", str(workers), *args], {"TF_CONFIG": config}, log))
    return processes


def _round(processes):
    """{name: seconds of the round's two fits}, averaged over the side's processes."""
    for process in processes:
        process.send()
    answers = [process.receive() for process in processes]
    return {name: statistics.mean(answer[name] for answer in answers) for name in answers[0]}


def measure(quick, epochs, rounds, per_set):
    """{side: {name: [seconds per round]}}, the sides taking turns round by round."""
    args = ["--epochs", str(epochs), "--per-set", str(per_set), *(["--quick"] if quick else [])]
    with tempfile.TemporaryFile(mode="w+") as log:
        processes = {side: _side(workers, args, log) for side, workers in zip(SIDES, (1, 2))}
        everyone = sum(processes.values(), [])
        try:
            for process in everyone:
                process.wait_ready()
            return _timing.in_turns({side: lambda side=side: _round(processes[side]) for side in SIDES}, rounds)
        except BaseException:
            for process in everyone:
                process.process.kill()  # a cluster's other worker may wait for the failed one forever
            raise
        finally:
            for process in everyone:
                process.close()


def _cell(values, digits=3):
    return f"{statistics.median(values):.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})"


def report(times, epochs, rounds, per_set):
    steps = epochs * STEPS_PER_EPOCH - 1  # timed steps per fit
    names = list(times[SIDES[0]])
    ratios, speeds = {}, {}
    for side in SIDES:
        side_times = times[side]
        baseline = [(adam + control) / 2 for adam, control in zip(side_times["Adam"], side_times[CONTROL])]
        ratios[side] = {name: [value / base for value, base in zip(side_times[name], baseline)]
                        for name in names}
        ratios[side][CONTROL] = _timing.per_round(side_times, CONTROL, "Adam")
        speeds[side] = {name: [2 * steps / value for value in side_times[name]] for name in names}
    print(f"digits CNN, global batch {BATCH} (32 per worker under 2 workers), fits of {epochs} epochs of "
          f"{STEPS_PER_EPOCH} steps (the last {steps} timed), {rounds} rounds of 2 fits per variant and side, new "
          f"models every {per_set} rounds; wall-clock steps/s; load average {os.getloadavg()[0]:.2f}")
    print(f"\n{'variant':<22}{'steps/s, 1 process':>20}{'steps/s, 2 workers':>20}{'÷ Adam, 1 process':>22}"
          f"{'÷ Adam, 2 workers':>22}{'2 workers ÷ 1 process':>24}")
    relative = {name: [two / one for one, two in zip(ratios[SIDES[0]][name], ratios[SIDES[1]][name])]
                for name in names}
    for name in names:
        print(f"{name:<22}{_cell(speeds[SIDES[0]][name], 0):>20}{_cell(speeds[SIDES[1]][name], 0):>20}"
              f"{_cell(ratios[SIDES[0]][name]):>22}{_cell(ratios[SIDES[1]][name]):>22}{_cell(relative[name]):>24}")
    speedup = [two / one for one, two in zip(speeds[SIDES[0]]["Adam"], speeds[SIDES[1]]["Adam"])]
    print("\n" + _timing.ratio_line("Adam steps/s, 2 workers ÷ 1 process", speedup))
    print("÷ Adam: step time ÷ the mean of the two Adam models' (the control row: one ÷ the other, should be 1)")
    noise = max(0.05, abs(statistics.median(relative[CONTROL]) - 1))
    over = [f"{name} ({statistics.median(relative[name]):.3f})" for name in names
            if name not in ("Adam", CONTROL) and statistics.median(relative[name]) > 1 + noise]
    print(f"goal: each feature's ÷ Adam no larger under 2 workers than under 1 process (last column <= 1, give or "
          f"take the control's {noise:.3f}): " + (f"NOT met for {', '.join(over)}" if over else "met"))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=None, help="rounds per side (5; quick: 2)")
    parser.add_argument("--epochs", type=int, default=None, help="digits epochs per fit (3; quick: 1)")
    parser.add_argument("--per-set", type=int, default=5, help="rounds per set of new models")
    parser.add_argument("--quick", action="store_true", help=f"a few short rounds of {', '.join(QUICK)} only")
    parser.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    rounds = args.rounds or (2 if args.quick else 5)
    epochs = args.epochs or (1 if args.quick else 3)
    if args.worker:
        _timing.serve(_rounds(args.worker, QUICK if args.quick else VARIANTS, epochs, args.per_set))
        return
    print(_timing.THREADS_NOTE + " in each worker process")
    report(measure(args.quick, epochs, rounds, args.per_set), epochs, rounds, args.per_set)


if __name__ == "__main__":
    main(sys.argv[1:])
