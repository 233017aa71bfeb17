"""Does ``mnist-exp`` cost nothing? The course notebook (A) against ``mnist-exp`` (B).

Runs, in one invocation, paired and alternating (A, B, A, B, ...), each run a fresh
subprocess in its own temporary directory:

* A: ``bench/notebook_reference.py``: the course notebook as plain Keras (seed_cnn,
  RMSprop, batch 64, ``model.fit`` on NumPy arrays, validation on the first half of the
  test set, ``model.evaluate`` on the second half).
* B: ``python -m mnist_experiments experiment=seed_notebook data=... data.path=...
  train.epochs=E mlflow.tracking_uri=sqlite:///<tmp>/mlflow.db``: the same data, model
  and epochs with all tracking, figures and the logged model (a fresh MLflow store).

For each run: wall time (measured here, launch to exit), time to the end of the first
epoch (from launch), each epoch's duration, peak RSS (``wait4``'s ``ru_maxrss``) and
test accuracy; then the ratio B/A per pair and its median, and whether the targets are
met. It also times ``mnist-exp --help`` and ``mnist-exp --cfg job``. The report is a
Markdown file (``--out``) with a JSON twin beside it, and is printed.

Usage::

    python bench/benchmark.py                                   # full Fashion-MNIST, 5 epochs, 3 pairs
    python bench/benchmark.py --pairs 5 --epochs 5 --out bench/results.md
    python bench/benchmark.py --limit 5000 --epochs 2 --pairs 2  # both capped to the same images
    python bench/benchmark.py --digits --limit 300 --epochs 1 --pairs 1   # offline, ~1 min

The benchmark is not part of the test suite; ``tests/test_bench.py`` runs it on a tiny
input to keep it working.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import shlex
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import (  # noqa: E402
    BENCH_DIR, DEFAULT_DATA, DEFAULT_SEED, RunFailed, bench_env, machine_info,
    missing_data, run_a, run_b, time_cli, warm_up, _load,
)
from notebook_report import b_timeline, render, summarize, targets  # noqa: E402

# -------------------------------------------------------------------------- data
def prepare_data(args: argparse.Namespace, tmp: Path) -> Dict[str, str]:
    """The data path both variants get, and B's data config group.

    ``--digits`` and ``--limit`` write a Keras-layout .npz that A and B both read, so
    that they train and test on exactly the same images.
    """
    import numpy as np

    from mnist_experiments.data import load_digits_28, load_idx_dir, load_npz

    if args.digits:
        raw = load_digits_28()
        description = "scikit-learn digits at 28x28 (mnist_experiments.data.loaders.load_digits_28)"
        group = args.data_config or "mnist"
    else:
        path = os.path.abspath(os.path.expanduser(args.data_path))
        if args.limit is None:
            return {"path": path, "group": args.data_config or "fashion_mnist",
                    "description": path}
        raw = load_idx_dir(path) if os.path.isdir(path) else load_npz(path)
        description = path
        group = args.data_config or "fashion_mnist"
    x_train, y_train, x_test, y_test = raw.x_train, raw.y_train, raw.x_test, raw.y_test
    if args.limit is not None:
        n = int(args.limit)
        t = int(args.test_limit or n)
        x_train, y_train, x_test, y_test = x_train[:n], y_train[:n], x_test[:t], y_test[:t]
        description += f", first {n} training and first {t} test images"
    npz = tmp / "data.npz"
    np.savez(npz, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    description += f" ({len(y_train)} train / {len(y_test)} test, written to a temporary .npz)"
    return {"path": str(npz), "group": group, "description": description}


# --------------------------------------------------------------------------- main
def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Course notebook (A) vs mnist-exp experiment=seed_notebook (B): paired, "
                    "alternating runs; writes a Markdown report.")
    parser.add_argument("--data-path", default=DEFAULT_DATA,
                        help="a directory of MNIST IDX files or a Keras-layout .npz "
                             f"(default: {DEFAULT_DATA})")
    parser.add_argument("--digits", action="store_true",
                        help="use scikit-learn's digits at 28x28 instead (offline, tiny; for tests)")
    parser.add_argument("--limit", type=int, default=None, metavar="N",
                        help="cap the training and the test set to their first N images "
                             "(both variants read the same capped .npz)")
    parser.add_argument("--test-limit", type=int, default=None, metavar="T",
                        help="with --limit: the first T test images (default: N); "
                             "--limit 8000 --test-limit 2000 is a student-sized run")
    parser.add_argument("--data-config", default=None, metavar="GROUP",
                        help="B's data config group (default: fashion_mnist; mnist with --digits)")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--seeds", default=str(DEFAULT_SEED), metavar="S1,S2,...",
                        help="seeds, used in turn by the pairs (both runs of a pair share "
                             "one): several seeds show whether an accuracy gap is more than "
                             f"seed-to-seed noise (default: {DEFAULT_SEED})")
    parser.add_argument("--out", default=str(BENCH_DIR / "results.md"),
                        help="the Markdown report (a .json twin is written beside it)")
    parser.add_argument("--cli-runs", type=int, default=5,
                        help="runs of mnist-exp --help and --cfg job each (0: skip)")
    parser.add_argument("--no-warmup", action="store_true",
                        help="skip the unmeasured warm-up before the first run (imports, "
                             "and the store template if this machine has none yet)")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per run")
    parser.add_argument("--keep", action="store_true",
                        help="keep the temporary run directories (their path is printed)")
    parser.add_argument("--from-json", metavar="PATH", default=None,
                        help="run nothing: re-render the report of an earlier run from its "
                             "JSON twin and write it to --out")
    args = parser.parse_args(argv)
    if args.pairs < 1 or args.epochs < 1:
        parser.error("--pairs and --epochs must be at least 1")
    try:
        args.seeds = [int(x) for x in str(args.seeds).split(",") if x.strip()]
    except ValueError:
        parser.error(f"--seeds must be integers separated by commas, got {args.seeds!r}")
    if not args.seeds:
        parser.error("--seeds needs at least one seed")
    if args.limit is not None and args.limit < 2:
        parser.error("--limit must be at least 2 (the test set is halved)")
    return args


def rerender(source: Path, out: Path) -> int:
    """Write the Markdown report of an earlier run (its JSON twin) again, e.g. after a
    change to the report's layout."""
    report = json.loads(source.read_text())
    report["summary"] = summarize(report["pairs"])
    report["targets"] = targets(report)
    text = render(report)
    if report.get("incomplete"):
        text += INCOMPLETE
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    if out.with_suffix(".json").resolve() != source.resolve():
        out.with_suffix(".json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(text)
    return 0


INCOMPLETE = "\n**Incomplete: the benchmark stopped early; only the finished pairs are shown.**\n"


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    if args.from_json:
        return rerender(Path(args.from_json), Path(args.out))
    problem = None if args.digits else missing_data(args.data_path, "--data-path")
    if problem:
        print(f"benchmark.py: error: {problem}", file=sys.stderr)
        return 2
    started = time.perf_counter()
    if argv is None:
        command = shlex.join(["python", *sys.argv])
    else:
        command = shlex.join(["python", os.path.relpath(__file__), *argv])
    report: Dict[str, Any] = {
        "command": command,
        "cwd": os.getcwd(),
        "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": machine_info(),
        "load_start": _load(),
        "epochs": args.epochs,
        "pairs": [],
        "cli": {},
    }
    env = bench_env()
    tmp = Path(tempfile.mkdtemp(prefix="mnist-bench-"))
    interrupted = False
    try:
        report["data"] = prepare_data(args, tmp)
        log(f"data: {report['data']['description']}; work dir {tmp}")
        if not args.no_warmup:
            log(f"warm-up (imports, store template): {warm_up(env, tmp / 'warmup'):.1f}s")
        if args.cli_runs > 0:
            # Hydra's composition of the help (nothing kept or read: what the first
            # --help after an install or an edit of a config costs), then the kept text
            no_cache = {**env, "MNIST_EXP_CACHE_DIR": "/dev/null/nothing-kept"}
            report["cli"]["help_hydra"] = time_cli(["--help"], args.cli_runs,
                                                   tmp / "cli-help-hydra", no_cache)
            time_cli(["--help"], 1, tmp / "cli-help-keep", env)  # keeps it (unmeasured)
            report["cli"]["help"] = time_cli(["--help"], args.cli_runs, tmp / "cli-help", env)
            report["cli"]["cfg_job"] = time_cli(["--cfg", "job"], args.cli_runs, tmp / "cli-cfg", env)
            log("mnist-exp --help {:.2f}s ({:.2f}s composed by Hydra), --cfg job {:.2f}s "
                "(medians)".format(report["cli"]["help"]["median_s"],
                                   report["cli"]["help_hydra"]["median_s"],
                                   report["cli"]["cfg_job"]["median_s"]))
        data = report["data"]
        for i in range(1, args.pairs + 1):
            seed = args.seeds[(i - 1) % len(args.seeds)]
            a = run_a(data["path"], args.epochs, seed, tmp / f"pair{i}-A", env, args.timeout)
            log(f"pair {i} A: wall {a['wall_s']:.1f}s, acc {a['test_accuracy']:.4f}, "
                f"RSS {a['peak_rss_mb']:.0f} MB")
            b = run_b(data["group"], data["path"], args.epochs, seed, tmp / f"pair{i}-B", env,
                      args.timeout)
            b["timeline"] = b_timeline(b)
            log(f"pair {i} B: wall {b['wall_s']:.1f}s, acc {b['test_accuracy']:.4f}, "
                f"RSS {b['peak_rss_mb']:.0f} MB")
            report["pairs"].append({"A": a, "B": b})
    except KeyboardInterrupt:
        interrupted = True
        log("interrupted: reporting the finished pairs")
    except RunFailed as exc:
        log(str(exc))
        if not report["pairs"]:
            return 1
        interrupted = True
    finally:
        if args.keep:
            log(f"run directories kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    if not report["pairs"]:
        return 1

    report["load_end"] = _load()
    report["duration_s"] = time.perf_counter() - started
    report["summary"] = summarize(report["pairs"])
    report["targets"] = targets(report)
    report["incomplete"] = interrupted
    text = render(report)
    if interrupted:
        text += INCOMPLETE
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    out.with_suffix(".json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(text)
    log(f"wrote {out} and {out.with_suffix('.json')}")
    return 1 if interrupted else 0


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # SIGTERM: report what finished
    sys.exit(main())
