"""``mnist-exp-report SWEEP``: rebuild a sweep's leaderboard.

    mnist-exp-report outputs/multirun/2026-11-24_10-00-00-123456   # a sweep dir
    mnist-exp-report 3f2a...c9                                     # a parent run id

Writes ``summary.md``, ``summary.csv`` and the objective plots
(:mod:`mnist_experiments.workflows.leaderboard`); optionally logs them to the sweep's
parent run and registers the best job's model.

Exit status: 0 on success, 2 on an error the user can fix (no such sweep or run).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import List, Optional

from mnist_experiments.commands import add_version
from mnist_experiments.errors import UserError
from mnist_experiments.launch import signals


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mnist-exp-report",
        description="Rebuild the leaderboard (summary.md, summary.csv, plots) of a sweep "
                    "from its sweep dir or from its MLflow parent run id.",
    )
    parser.add_argument("sweep", help="a sweep dir (outputs/multirun/...) or a parent run id")
    parser.add_argument("--tracking-uri", help="MLflow store (default: $MLFLOW_TRACKING_URI, "
                                               "else sqlite:///mlflow.db in this directory)")
    parser.add_argument("--out", help="where to write the files (default: the sweep dir)")
    parser.add_argument("--log", action="store_true",
                        help="also log the leaderboard to the sweep's parent run")
    parser.add_argument("--register", metavar="NAME",
                        help="register the best job's model under NAME in the model registry")
    parser.add_argument("--alias", help="with --register: point this alias (e.g. champion) "
                                        "at the new version")
    add_version(parser)
    return parser


@signals.stoppable("mnist-exp-report")
def main(argv: Optional[List[str]] = None) -> int:
    """Run the command; return its exit status."""
    args = build_parser().parse_args(argv)
    try:
        from mnist_experiments.workflows.leaderboard import (  # heavy
            build_report,
            locate_sweep,
        )

        sweep_dir, uri, parent_run_id = locate_sweep(args.sweep, args.tracking_uri)
        report = build_report(sweep_dir, uri, parent_run_id, log_to_parent=args.log,
                              out_dir=Path(args.out) if args.out else None,
                              register_as=args.register, register_alias=args.alias)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(report.markdown)
    print("wrote " + ", ".join(str(p) for p in report.files))
    if report.registered:
        print(f"registered the best model as {report.registered}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
