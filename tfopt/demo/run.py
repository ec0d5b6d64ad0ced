"""The demo pipeline on the digits: LR range test, one-cycle training of the teacher at the suggested rate, a
student 11x smaller distilled from it while pruned to 80%, then distilled again during quantization-aware training,
int8 export, and a final table of every stage's TFLite file (the student trained alone for comparison).

Example:
    >>> from tfopt.demo import run
    >>> results = run("/tmp/tfopt-demo", quick=True)  # doctest: +SKIP
    >>> results["rows"][-1].stage  # doctest: +SKIP
    'student distilled + pruned 80% + QAT int8'
"""

import math
import os

import keras

import tfopt
from tfopt.demo import report
from tfopt.demo.data import BATCH_SIZE, batches, load_digits_split, save_test_split
from tfopt.demo.measure import measure
from tfopt.demo.model import compile_for_digits, digits_cnn, digits_student
from tfopt.demo.prune_stage import LEARNING_RATE, distill_and_prune
from tfopt.demo.quantize_stage import quantize

ACCURACY_TARGET = 0.95
INT8_TOLERANCE = 0.01  # the int8 file may lose at most 1 point of the float model it was quantized from
INT8_FILE = "digits_int8.tflite"
TEST_FILE = "digits_test.npz"


def _find_rate(split, out, log):
    model = compile_for_digits(digits_cnn(), keras.optimizers.AdamW(1e-3))
    finder = tfopt.callbacks.find_lr(model, batches(split.x_train, split.y_train, True), num_steps=100)
    path = finder.plot(os.path.join(out, "lr_find.png"))
    rate = finder.suggestion()
    log(f"LR range test: {len(finder.lrs)} steps from {finder.lrs[0]:.1e} to {finder.lrs[-1]:.1e}; "
        f"suggested rate {rate:.2e} -> {path}")
    return rate


def _train_one_cycle(split, max_lr, epochs, out, log):
    train = batches(split.x_train, split.y_train, True)
    total_steps = epochs * math.ceil(len(split.x_train) / BATCH_SIZE)
    schedule = tfopt.schedules.OneCycle(max_lr=max_lr, total_steps=total_steps)
    path = tfopt.schedules.plot(schedule, total_steps, os.path.join(out, "schedule.png"))
    log(f"Training {epochs} epochs with AdamW + OneCycle(max_lr={max_lr:.2e}, total_steps={total_steps}) -> {path}")
    model = compile_for_digits(digits_cnn(), keras.optimizers.AdamW(learning_rate=schedule))
    model.fit(train, epochs=epochs, verbose=0, shuffle=False)  # the dataset shuffles itself
    _, accuracy = model.evaluate(batches(split.x_test, split.y_test, False), verbose=0)
    return model, float(accuracy)


def _train_student_alone(split, epochs, log):
    """The student trained on the labels alone, with the distilled student's optimizer and rate schedule."""
    steps = epochs * math.ceil(len(split.x_train) / BATCH_SIZE)
    rate = keras.optimizers.schedules.CosineDecay(LEARNING_RATE, steps)
    student = compile_for_digits(digits_student(), keras.optimizers.Adam(rate))
    student.fit(batches(split.x_train, split.y_train, True), epochs=epochs, verbose=0, shuffle=False)
    _, accuracy = student.evaluate(batches(split.x_test, split.y_test, False), verbose=0)
    log(f"Student alone ({student.count_params()} parameters), {epochs} epochs on the labels: test accuracy "
        f"{accuracy:.4f}")
    return student, float(accuracy)


def _measure_stages(split, stages):
    """Exports each (stage, Keras model, its accuracy, `to_tflite` keywords) and measures the file."""
    return [measure(stage, accuracy, tfopt.export.to_tflite(model, **keywords), split)
            for stage, model, accuracy, keywords in stages]


def _int8_verdict(rows, accuracy, log):
    int8_accuracy = rows[-1].tflite_accuracy
    met = int8_accuracy >= accuracy - INT8_TOLERANCE
    log(f"int8 TFLite accuracy: {int8_accuracy:.4f} vs the pruned float model {accuracy:.4f} "
        f"(target: within {INT8_TOLERANCE * 100:.0f} point: {'met' if met else 'NOT met'})")
    return met


def run(out="tfopt-demo", quick=False, log=print):
    """Runs every stage, writes its figures, table and int8 file to `out`, and returns the headline numbers: a dict
    with the rate, the accuracies, the table's `rows` (`tfopt.demo.measure.Row`) and `targets_met`."""
    os.makedirs(out, exist_ok=True)
    split = load_digits_split()
    log(f"Digits: {len(split.x_train)} training and {len(split.x_test)} test images (80/20 split).")
    max_lr = _find_rate(split, out, log)
    dense, accuracy = _train_one_cycle(split, max_lr, 4 if quick else 20, out, log)
    accuracy_met = accuracy >= ACCURACY_TARGET
    log(f"Test accuracy: {accuracy:.4f} (target >= {ACCURACY_TARGET}: {'met' if accuracy_met else 'NOT met'}); "
        f"this model ({dense.count_params()} parameters) is the teacher")
    student_epochs = 3 if quick else 30
    alone, alone_accuracy = _train_student_alone(split, student_epochs, log)
    pruned, pruned_accuracy = distill_and_prune(split, dense, digits_student(), epochs=student_epochs, log=log)
    qat, qat_accuracy = quantize(split, dense, pruned, epochs=1 if quick else 3, log=log)
    int8_path = os.path.join(out, INT8_FILE)
    int8 = {"quantization": "int8", "path": int8_path, "overwrite": True}
    rows = _measure_stages(split, [
        ("teacher float32", dense, accuracy, {}),
        ("teacher PTQ int8", dense, accuracy, {"quantization": "int8", "representative_data": split.x_train[:200]}),
        ("student alone float32", alone, alone_accuracy, {}),
        ("student distilled + pruned 80% float32", pruned, pruned_accuracy, {}),
        ("student distilled + pruned 80% + QAT int8", qat, qat_accuracy, int8),
    ])
    test_path = save_test_split(split, os.path.join(out, TEST_FILE))
    table_paths = report.save(rows, out)
    log("\n" + report.markdown(rows) + "\n\n-> " + " and ".join(table_paths))
    int8_met = _int8_verdict(rows, pruned_accuracy, log)
    log(f"Try the int8 file: tfopt inspect {int8_path}\n"
        f"                   tfopt evaluate {int8_path} --data {test_path}")
    return {
        "suggested_lr": max_lr,
        "test_accuracy": accuracy,
        "student_accuracy": alone_accuracy,
        "pruned_accuracy": pruned_accuracy,
        "qat_accuracy": qat_accuracy,
        "int8_accuracy": rows[-1].tflite_accuracy,
        "rows": rows,
        "targets_met": accuracy_met and int8_met,
    }
