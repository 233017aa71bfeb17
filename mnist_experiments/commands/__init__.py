"""Console scripts: argument parsing only; each calls a workflow.

Light: ``--help`` imports neither TensorFlow nor MLflow.
"""

from __future__ import annotations

import argparse

PACKAGE = "mnist-experiments"


def version_text(prog: str) -> str:
    """``<prog> <version>``: the installed package's version (``importlib.metadata``)."""
    from importlib import metadata

    try:
        version = metadata.version(PACKAGE)
    except metadata.PackageNotFoundError:  # run from a source tree that is not installed
        from mnist_experiments import __version__ as version
    return f"{prog} {version}"


def add_version(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """``--version`` for an argparse command: prints :func:`version_text` and exits 0."""
    parser.add_argument("--version", action="version", version=version_text(parser.prog),
                        help="print the command's name and mnist-experiments' version")
    return parser
