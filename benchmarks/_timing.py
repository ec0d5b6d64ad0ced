"""What every benchmark shares: TensorFlow held to one thread, interleaved rounds, ratios printed with their spread.

Import this module before TensorFlow. With TensorFlow's default thread pools on a 2-core machine, each model
instance trains at one of two speeds, 2x apart, chosen at random for its life (../shared/FACTS.md, "Timing trap"),
so a ratio of two instances can be off by 1.7x. Held to one thread, identical instances run at the same speed.
Rounds interleave the compared variants (A, B, A, B) so a slow spell of the machine hits both, and each ratio is
printed as the median of its per-round ratios with their min-max.

Example:
    >>> import _timing
    >>> _timing.ratio_line("B / A", [1.02, 0.98, 1.01])
    'B / A: 1.010 (spread 0.980-1.020 over 3 rounds)'
"""

import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Children (the tf_keras side of a benchmark) inherit these; TensorFlow reads them when it starts its runtime.
os.environ["TF_NUM_INTRAOP_THREADS"] = "1"
os.environ["TF_NUM_INTEROP_THREADS"] = "1"

THREADS_NOTE = "TensorFlow held to 1 thread (intra-op and inter-op parallelism 1)"
CPU_NOTE = "times are this process's CPU time, which other jobs on the machine stretch far less than wall time"


def one_thread():
    """Holds TensorFlow to one thread (call before any TensorFlow op); returns the note a benchmark prints."""
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    return THREADS_NOTE


def cpu_seconds(run):
    """CPU seconds this process spends in `run()` (other jobs on a shared machine stretch wall time far more)."""
    start = time.process_time()
    run()
    return time.process_time() - start


def rotated(names, shift):
    """`names` as a list rotated left by `shift`."""
    names = list(names)
    shift %= len(names)
    return names[shift:] + names[:shift]


def round_order(names, round_index):
    """Each name twice, never twice in a row (a model that has just run runs faster): A B C A B C, then rotated
    by one each round (B C A B C A, ...) so that every variant takes every place."""
    names = list(names)
    return 2 * rotated(names, round_index if len(names) > 2 else 0)


def interleaved_round(runs, round_index, measure=cpu_seconds):
    """{name: measure(run) summed over two turns}, the `runs` ({name: run}) taking turns as `round_order` says.
    Python's garbage collector runs before the round, not during it (as `timeit` does)."""
    totals = dict.fromkeys(runs, 0.0)
    gc.collect()
    gc.disable()
    try:
        for name in round_order(runs, round_index):
            totals[name] += measure(runs[name])
    finally:
        gc.enable()
    return totals


def warmed(run):
    """`run` after two untimed calls: the first traces, the second warms up."""
    run()
    run()
    return run


class Rounds:
    """Interleaved rounds over the variants that `makers` ({name: make() -> run}) make, all made anew every
    `per_set` rounds so that no instance's own speed decides a ratio, each time in an order rotated by one (the
    first model made after the previous ones are let go tends to run a few percent slower)."""

    def __init__(self, makers, per_set, measure=cpu_seconds):
        self.makers, self.per_set, self.measure = makers, per_set, measure
        self.done, self.runs = 0, None

    def _make(self):
        made = {name: self.makers[name]() for name in rotated(self.makers, self.done // self.per_set)}
        return {name: made[name] for name in self.makers}

    def __call__(self):
        if self.done % self.per_set == 0:
            self.runs = None  # let the previous instances go before making new ones
            self.runs = self._make()
            settle(self.runs)
        self.done += 1
        return interleaved_round(self.runs, self.done - 1, self.measure)


def settle(runs):
    """Collects the garbage and runs each of `runs` once, untimed: TensorFlow frees the resources of collected
    models while the next op runs, which made the first timed fit after a new set up to 2.5x slower."""
    gc.collect()
    for run in runs.values():
        run()


def fit_rounds(keras_module, models, dataset, steps, per_set, callbacks=None):
    """`Rounds` over `models` ({name: build() -> model}) of `keras_module` (Keras 3 or tf_keras), each compiled with
    Adam and sparse cross-entropy, timed fitting `steps` steps of `dataset`; `callbacks` ({name: [...]}) go to the
    fits of the named models."""
    callbacks = callbacks or {}

    def maker(name):
        def make():
            model = models[name]()
            model.compile(keras_module.optimizers.Adam(1e-3),
                          keras_module.losses.SparseCategoricalCrossentropy(from_logits=True))
            return warmed(lambda: model.fit(dataset, epochs=1, steps_per_epoch=steps, verbose=0, shuffle=False,
                                            callbacks=callbacks.get(name, [])))
        return make

    return Rounds({name: maker(name) for name in models}, per_set)


def collect(rounds):
    """[{name: value}, ...] per round -> {name: [value, ...]}."""
    return {name: [values[name] for values in rounds] for name in rounds[0]}


def per_round(times, name, base):
    """The per-round ratios `times[name][i] / times[base][i]`."""
    return [value / reference for value, reference in zip(times[name], times[base])]


def ratio_line(label, ratios, note=None):
    """`label: median (spread min-max over n rounds)`, then `; note` if given."""
    text = (f"{label}: {statistics.median(ratios):.3f} "
            f"(spread {min(ratios):.3f}-{max(ratios):.3f} over {len(ratios)} rounds)")
    return f"{text}; {note}" if note else text


def in_turns(sides, rounds):
    """{side: {name: [value per round]}}: the `sides` ({side: run_round}) take turns, the first one alternating."""
    results = {side: [] for side in sides}
    for index in range(rounds):
        for side in list(sides) if index % 2 == 0 else list(sides)[::-1]:
            results[side].append(sides[side]())
    return {side: collect(values) for side, values in results.items()}


def with_tf_keras_worker(local_rounds, script, args, rounds, sides):
    """`in_turns` over this process's rounds (`local_rounds()` makes them) and those of `script args` run as a
    worker under TF_USE_LEGACY_KERAS=1; `sides` names the two."""
    with tempfile.TemporaryFile(mode="w+") as log:
        worker = Worker(script, args, {"TF_USE_LEGACY_KERAS": "1"}, log)  # sets up while this process does
        try:
            turns = {sides[0]: local_rounds(), sides[1]: worker.round}
            worker.wait_ready()
            return in_turns(turns, rounds)
        finally:
            worker.close()


def serve(run_round):
    """A worker's side of `Worker`: says "ready", then answers each line read with `run_round()` as JSON."""
    print("ready", flush=True)
    for _ in sys.stdin:
        print(json.dumps(run_round()), flush=True)


class Worker:
    """A benchmark script run in a child process (e.g. under TF_USE_LEGACY_KERAS=1), driven one round at a time;
    its stderr goes to the open file `log`, shown if it fails."""

    def __init__(self, script, args, env, log):
        self.log = log
        self.process = subprocess.Popen(
            [sys.executable, os.path.abspath(script), *args], env={**os.environ, **env}, stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=self.log, text=True,
        )

    def _answer(self, start):
        """The worker's next line that starts with `start` (anything else it prints is skipped)."""
        for line in self.process.stdout:
            if line.startswith(start):
                return line
        self.process.wait()
        self.log.seek(0)
        raise RuntimeError(f"the benchmark worker exited with code {self.process.returncode}:\n"
                           f"{self.log.read()[-3000:]}")

    def wait_ready(self):
        self._answer("ready")

    def round(self):
        """Runs one round in the worker; returns what its `run_round()` returned."""
        self.process.stdin.write("round\n")
        self.process.stdin.flush()
        return json.loads(self._answer("{"))

    def close(self):
        self.process.stdin.close()
        self.process.wait()
