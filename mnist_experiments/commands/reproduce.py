"""``mnist-exp-reproduce RUN``: re-run a recorded experiment and judge its numbers.

A student submits a result and the config that produced it; a grader re-runs it on
their own machine and gets a verdict, without having to trust the student's files
(:mod:`mnist_experiments.config.untrusted`, :mod:`mnist_experiments.workflows.reproduce`):
``REPRODUCED`` (identical, or within ``--tolerance``), ``CONSISTENT`` (not identical,
but within the spread this config shows on this machine), ``INCONSISTENT``.

Exit status: 0 REPRODUCED or CONSISTENT, 1 INCONSISTENT, 2 cannot compare (refused:
an unsafe or invalid config, changed data, an unknown run, no original metrics).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import textwrap
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from mnist_experiments.commands import add_version
from mnist_experiments.errors import UserError
from mnist_experiments.launch import heap, signals

PROG = "mnist-exp-reproduce"
EXIT_INCONSISTENT = 1
EXIT_REFUSED = 2
DEFAULT_CALIBRATION_RUNS = 5  # the workflow's default (checked by a test)


def _is_result(name: str) -> bool:
    return not name.endswith("_seconds") and (name == "objective"
                                              or name.startswith(("test_", "cv_")))


# ------------------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=textwrap.fill(
            "Re-run a recorded mnist-exp experiment with exactly its composed config and "
            "compare the numbers. RUN is an MLflow run id, a Hydra run dir "
            "(outputs/runs/<time>, holding .hydra/config.yaml) or a config file (a run's "
            "config.yaml; data.json, overrides.yaml and metrics.json beside it are used if "
            "present). The config is checked before anything is built: unknown keys, wrong "
            "types, a hydra: section, interpolations and any _target_ off the allow-list are "
            "refused, so a config cannot run code."
        ),
        epilog=(
            "Verdicts: REPRODUCED (identical, or within --tolerance), CONSISTENT (not "
            "identical, but within the spread of --calibration-runs re-runs with other "
            "seeds on this machine), INCONSISTENT (outside it).\n"
            "Exit status: 0 REPRODUCED or CONSISTENT, 1 INCONSISTENT, 2 cannot compare "
            "(unsafe or invalid config, changed data, unknown run, no original metrics).\n"
            "Examples:\n"
            f"  {PROG} 3f2a...c9            # a run id in ./mlflow.db\n"
            f"  {PROG} outputs/runs/2026-01-01_12-00-00-000000\n"
            f"  {PROG} submitted/config.yaml --expect test_accuracy=0.9871 --tolerance 5e-5\n"
            f"  {PROG} RUN --override seed=7   # what changes with another seed?"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("run", metavar="RUN", help="MLflow run id, Hydra run dir or config file")
    parser.add_argument(
        "--tolerance", type=float, default=0.0, metavar="T",
        help="largest |reproduced - original| accepted for each metric (default 0.0: equal)",
    )
    parser.add_argument(
        "--tracking-uri", metavar="URI", default=None,
        help="MLflow store to read the original run from and log the reproduction to "
        "(default: $MLFLOW_TRACKING_URI, else sqlite:///<cwd>/mlflow.db). The config's "
        "mlflow.tracking_uri is never used.",
    )
    parser.add_argument(
        "--experiment-name", metavar="NAME", default=None,
        help="MLflow experiment of the new run (default: the original run's, else the "
        "config's mlflow.experiment_name)",
    )
    parser.add_argument(
        "--allow-data-change", action="store_true",
        help="run even if the data's fingerprint differs from the original's (warns)",
    )
    parser.add_argument(
        "--override", action="append", default=[], metavar="KEY=VALUE",
        help="change one value of the config on purpose (repeatable), e.g. seed=7",
    )
    parser.add_argument(
        "--expect", action="append", default=[], metavar="METRIC=VALUE",
        help="an original value to confirm, e.g. a number the student reported "
        "(repeatable; replaces the recorded value), e.g. test_accuracy=0.9871",
    )
    parser.add_argument(
        "--calibration-runs", type=int, default=DEFAULT_CALIBRATION_RUNS, metavar="N",
        help="when the re-run is not identical: re-runs with other seeds that measure the "
        f"config's spread on this machine (default {DEFAULT_CALIBRATION_RUNS}; 0: none, any "
        "difference is INCONSISTENT)",
    )
    parser.add_argument(
        "--jobs", type=int, default=None, metavar="J",
        help="calibration runs at a time (default: the cores divided by the run's threads)",
    )
    parser.add_argument("--json", metavar="FILE", default=None,
                        help="also write the result (verdict, metrics, intervals) as JSON")
    parser.add_argument("--parent-run-id", default=None, help=argparse.SUPPRESS)
    add_version(parser)
    return parser


def _parse_expect(items: Sequence[str]) -> Dict[str, float]:
    expected = {}
    for item in items:
        name, sep, value = item.partition("=")
        try:
            if not sep or not name:
                raise ValueError
            expected[name.strip()] = float(value)
        except ValueError:
            raise UserError(
                f"--expect {item!r} is not METRIC=NUMBER, e.g. --expect test_accuracy=0.9871."
            ) from None
        if not _is_result(name.strip()):
            raise UserError(
                f"--expect {item!r}: only objective, test_* and cv_* metrics are compared."
            )
    return expected


def _fmt(value: Optional[float]) -> str:
    return "-" if value is None else repr(float(value))


def _fmt_diff(row: Any) -> str:
    d = row.difference
    if d is None:
        return "missing" if row.original is not None else "-"
    return "0" if d == 0 else f"{d:+.3g}"


def render_table(rows: List[Any], tolerance: float) -> str:
    """The original and reproduced metrics side by side, differences marked."""
    header = ("metric", "original", "reproduced", "difference", "")
    lines = [header] + [
        (r.name, _fmt(r.original), _fmt(r.reproduced), _fmt_diff(r),
         "" if r.ok(tolerance) else "<-- differs")
        for r in rows
    ]
    widths = [max(len(line[i]) for line in lines) for i in range(4)]
    return "\n".join(
        "  ".join(cell.ljust(widths[i]) if i < 4 else cell for i, cell in enumerate(line)).rstrip()
        for line in lines
    )


def warn(message: str) -> None:
    print(f"WARNING: {message}", file=sys.stderr, flush=True)


def report(result: Any, tolerance: float) -> None:
    """Print the table, the provenance differences and the verdict."""
    print(f"\nReproduction: run {result.run_id} (experiment {result.experiment_name!r})\n")
    print(render_table(result.rows, tolerance))
    original = result.original
    for difference in result.differences:
        warn(f"provenance differs: {difference.describe()}")
    if original.tags.get("git_dirty") == "true":
        warn(f"the original ran from uncommitted code (git_dirty=true at commit "
             f"{original.tags.get('git_commit', 'unknown')}): the code that made it may "
             "not exist anywhere else.")
    verdict = result.verdict
    if verdict is None:
        print("\nVerdict: cannot compare (the original has no recorded metrics; give the "
              "claimed values with --expect METRIC=VALUE)", flush=True)
        return
    if verdict.intervals:
        print("\nSpread of this config on this machine (the reproduction and its "
              "calibration runs):")
        for interval in verdict.intervals:
            print(f"  {interval.describe()}")
    detail = verdict.detail
    if result.differences:
        detail += f"; {len(result.differences)} provenance difference(s), see the warnings"
    print(f"\nVerdict: {verdict.word} ({detail})", flush=True)


@signals.stoppable(PROG)
def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of ``mnist-exp-reproduce``; returns the exit status."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="[%(asctime)s][%(name)s][%(levelname)s] - %(message)s")
    try:
        expected = _parse_expect(args.expect)
        if not (args.tolerance >= 0 and math.isfinite(args.tolerance)):
            raise UserError(f"--tolerance {args.tolerance} is invalid: give a number >= 0.")
        with heap.heavy_imports():
            from mnist_experiments.workflows.reproduce import Request, reproduce  # heavy

        result = reproduce(Request(
            run=args.run, tolerance=args.tolerance, tracking_uri=args.tracking_uri,
            experiment_name=args.experiment_name, allow_data_change=args.allow_data_change,
            overrides=list(args.override), expect=expected,
            calibration_runs=args.calibration_runs, jobs=args.jobs,
            parent_run_id=args.parent_run_id))
    except UserError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr, flush=True)
        _write_json(args.json, {"verdict": "ERROR", "error": str(exc),
                                "kind": type(exc).__name__})
        return EXIT_REFUSED
    except KeyboardInterrupt as exc:  # the new runs, if any, are marked KILLED
        ended = getattr(exc, "stopped_runs", "")
        print(f"{PROG}: stopped by {signals.name_of(exc)}" + (f"; {ended}" if ended else "."),
              file=sys.stderr, flush=True)
        return signals.exit_status(exc)
    report(result, args.tolerance)
    _write_json(args.json, result.to_json())
    return result.exit_status


def _write_json(path: Optional[str], payload: Dict[str, Any]) -> None:
    if path:
        Path(path).write_text(json.dumps(payload, indent=2, default=str))


if __name__ == "__main__":
    sys.exit(main())
