"""The `tfopt export | inspect | evaluate | bench` subcommands: `tfopt.export` for .keras, .tflite and .npz files.

Data files are NumPy `.npz` archives: `x` holds the inputs (batch axis first) and, for `evaluate`, `y` the labels;
`--x-key` and `--y-key` name other arrays. Errors print one line on stderr and exit with status 1.

Example:
    tfopt export model.keras --quantization int8 --calibration train.npz -o model.tflite
    tfopt inspect model.tflite
    tfopt evaluate model.tflite --data test.npz
    tfopt bench model.tflite --runs 100 --threads 1
"""

import functools
import os
import sys
import zipfile

import numpy as np

from tfopt import export

_ERRORS = (OSError, ValueError, TypeError, KeyError, RuntimeError)


def _reports_errors(handler):
    """Turns the errors a user can cause (missing files, bad data) into one line on stderr and exit status 1."""

    @functools.wraps(handler)
    def run(args):
        try:
            return handler(args)
        except _ERRORS as error:
            message = error.args[0] if isinstance(error, KeyError) and error.args else error
            print(f"tfopt {args.command}: error: {message}", file=sys.stderr)
            return 1

    return run


def _array(path, key):
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no such data file: {path}")
    try:
        archive = np.load(path, allow_pickle=False)
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise ValueError("it holds a single array (.npy), not named arrays")
        with archive:
            if key not in archive.files:
                raise KeyError(f"{path} has no array {key!r} (it has: {', '.join(archive.files) or 'none'})")
            return archive[key]
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as error:  # a damaged or foreign file
        raise ValueError(f"cannot read {path} as a .npz archive: {str(error).splitlines()[0]}") from error


def _load_model(path):
    import keras

    if not os.path.isfile(path):
        raise FileNotFoundError(f"no such model file: {path}")
    try:
        return keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as error:  # Keras raises many types for a damaged or foreign file
        raise ValueError(f"cannot load {path} as a Keras model: {str(error).splitlines()[0]}") from error


@_reports_errors
def _export(args):
    output = args.output or os.path.splitext(args.model)[0] + ".tflite"
    print(f"loading {args.model}", flush=True)
    model = _load_model(args.model)
    calibration = None
    if args.calibration:
        calibration = _array(args.calibration, args.x_key)
        print(f"calibrating on {min(len(calibration), 200)} samples of {args.calibration}", flush=True)
    elif args.quantization == "int8" and not export.is_quantization_aware(model):
        raise ValueError("--quantization int8 needs --calibration: an .npz of inputs to calibrate on (100-200 "
                         "training samples), unless the model is quantization-aware (tfopt.quantize)")
    if os.path.exists(output) and not args.overwrite:  # to_tflite would name its `overwrite=True`
        raise FileExistsError(f"{output} already exists: pass --overwrite to replace it")
    print(f"converting to TFLite ({args.quantization or 'float32'})", flush=True)
    flatbuffer = export.to_tflite(
        model, args.quantization, calibration, path=output, int8_io=args.int8_io, overwrite=args.overwrite
    )
    print(f"wrote {len(flatbuffer)} bytes to {output}", flush=True)
    return 0


@_reports_errors
def _inspect(args):
    print(export.inspect(args.tflite))
    return 0


@_reports_errors
def _evaluate(args):
    x, y = _array(args.data, args.x_key), _array(args.data, args.y_key)
    model = _load_model(args.tflite) if args.tflite.endswith(".keras") else args.tflite
    print(f"evaluating {args.tflite} on {len(x)} samples of {args.data}", flush=True)
    print(export.evaluate(model, x, y, task=args.task, batch_size=args.batch_size))
    return 0


@_reports_errors
def _bench(args):
    print(f"timing {args.runs} single-sample runs of {args.tflite}", flush=True)
    print(export.benchmark(args.tflite, runs=args.runs, threads=args.threads, warmup=args.warmup))
    return 0


def register(commands):
    """Adds the export, inspect, evaluate and bench subcommands to `commands` (argparse subparsers)."""
    parser = commands.add_parser("export", help="convert a .keras model to .tflite")
    parser.add_argument("model", help="a .keras file (loaded with safe_mode=True)")
    parser.add_argument("--quantization", choices=["float16", "dynamic", "int8"], default=None,
                        help="default: none (float32)")
    parser.add_argument("--calibration", help='.npz with inputs in "x" (needed by int8 unless the model is QAT)')
    parser.add_argument("-o", "--output", help="the .tflite file (default: the model's name with .tflite)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    parser.add_argument("--int8-io", action="store_true", help="int8 input and output tensors (with int8)")
    parser.add_argument("--x-key", default="x", help='the inputs\' array in the .npz (default: "x")')
    parser.set_defaults(handler=_export)

    parser = commands.add_parser("inspect", help="list a .tflite file's ops, tensor types and size")
    parser.add_argument("tflite")
    parser.set_defaults(handler=_inspect)

    parser = commands.add_parser("evaluate", help="accuracy, precision, recall and F1 per class (or MSE, RMSE and "
                                 "MAE) of a .tflite file with the LiteRT interpreter, or of a .keras model")
    parser.add_argument("tflite", help="a .tflite file, or a .keras model (loaded with safe_mode=True)")
    parser.add_argument("--task", choices=["classification", "regression"], default="classification",
                        help="default: classification (per class and macro precision, recall and F1)")
    parser.add_argument("--data", required=True, help='.npz with inputs "x" and integer or one-hot labels "y"')
    parser.add_argument("--x-key", default="x", help='the inputs\' array (default: "x")')
    parser.add_argument("--y-key", default="y", help='the labels\' array (default: "y")')
    parser.add_argument("--batch-size", type=int, default=32)
    parser.set_defaults(handler=_evaluate)

    parser = commands.add_parser("bench", help="latency of one single-sample run of a .tflite file")
    parser.add_argument("tflite")
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--warmup", type=int, default=10)
    parser.set_defaults(handler=_bench)
