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
import platform
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from importlib import metadata
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
REFERENCE = BENCH_DIR / "notebook_reference.py"
DEFAULT_DATA = "/usr/share/datasets/fashion-mnist"
DEFAULT_SEED = 42  # the notebook's, and mnist-exp's default

# The targets.
TARGET_WALL_RATIO = 1.0  # median wall time B/A
TARGET_ACC_PP = 0.5  # |test accuracy B - A|, percentage points
TARGET_RSS_RATIO = 1.3  # median peak RSS B/A
TARGET_HELP_S = 1.0  # mnist-exp --help
TARGET_CFG_S = 1.5  # mnist-exp --cfg job


# ------------------------------------------------------------------------ running
class RunFailed(RuntimeError):
    pass


def bench_env() -> Dict[str, str]:
    """The environment of every measured subprocess (the same for A and B)."""
    env = dict(os.environ)
    env.pop("MLFLOW_TRACKING_URI", None)  # B gets its fresh store on the command line
    env.update(
        {
            "PYTHONUNBUFFERED": "1",
            "TF_CPP_MIN_LOG_LEVEL": "2",  # what mnist-exp sets by default anyway
            "MLFLOW_DISABLE_TELEMETRY": "true",  # no network here: no telemetry attempts
            "DO_NOT_TRACK": "true",
        }
    )
    return env


def measure(cmd: Sequence[str], cwd: Path, env: Dict[str, str], timeout: float) -> Dict[str, Any]:
    """Run ``cmd`` to completion: launch time, wall time, exit code, peak RSS (MB).

    Output goes to ``cwd/stdout.txt`` and ``cwd/stderr.txt`` (files, so no pipe can
    fill up and stall the child); the child is reaped with ``os.wait4`` for its
    resource usage.
    """
    cwd.mkdir(parents=True, exist_ok=True)
    with open(cwd / "stdout.txt", "wb") as out, open(cwd / "stderr.txt", "wb") as err:
        load_before = _load1()
        launch_unix = time.time()
        start = time.perf_counter()
        proc = subprocess.Popen(list(cmd), cwd=cwd, env=env, stdout=out, stderr=err,
                                stdin=subprocess.DEVNULL)
        timed_out = threading.Event()

        def _kill() -> None:
            timed_out.set()
            proc.kill()

        timer = threading.Timer(timeout, _kill)
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:  # interrupted: leave no orphan behind
            proc.kill()
            os.waitpid(proc.pid, 0)
            proc.returncode = -9
            raise
        finally:
            timer.cancel()
        wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    maxrss = usage.ru_maxrss / (1024 * 1024 if sys.platform == "darwin" else 1024)  # -> MB
    return {
        "cmd": list(cmd),
        "cwd": str(cwd),
        "launch_unix": launch_unix,
        "wall_s": wall,
        "returncode": proc.returncode,
        "timed_out": timed_out.is_set(),
        "peak_rss_mb": maxrss,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "load1_before": load_before,
        "load1_after": _load1(),
    }


def _load1() -> Optional[float]:
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


def _tail(path: Path, n: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-n:]
    except OSError:
        return ""


def _check(run: Dict[str, Any], what: str) -> None:
    if run["returncode"] != 0:
        cwd = Path(run["cwd"])
        reason = "timed out" if run["timed_out"] else f"exited with {run['returncode']}"
        raise RunFailed(
            f"{what} {reason}: {shlex.join(run['cmd'])}\n--- stderr (tail) ---\n"
            f"{_tail(cwd / 'stderr.txt')}\n--- stdout (tail) ---\n{_tail(cwd / 'stdout.txt')}"
        )


