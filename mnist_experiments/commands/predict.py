"""``mnist-exp-predict``: classify pictures of handwritten digits with a logged model.

    mnist-exp-predict MODEL IMAGE [IMAGE ...] [--json] [--tracking-uri URI]

Each image (PNG or JPEG; any size; dark ink on a light background or light on dark) is
preprocessed like MNIST (:mod:`mnist_experiments.data.images`) and classified by the
model (:mod:`mnist_experiments.workflows.predict`). One line per file: the path, the
predicted class name and its probability. ``--json`` prints a JSON list instead, one
object per file in the order given: ``{"file", "label", "class_name", "probability",
"probabilities"}``, or ``{"file", "error"}`` for a file that could not be read.

Exit status: 0 if every file was classified, 1 if some file could not be read (the
others are still classified; each failure is reported on stderr and, with ``--json``,
in the list), 2 if nothing could be done (a bad MODEL, no tracking store, bad usage).
The files are read and checked (exist, readable, at most 64 MiB and 4096x4096 pixels)
before the model is loaded; if none can be read, the model is not loaded (exit 1).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, Dict, Optional, Sequence

from mnist_experiments.commands import add_version
from mnist_experiments.errors import UserError
from mnist_experiments.launch import heap, signals

EXIT_OK = 0


EXIT_SOME_FAILED = 1


EXIT_ERROR = 2


DESCRIPTION = """\
Classify pictures of handwritten digits with a model logged by mnist-exp.

Each picture (PNG or JPEG, any size, dark-on-light or light-on-dark) is turned into an
MNIST-style 28x28 image: grayscale, inverted if its background is light, cropped to the
digit, fitted into 20x20 and centred by centre of mass."""


EPILOG = """\
MODEL is a run id, runs:/<run id>/model, models:/<name>/<version>,
models:/<name>@<alias>, models:/m-<id> or a local model directory.

examples:
  mnist-exp-predict 3f9c...e1 digit.png scan.jpg
  mnist-exp-predict models:/digits-cnn@champion photos/*.jpg --json

exit status: 0 all files classified, 1 some file could not be read (the rest are
classified), 2 error (bad MODEL, no tracking store, bad usage)."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mnist-exp-predict", description=DESCRIPTION, epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", metavar="MODEL", help="the logged model (see below)")
    parser.add_argument("images", metavar="IMAGE", nargs="+", help="image files to classify")
    parser.add_argument("--json", action="store_true",
                        help="print a JSON list (one object per file) instead of a table")
    parser.add_argument("--tracking-uri", metavar="URI", default=None,
                        help="MLflow tracking store (default: $MLFLOW_TRACKING_URI, else "
                             "sqlite:///<current dir>/mlflow.db)")
    add_version(parser)
    return parser


def format_table(results: Sequence[Dict[str, Any]]) -> str:
    """The classified files as aligned lines: path, class name, probability."""
    ok = [r for r in results if "error" not in r]
    if not ok:
        return ""
    width = max(len(r["file"]) for r in ok)
    name_width = max(len(r["class_name"]) for r in ok)
    return "\n".join(f"{r['file']:<{width}}  {r['class_name']:<{name_width}}  "
                     f"{r['probability']:.4f}" for r in ok)


@signals.stoppable("mnist-exp-predict")
def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command; return (and, from the console script, exit with) its status."""
    args = build_parser().parse_args(argv)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

    # the files first (Pillow and NumPy only): a missing, unreadable or oversized file
    # is reported at once, not after the ~10 s the model takes to load
    from mnist_experiments.data.images import preprocess_files

    prepared = preprocess_files(args.images)
    for item in prepared:
        if isinstance(item, str):
            print(f"mnist-exp-predict: {item}", file=sys.stderr)
    if all(isinstance(item, str) for item in prepared):  # nothing to classify
        if args.json:
            print(json.dumps([{"file": f, "error": e} for f, e in zip(args.images, prepared)],
                             indent=2))
        print("mnist-exp-predict: no file could be read, so the model was not loaded.",
              file=sys.stderr)
        return EXIT_SOME_FAILED

    with heap.heavy_imports():
        from mnist_experiments.tracking.models import load  # heavy: TensorFlow, MLflow
        from mnist_experiments.workflows.predict import classify

    try:
        loaded = load(args.model, tracking_uri=args.tracking_uri)
    except UserError as exc:
        print(f"mnist-exp-predict: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    for warning in loaded.warnings:
        print(f"mnist-exp-predict: warning: {warning}", file=sys.stderr)

    results = classify(loaded.model, loaded.class_names, args.images, prepared)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        table = format_table(results)
        if table:
            print(table)
    sys.stdout.flush()
    return EXIT_SOME_FAILED if any("error" in r for r in results) else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
