"""The `tfopt` command line: `tfopt demo` runs the main job end to end; `export`, `inspect`, `evaluate` and `bench`
work on .keras and .tflite files (tfopt/export/cli.py).

Example:
    tfopt demo --out tfopt-demo
    tfopt export model.keras --quantization int8 --calibration train.npz -o model.tflite
"""

import argparse
import sys

from tfopt.export import cli as export_cli


def _demo(args):
    from tfopt.demo.run import run

    results = run(args.out, quick=args.quick)
    return 0 if args.quick or results["targets_met"] else 1


def build_parser():
    parser = argparse.ArgumentParser(prog="tfopt", description="Train faster, ship smaller Keras models.")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser(
        "demo", help="LR range test, one-cycle training, pruning, QAT and int8 export on scikit-learn's digits"
    )
    demo.add_argument("--out", default="tfopt-demo",
                      help="folder for the figures, results table and int8 .tflite (default: ./tfopt-demo)")
    demo.add_argument("--quick", action="store_true", help="a short run for smoke tests")
    demo.set_defaults(handler=_demo)
    export_cli.register(commands)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