def run_a(data_path: str, epochs: int, seed: int, workdir: Path, env: Dict[str, str],
          timeout: float) -> Dict[str, Any]:
    cmd = [sys.executable, str(REFERENCE), "--data-path", data_path, "--epochs", str(epochs),
           "--seed", str(seed)]
    run = measure(cmd, workdir, env, timeout)
    _check(run, "A (notebook_reference.py)")
    result = None
    for line in (workdir / "stdout.txt").read_text(errors="replace").splitlines():
        line = line.strip()
        if line.startswith("{") and '"wall_s"' in line:
            result = json.loads(line)
    if result is None:
        raise RunFailed(f"A printed no JSON result line; see {workdir / 'stdout.txt'}")
    epoch_s = [float(s) for s in result["epoch_s"]]
    run.update(
        variant="A",
        epoch_s=epoch_s,
        first_epoch_from_launch_s=result["first_epoch_end_unix"] - run["launch_unix"],
        epoch_end_from_launch_s=[t - run["launch_unix"] for t in result.get("epoch_end_unix", [])],
        seed=seed,
        test_accuracy=float(result["test_accuracy"]),
        test_loss=float(result["test_loss"]),
        self_reported_wall_s=float(result["wall_s"]),
        n_train=result.get("n_train"),
        n_test=result.get("n_test"),
        jit_compile=result.get("jit_compile"),
    )
    return run


def run_b(data_group: str, data_path: str, epochs: int, seed: int, workdir: Path,
          env: Dict[str, str], timeout: float) -> Dict[str, Any]:
    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    cmd = [sys.executable, "-m", "mnist_experiments", "experiment=seed_notebook",
           f"data={data_group}", f"data.path={data_path}", f"train.epochs={epochs}",
           f"mlflow.tracking_uri={uri}"]
    if seed != DEFAULT_SEED:
        cmd.append(f"seed={seed}")
    run = measure(cmd, workdir, env, timeout)
    _check(run, "B (mnist-exp)")
    run.update(variant="B", seed=seed, **read_b_run(uri, run["launch_unix"]))
    run["timeline"] = b_timeline(run)
    return run


def read_b_run(uri: str, launch_unix: float) -> Dict[str, Any]:
    """What B's MLflow run recorded: per-epoch seconds (and when epoch 1 ended), timings."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    experiment_ids = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(experiment_ids)
    if len(runs) != 1:
        raise RunFailed(f"B's store {uri} holds {len(runs)} runs, expected exactly 1")
    run = runs[0]
    if run.info.status != "FINISHED":
        raise RunFailed(f"B's run {run.info.run_id} ended {run.info.status}")
    metrics = run.data.metrics
    history = sorted(client.get_metric_history(run.info.run_id, "epoch_seconds"),
                     key=lambda m: m.step)
    if not history:
        raise RunFailed(f"B's run {run.info.run_id} has no epoch_seconds history")
    artifact_breakdown: Dict[str, float] = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            local = client.download_artifacts(run.info.run_id, "artifact_seconds.json", tmp)
            artifact_breakdown = {k: float(v) for k, v in json.loads(Path(local).read_text()).items()}
    except Exception:  # the breakdown is a diagnosis aid, not a measurement
        pass
    keys = ("total_seconds", "fit_seconds", "artifact_seconds", "first_epoch_seconds",
            "seconds_per_epoch", "test_loss")
    return {
        "epoch_s": [float(m.value) for m in history],
        # the epoch logger stamps each epoch's metrics when the epoch (validation included) ends
        "first_epoch_from_launch_s": history[0].timestamp / 1000.0 - launch_unix,
        "epoch_end_from_launch_s": [m.timestamp / 1000.0 - launch_unix for m in history],
        "test_accuracy": float(metrics["test_accuracy"]),
        "mlflow": {k: float(metrics[k]) for k in keys if k in metrics},
        "mlflow_run_id": run.info.run_id,
        "mlflow_run_start_from_launch_s": run.info.start_time / 1000.0 - launch_unix,
        "mlflow_run_end_from_launch_s": (run.info.end_time / 1000.0 - launch_unix
                                         if run.info.end_time else None),
        "artifact_breakdown_s": artifact_breakdown,
    }


def mnist_exp_command() -> List[str]:
    """The ``mnist-exp`` console script of this interpreter's environment."""
    script = Path(sys.executable).with_name("mnist-exp")
    if script.exists():
        return [str(script)]
    found = shutil.which("mnist-exp")
    return [found] if found else [sys.executable, "-m", "mnist_experiments"]


def time_cli(args: Sequence[str], runs: int, workdir: Path, env: Dict[str, str]) -> Dict[str, Any]:
    cmd = [*mnist_exp_command(), *args]
    times = []
    for i in range(runs):
        run = measure(cmd, workdir / f"{i}", env, timeout=120)
        _check(run, shlex.join(["mnist-exp", *args]))
        times.append(run["wall_s"])
    return {"cmd": shlex.join(["mnist-exp", *args]), "times_s": times,
            "median_s": statistics.median(times)}


