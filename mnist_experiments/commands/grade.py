"""``mnist-exp-grade SUBMISSION... --out DIR``: reproduce a whole class and grade it.

    mnist-exp-grade class.csv --out grades/             # student,submission[,metric,claimed]
    mnist-exp-grade assignment-1 --out grades/          # every run of an MLflow experiment
    mnist-exp-grade submitted/ 3f2a...c9 --out grades/  # config files, run dirs, run ids

Each submission is reproduced as by ``mnist-exp-reproduce`` (verdicts REPRODUCED,
CONSISTENT, INCONSISTENT; ERROR for a submission that cannot be compared, with the
reason). Writes ``DIR/grades.csv`` and ``DIR/grades.md`` (one row per submission, in
the order given, and a count per verdict) after every submission; run again with the
same ``--out`` to continue, skipping what is already graded
(:mod:`mnist_experiments.workflows.grade`).

Exit status: 0 when every submission was graded (whatever the verdicts), 1 when some
rows are ERROR, 2 on a usage error (no such submission source).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import List, Optional

from mnist_experiments.commands import add_version
from mnist_experiments.errors import UserError
from mnist_experiments.launch import signals

PROG = "mnist-exp-grade"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Reproduce every submission of a class on this machine and write a "
                    "grade sheet (grades.csv, grades.md).",
        epilog="A SUBMISSION is a run id, an MLflow experiment name (all its training runs), "
               "a directory of config files or Hydra run dirs, or a CSV with columns "
               "student,submission and optionally metric,claimed.")
    parser.add_argument("submissions", metavar="SUBMISSION", nargs="+")
    parser.add_argument("--out", metavar="DIR", required=True, type=Path,
                        help="where grades.csv and grades.md go (re-use it to continue)")
    parser.add_argument("--jobs", metavar="N", type=int, default=1,
                        help="submissions reproduced at a time (default 1)")
    parser.add_argument("--tracking-uri", metavar="URI", default=None,
                        help="MLflow store with the submitted runs; the reproductions are "
                             "logged there too (default: $MLFLOW_TRACKING_URI, else "
                             "sqlite:///<current dir>/mlflow.db)")
    parser.add_argument("--calibration-runs", metavar="N", type=int, default=5,
                        help="re-runs with other seeds when a re-run is not identical "
                             "(default 5; see mnist-exp-reproduce --help)")
    parser.add_argument("--experiment-name", metavar="NAME", default="grading",
                        help="experiment of the grading's parent run (default: grading)")
    add_version(parser)
    return parser


@signals.stoppable(PROG)
def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    if args.jobs < 1:
        print(f"{PROG}: error: --jobs {args.jobs} is invalid: give 1 or more.", file=sys.stderr)
        return 2
    try:
        from mnist_experiments.workflows.grade import grade  # heavy: MLflow

        rows = grade(args.submissions, args.out, tracking_uri=args.tracking_uri,
                     jobs=args.jobs, calibration_runs=args.calibration_runs,
                     experiment_name=args.experiment_name)
    except UserError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        print(f"{PROG}: stopped by {signals.name_of(exc)}; the rows graded so far are in {args.out / 'grades.csv'}; "
              "run the same command again to continue.", file=sys.stderr)
        return signals.exit_status(exc)
    print(f"\nwrote {args.out / 'grades.csv'} and {args.out / 'grades.md'}")
    print((args.out / "grades.md").read_text().split("\n")[2])
    return 1 if any(r.get("verdict") == "ERROR" for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
