"""`tfopt export | inspect | evaluate | bench` in process, on files in tmp_path."""

import numpy as np
import pytest

from tfopt import cli, export


@pytest.fixture(scope="module")
def files(digits_model, digits, tmp_path_factory):
    """The trained digits model as .keras, calibration inputs and the test split as .npz."""
    folder = tmp_path_factory.mktemp("cli")
    digits_model.save(folder / "digits.keras")
    np.savez(folder / "train.npz", x=digits.x_train[:100])
    np.savez(folder / "test.npz", x=digits.x_test, y=digits.y_test)
    return folder


def test_export_inspect_evaluate_bench_round_trip(files, digits, capsys):
    tflite = files / "digits.tflite"
    argv = ["export", str(files / "digits.keras"), "--quantization", "int8", "--calibration", str(files / "train.npz")]
    assert cli.main([*argv, "-o", str(tflite), "--int8-io"]) == 0
    out = capsys.readouterr().out
    assert f"wrote {tflite.stat().st_size} bytes to {tflite}" in out and "calibrating on 100 samples" in out
    assert "Saved artifact" not in out  # the converter's chatter is silenced

    assert cli.main(["inspect", str(tflite)]) == 0
    assert "int8 [-1, 8, 8, 1] scale=" in capsys.readouterr().out  # the input line: int8_io took effect

    assert cli.main(["evaluate", str(tflite), "--data", str(files / "test.npz")]) == 0
    out = capsys.readouterr().out
    table = str(export.evaluate(tflite, digits.x_test, digits.y_test, task="classification"))
    assert out.endswith(table + "\n")  # each class, macro, then accuracy
    assert [line.split()[0] for line in table.splitlines()[1:]] == [*map(str, range(10)), "macro", "accuracy:"]
    accuracy = float(out.split("accuracy:")[1])
    assert accuracy == pytest.approx(export.evaluate(tflite, digits.x_test, digits.y_test)["accuracy"], abs=1e-4)
    assert accuracy > 0.9

    assert cli.main(["bench", str(tflite), "--runs", "5"]) == 0
    assert "(5 runs, 1 thread)" in capsys.readouterr().out


def test_evaluate_prints_the_table_of_a_keras_file_and_of_a_regressor(files, digits_model, digits, tmp_path,
                                                                        capsys):
    assert cli.main(["evaluate", str(files / "digits.keras"), "--data", str(files / "test.npz")]) == 0
    table = str(export.evaluate(digits_model, digits.x_test, digits.y_test, task="classification"))
    assert capsys.readouterr().out.endswith(table + "\n") and "macro" in table

    import keras

    regressor = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    x, y = np.ones((5, 3), "float32"), np.zeros((5, 2), "float32")
    (tmp_path / "regressor.tflite").write_bytes(export.to_tflite(regressor))
    np.savez(tmp_path / "targets.npz", x=x, y=y)
    argv = ["evaluate", str(tmp_path / "regressor.tflite"), "--data", str(tmp_path / "targets.npz")]
    assert cli.main([*argv, "--task", "regression"]) == 0
    lines = capsys.readouterr().out.splitlines()[1:]
    mse = float(np.mean(np.asarray(regressor(x)) ** 2))
    assert [line.split(":")[0] for line in lines] == ["mse", "rmse", "mae"]
    assert float(lines[0].split()[1]) == pytest.approx(mse, abs=1e-4)


def test_inspect_prints_the_op_table(files, float_tflite, capsys):
    (files / "float.tflite").write_bytes(float_tflite)
    assert cli.main(["inspect", str(files / "float.tflite")]) == 0
    out = capsys.readouterr().out
    assert f"{len(float_tflite)} bytes" in out and "DEPTHWISE_CONV_2D  float32" in out


def test_export_refuses_to_overwrite_without_the_flag(files, capsys):
    output = files / "existing.tflite"
    output.write_bytes(b"keep")
    assert cli.main(["export", str(files / "digits.keras"), "-o", str(output)]) == 1
    assert f"{output} already exists: pass --overwrite to replace it" in capsys.readouterr().err
    assert output.read_bytes() == b"keep"
    assert cli.main(["export", str(files / "digits.keras"), "-o", str(output), "--overwrite"]) == 0
    assert output.read_bytes()[4:8] == b"TFL3"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["export", "{missing}"], "no such model file: {missing}"),
        (["inspect", "{missing}"], "no such TFLite file: {missing}"),
        (["bench", "{missing}"], "no such TFLite file: {missing}"),
        (["evaluate", "{float}", "--data", "{missing}"], "no such data file: {missing}"),
        (["evaluate", "{float}", "--data", "{test}", "--y-key", "labels"], "has no array 'labels' (it has: x, y)"),
        (["export", "{float}"], "cannot load {float} as a Keras model"),
        (["inspect", "{test}"], "{test} is not a TFLite flatbuffer"),
        (["evaluate", "{float}", "--data", "{damaged}"], "cannot read {damaged} as a .npz archive: File is not a zip"),
        (["export", "{keras}", "--calibration", "{damaged}"], "cannot read {damaged} as a .npz archive"),
        (["export", "{keras}", "--quantization", "int8", "-o", "{missing}"],
         "--quantization int8 needs --calibration: an .npz of inputs to calibrate on"),
        (["evaluate", "{float}", "--data", "{npy}"], "cannot read {npy} as a .npz archive: it holds a single array"),
    ],
    ids=["export", "inspect", "bench", "evaluate-data", "npz-key", "not-keras", "not-tflite", "damaged-npz",
         "damaged-calibration", "int8-without-calibration", "npy-not-npz"],
)
def test_errors_are_one_line_on_stderr(files, float_tflite, capsys, argv, message):
    (files / "float.tflite").write_bytes(float_tflite)
    (files / "damaged.npz").write_bytes(b"PK\003\004junk")
    np.save(files / "single.npy", np.zeros(3))
    names = {"missing": files / "missing.file", "float": files / "float.tflite", "test": files / "test.npz",
             "damaged": files / "damaged.npz", "npy": files / "single.npy", "keras": files / "digits.keras"}
    assert cli.main([arg.format(**names) for arg in argv]) == 1
    err = capsys.readouterr().err
    assert message.format(**names) in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_export_refuses_a_file_that_carries_code(tmp_path, capsys):
    import keras

    inputs = keras.Input((4,))
    keras.Model(inputs, keras.layers.Lambda(lambda x: x * 2.0)(inputs)).save(tmp_path / "lambda.keras")
    assert cli.main(["export", str(tmp_path / "lambda.keras"), "-o", str(tmp_path / "out.tflite")]) == 1
    err = capsys.readouterr().err
    assert f"cannot load {tmp_path / 'lambda.keras'} as a Keras model" in err and "safe_mode" in err
    assert not (tmp_path / "out.tflite").exists()


def test_export_of_a_qat_model_needs_no_calibration(digits_model, digits, tmp_path, capsys):
    import tfopt

    quantized = tfopt.quantize.quantize_model(digits_model)
    quantized.compile("adam", "sparse_categorical_crossentropy")
    quantized.fit(digits.x_train[:64], digits.y_train[:64], epochs=1, verbose=0)  # learns the activation ranges
    quantized.save(tmp_path / "qat.keras")
    assert cli.main(["export", str(tmp_path / "qat.keras"), "--quantization", "int8"]) == 0
    summary = export.inspect(tmp_path / "qat.tflite")
    kernels = summary.ops_of("CONV_2D") + summary.ops_of("FULLY_CONNECTED")
    assert kernels and all(op.inputs[:2] == ("int8", "int8") for op in kernels)