def warm_up(env: Dict[str, str], workdir: Path) -> float:
    """Import the heavy libraries once so that no measured run pays for a cold page cache."""
    code = "import tensorflow, keras, mlflow, matplotlib.pyplot, sklearn.metrics, hydra"
    run = measure([sys.executable, "-c", code], workdir, env, timeout=600)
    _check(run, "warm-up import")
    return run["wall_s"]


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
        x_train, y_train, x_test, y_test = x_train[:n], y_train[:n], x_test[:n], y_test[:n]
        description += f", first {n} training and first {n} test images"
    npz = tmp / "data.npz"
    np.savez(npz, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    description += f" ({len(y_train)} train / {len(y_test)} test, written to a temporary .npz)"
    return {"path": str(npz), "group": group, "description": description}


# ------------------------------------------------------------------------ summary
def _mean(values: Sequence[float]) -> Optional[float]:
    return sum(values) / len(values) if values else None


def derived(run: Dict[str, Any]) -> Dict[str, Any]:
    """Per-run numbers for the tables: epoch 1, later epochs, before/after training."""
    epochs = run["epoch_s"]
    first = run["first_epoch_from_launch_s"]
    return {
        "epoch1_s": epochs[0],
        "later_epoch_s": _mean(epochs[1:]),
        "fit_s": sum(epochs),
        # launch -> start of epoch 1: interpreter, imports, data, model build, store set-up
        "before_fit_s": first - epochs[0],
        # end of the last epoch -> exit: evaluation, artifacts, run end, interpreter exit
        "after_fit_s": run["wall_s"] - first - sum(epochs[1:]),
    }


def b_timeline(run: Dict[str, Any]) -> Optional[Dict[str, float]]:
    """B's wall time split into phases, from its MLflow run's timestamps and metrics."""
    ml = run.get("mlflow", {})
    run_start = run.get("mlflow_run_start_from_launch_s")
    run_end = run.get("mlflow_run_end_from_launch_s")
    if run_start is None or run_end is None or "total_seconds" not in ml:
        return None
    d = derived(run)
    fit_start = run["first_epoch_from_launch_s"] - d["epoch1_s"]
    fit_end = fit_start + d["fit_s"]
    task_start = run_end - ml["total_seconds"]  # total_seconds: data loading -> end of logging
    artifacts = ml.get("artifact_seconds", 0.0)
    return {
        "start_imports_hydra": task_start,
        "data_and_store": run_start - task_start,
        "run_setup": fit_start - run_start,
        "fit": d["fit_s"],
        "test_predict_metrics": max(0.0, run_end - fit_end - artifacts),
        "artifacts": artifacts,
        "exit": run["wall_s"] - run_end,
    }


TIMELINE_LABELS = {
    "start_imports_hydra": "launch → task start (interpreter, CLI imports, Hydra compose)",
    "data_and_store": ("task start → run start (data loading, TensorFlow/Keras and MLflow "
                       "imports, store creation and experiment set-up)"),
    "run_setup": "run start → epoch 1 starts (params, config, model build, tf.data)",
    "fit": "training (all epochs, validation included)",
    "test_predict_metrics": "test predictions, metrics, run end (besides artifacts)",
    "artifacts": "artifacts (figures, reports, logged model): `artifact_seconds`",
    "exit": "run end → process exit",
}


def summarize(pairs: List[Dict[str, Dict[str, Any]]]) -> Dict[str, Any]:
    ratios = []
    for pair in pairs:
        a, b = pair["A"], pair["B"]
        da, db = derived(a), derived(b)
        ratios.append(
            {
                "wall": b["wall_s"] / a["wall_s"],
                "first_epoch": b["first_epoch_from_launch_s"] / a["first_epoch_from_launch_s"],
                "epoch1": db["epoch1_s"] / da["epoch1_s"],
                "later_epoch": (db["later_epoch_s"] / da["later_epoch_s"]
                                if da["later_epoch_s"] and db["later_epoch_s"] else None),
                "rss": b["peak_rss_mb"] / a["peak_rss_mb"],
                "cpu": b["cpu_s"] / a["cpu_s"] if a.get("cpu_s") else None,
                "acc_pp": 100.0 * (b["test_accuracy"] - a["test_accuracy"]),
                "wall_diff_s": b["wall_s"] - a["wall_s"],
            }
        )

    def med(key: str) -> Optional[float]:
        values = [r[key] for r in ratios if r[key] is not None]
        return statistics.median(values) if values else None

    return {"per_pair": ratios, "median": {k: med(k) for k in ratios[0]}}


def _f(value: Optional[float], fmt: str = "{:.2f}") -> str:
    return "n/a" if value is None else fmt.format(value)


def machine_info() -> Dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()

    def version(*dists: str) -> str:
        for dist in dists:
            try:
                return metadata.version(dist)
            except metadata.PackageNotFoundError:
                continue
        return "not installed"

    commit = None
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, text=True,
                                capture_output=True, timeout=5).stdout.strip() or None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=REPO, text=True, capture_output=True, timeout=5).stdout.strip()
        if commit and dirty:
            commit += " (with uncommitted changes)"
    except (OSError, subprocess.TimeoutExpired):
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "usable_cores": usable,
        "memory": memory,
        "os": platform.platform(),
        "python": platform.python_version(),
        "tensorflow": version("tensorflow-cpu", "tensorflow"),
        "keras": version("keras"),
        "mlflow": version("mlflow"),
        "hydra": version("hydra-core"),
        "numpy": version("numpy"),
        "commit": commit,
    }


def _load() -> str:
    try:
        return " / ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def render(report: Dict[str, Any]) -> str:
    m = report["machine"]
    s = report["summary"]
    med = s["median"]
    epochs = report["epochs"]
    lines = [
        "# Benchmark: course notebook (A) vs `mnist-exp experiment=seed_notebook` (B)",
        "",
        f"- Command: `{report['command']}` (in `{report['cwd']}`)",
        f"- Date: {report['date']} (took {report['duration_s'] / 60:.1f} min)",
        f"- Machine: {m['cpu']}, {m['cores']} cores ({m['usable_cores']} usable), "
        f"{m['memory']} RAM; {m['os']}",
        f"- Load average (1/5/15 min) at start: {report['load_start']}; at end: {report['load_end']}",
        f"- Software: Python {m['python']}, TensorFlow {m['tensorflow']}, Keras {m['keras']}, "
        f"MLflow {m['mlflow']}, Hydra {m['hydra']}, NumPy {m['numpy']}; "
        f"mnist_experiments at {m['commit'] or 'unknown commit'}",
        f"- Data: {report['data']['description']}; {epochs} epoch(s); "
        f"{len(report['pairs'])} pair(s), run alternately A, B, A, B, ...; seed(s) "
        f"{', '.join(str(p['A'].get('seed', DEFAULT_SEED)) for p in report['pairs'])}",
        f"- A: `{shlex.join(_short_cmd(report['pairs'][0]['A']['cmd']))}`",
        f"- B: `{shlex.join(_short_cmd(report['pairs'][0]['B']['cmd']))}` "
        "(all tracking, figures and the logged model on; a fresh SQLite store per run)",
        "",
        "Wall time is measured by the benchmark from launch to exit of each subprocess; "
        "time to first epoch from launch to the end of epoch 1 (validation included); "
        "peak RSS is `wait4`'s `ru_maxrss`.",
        "",
        "## Runs",
        "",
        "| pair | variant | wall s | to 1st epoch s | epoch 1 s | s/epoch (2..E) | before fit s "
        "| after fit s | peak RSS MB | test acc % | CPU s | load |",
        "|---:|:---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for i, pair in enumerate(report["pairs"], start=1):
        for variant in ("A", "B"):
            run = pair[variant]
            d = derived(run)
            lines.append(
                f"| {i} | {variant} | {run['wall_s']:.1f} | {run['first_epoch_from_launch_s']:.1f} "
                f"| {d['epoch1_s']:.1f} | {_f(d['later_epoch_s'])} | {d['before_fit_s']:.1f} "
                f"| {d['after_fit_s']:.1f} | {run['peak_rss_mb']:.0f} "
                f"| {100 * run['test_accuracy']:.2f} | {run['cpu_s']:.0f} "
                f"| {_f(run.get('load1_before'), '{:.1f}')}→{_f(run.get('load1_after'), '{:.1f}')} |"
            )
    lines += [
        "",
        "_before fit_: launch to the start of epoch 1 (interpreter, imports, data, model, "
        "MLflow store); _after fit_: end of the last epoch to exit (evaluation, for B also "
        "figures, model logging and run end); _CPU s_: user + system CPU time of the "
        "process; _load_: the machine's 1-minute load average before → after the run "
        f"({report['machine']['usable_cores']} cores: a load above that means other "
        "processes competed for the CPU).",
        "",
        "## B / A per pair",
        "",
        "| pair | seed | wall | to 1st epoch | epoch 1 | s/epoch (2..E) | peak RSS | acc B−A (pp) "
        "| wall B−A s | CPU time |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for i, (r, pair) in enumerate(zip(s["per_pair"], report["pairs"]), start=1):
        lines.append(
            f"| {i} | {pair['A'].get('seed', DEFAULT_SEED)} | {r['wall']:.3f} | {r['first_epoch']:.3f} | {r['epoch1']:.3f} "
            f"| {_f(r['later_epoch'], '{:.3f}')} | {r['rss']:.3f} | {r['acc_pp']:+.2f} "
            f"| {r['wall_diff_s']:+.1f} | {_f(r.get('cpu'), '{:.3f}')} |"
        )
    lines.append(
        f"| **median** | | **{med['wall']:.3f}** | {med['first_epoch']:.3f} | {med['epoch1']:.3f} "
        f"| {_f(med['later_epoch'], '{:.3f}')} | **{med['rss']:.3f}** | **{med['acc_pp']:+.2f}** "
        f"| {med['wall_diff_s']:+.1f} | {_f(med.get('cpu'), '{:.3f}')} |"
    )
    lines += [
        "",
        "_CPU time_: B's CPU time (user + system) over A's. On a shared machine it is steadier "
        "than wall time, which also counts the time a run waited for the CPU.",
    ]

    lines += [
        "",
        "## Inside B (its MLflow metrics, seconds)",
        "",
        "| pair | wall | total_seconds | fit_seconds | first_epoch_seconds | seconds_per_epoch "
        "| artifact_seconds | wall − total_seconds | fit_seconds − Σ epoch_seconds |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for i, pair in enumerate(report["pairs"], start=1):
        b = pair["B"]
        ml = b["mlflow"]
        outside = b["wall_s"] - ml["total_seconds"] if "total_seconds" in ml else None
        lines.append(
            f"| {i} | {b['wall_s']:.1f} | {_f(ml.get('total_seconds'))} | {_f(ml.get('fit_seconds'))} "
            f"| {_f(ml.get('first_epoch_seconds'))} | {_f(ml.get('seconds_per_epoch'))} "
            f"| {_f(ml.get('artifact_seconds'))} | {_f(outside)} "
            f"| {_f(ml['fit_seconds'] - sum(b['epoch_s']) if 'fit_seconds' in ml else None)} |"
        )
    timelines = [b_timeline(p["B"]) for p in report["pairs"]]
    timelines = [t for t in timelines if t]
    if timelines:
        a_runs = [derived(p["A"]) for p in report["pairs"]]
        a_phase = {
            "start_imports_hydra": statistics.median([d["before_fit_s"] for d in a_runs]),
            "fit": statistics.median([d["fit_s"] for d in a_runs]),
            "after": statistics.median([d["after_fit_s"] for d in a_runs]),
        }
        lines += [
            "",
            "Where B's wall time goes (median over pairs, seconds; A's comparable phases beside):",
            "",
            "| phase of B | B s | A s |",
            "|:---|---:|---:|",
        ]
        for key, label in TIMELINE_LABELS.items():
            value = statistics.median([t[key] for t in timelines])
            if key == "start_imports_hydra":
                a_text = f"{a_phase['start_imports_hydra']:.1f} (launch → epoch 1 starts, all of it)"
            elif key == "fit":
                a_text = f"{a_phase['fit']:.1f}"
            elif key == "test_predict_metrics":
                a_text = f"{a_phase['after']:.1f} (last epoch → exit, all of it)"
            else:
                a_text = ""
            lines.append(f"| {label} | {value:.1f} | {a_text} |")
    breakdowns = [p["B"]["artifact_breakdown_s"] for p in report["pairs"] if p["B"]["artifact_breakdown_s"]]
    if breakdowns:
        names = sorted({k for b in breakdowns for k in b},
                       key=lambda k: -statistics.median([b.get(k, 0.0) for b in breakdowns]))
        shown = ", ".join(f"{k} {statistics.median([b.get(k, 0.0) for b in breakdowns]):.2f}"
                          for k in names[:8])
        lines += ["", f"Largest artifacts (median s, from `artifact_seconds.json`): {shown}."]
    lines += [
        "",
        "_total_seconds_ counts from data loading to the end of the run's logging; "
        "_wall − total_seconds_ is what B spends outside it (interpreter start-up, imports, "
        "Hydra, run start/end, exit); _fit_seconds − Σ epoch_seconds_ is time inside "
        "`model.fit` but outside every epoch (normally ~0).",
        "",
        "## Command-line start-up",
        "",
        "| command | median s | runs (s) | target | met |",
        "|:---|---:|:---|---:|:---:|",
    ]
    for key, target in (("help", TARGET_HELP_S), ("cfg_job", TARGET_CFG_S)):
        c = report["cli"].get(key)
        if c:
            runs = ", ".join(f"{t:.2f}" for t in c["times_s"])
            ok = "yes" if c["median_s"] <= target else "**no**"
            lines.append(f"| `{c['cmd']}` | {c['median_s']:.2f} | {runs} | < {target:g} s | {ok} |")

    lines += ["", "## Targets", "", "| target | measured | met |", "|:---|---:|:---:|"]
    for name, value, ok in report["targets"]:
        lines.append(f"| {name} | {value} | {'yes' if ok else '**no**'} |")
    lines.append("")
    return "\n".join(lines)


def _short_cmd(cmd: Sequence[str]) -> List[str]:
    """A command as a reader would type it: ``python`` for this interpreter, repo-relative paths."""
    out = []
    for part in cmd:
        if part == sys.executable:
            part = "python"
        elif part.startswith(str(REPO) + os.sep):
            part = os.path.relpath(part, REPO)
        out.append(part)
    return out


def targets(report: Dict[str, Any]) -> List[tuple]:
    med = report["summary"]["median"]
    rows = [
        (f"median wall time B/A <= {TARGET_WALL_RATIO:g}", f"{med['wall']:.3f}",
         med["wall"] <= TARGET_WALL_RATIO),
        (f"test accuracy within {TARGET_ACC_PP:g} pp (median B−A)",
         f"{med['acc_pp']:+.2f} pp" + (" (B higher)" if med["acc_pp"] > TARGET_ACC_PP else ""),
         abs(med["acc_pp"]) <= TARGET_ACC_PP),
        (f"median peak RSS B/A <= {TARGET_RSS_RATIO:g}", f"{med['rss']:.3f}",
         med["rss"] <= TARGET_RSS_RATIO),
    ]
    for key, label, target in (("help", "`mnist-exp --help`", TARGET_HELP_S),
                               ("cfg_job", "`mnist-exp --cfg job`", TARGET_CFG_S)):
        c = report["cli"].get(key)
        if c:
            rows.append((f"{label} < {target:g} s (median)", f"{c['median_s']:.2f} s",
                         c["median_s"] < target))
    return rows


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
                        help="skip the unmeasured warm-up import before the first run")
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
            log(f"warm-up import: {warm_up(env, tmp / 'warmup'):.1f}s")
        if args.cli_runs > 0:
            report["cli"]["help"] = time_cli(["--help"], args.cli_runs, tmp / "cli-help", env)
            report["cli"]["cfg_job"] = time_cli(["--cfg", "job"], args.cli_runs, tmp / "cli-cfg", env)
            log("mnist-exp --help {:.2f}s, --cfg job {:.2f}s (medians)".format(
                report["cli"]["help"]["median_s"], report["cli"]["cfg_job"]["median_s"]))
        data = report["data"]
        for i in range(1, args.pairs + 1):
            seed = args.seeds[(i - 1) % len(args.seeds)]
            a = run_a(data["path"], args.epochs, seed, tmp / f"pair{i}-A", env, args.timeout)
            log(f"pair {i} A: wall {a['wall_s']:.1f}s, acc {a['test_accuracy']:.4f}, "
                f"RSS {a['peak_rss_mb']:.0f} MB")
            b = run_b(data["group"], data["path"], args.epochs, seed, tmp / f"pair{i}-B", env,
                      args.timeout)
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
